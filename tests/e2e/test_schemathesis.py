"""Every operation of the four OpenAPI schemas, fuzzed through the gateway (schemathesis) with a
customer's token and an operator's: no 5xx, and every response matches the schema.

Bounded: a few examples per operation (FUZZ_EXAMPLES), each sent once per token.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.e2e.cafe import Cafe
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "4"))
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def tokens(stack: Stack, operator_token: str) -> dict[str, str]:
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        http.headers["Authorization"] = f"Bearer {operator_token}"
        cafe = Cafe(http)
        customer = cafe.customer(deposit=10_000)
        return {"customer": cafe.tokens[customer], "operator": operator_token}


def _schema(stack: Stack, service: str) -> Any:
    return schemathesis.openapi.from_url(f"{stack.url}/{service}/api/schema/?format=json")


SERVICES = ("customer", "account", "order", "orchestrator")


def _operations(stack: Stack, service: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{stack.url}/{service}/api/schema/?format=json")
    # An operation schemathesis cannot read fails the test (ok() raises its error).
    return [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_survives_fuzzing(
    stack: Stack, tokens: dict[str, str], service: str
) -> None:
    operations = _operations(stack, service)
    failures: list[str] = []
    for operation in operations:

        @FUZZ
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            for who, token in tokens.items():
                try:
                    case.call_and_validate(
                        base_url=stack.url,
                        headers={"Authorization": f"Bearer {token}"},
                        checks=CHECKS,
                    )
                except AssertionError as failed:  # schemathesis' failures are AssertionErrors
                    raise AssertionError(f"as {who}: {failed}") from failed

        try:
            fuzz()
        except AssertionError as failed:
            failures.append(f"{operation.label}: {str(failed)[:1500]}")

    assert operations
    assert failures == [], "\n\n".join(failures)
