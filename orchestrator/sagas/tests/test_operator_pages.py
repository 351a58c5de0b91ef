"""Operator surfaces every service has: health, readiness, OpenAPI, Swagger UI, admin, metrics."""

from __future__ import annotations

import jsonschema  # type: ignore[import-untyped]  # schemathesis brings it (dev)
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_health_and_readiness_against_real_database_and_redis(client: Client) -> None:
    assert client.get("/orchestrator/healthz").json()["status"] == "ok"
    ready = client.get("/orchestrator/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_openapi_schema_and_swagger_ui(client: Client) -> None:
    schema = client.get("/orchestrator/api/schema/", HTTP_ACCEPT="application/json")
    docs = client.get("/orchestrator/api/docs/")

    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "orchestrator service API"
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content


def test_admin_needs_a_login_and_then_loads(client: Client) -> None:
    assert client.get("/orchestrator/admin/").status_code == 302
    get_user_model().objects.create_superuser("op", "", "pw")
    # Through the login form: django-axes needs the request to count the attempt.
    signed_in = client.post("/orchestrator/admin/login/", {"username": "op", "password": "pw"})

    assert signed_in.status_code == 302

    assert client.get("/orchestrator/admin/").status_code == 200


def test_metrics_are_prometheus_text(client: Client) -> None:
    response = client.get("/orchestrator/metrics")

    assert response.status_code == 200
    assert b"# TYPE" in response.content


def test_unknown_path_is_problem_json(client: Client) -> None:
    response = client.get("/orchestrator/nothing-here")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


def test_the_schema_gives_each_post_its_own_body_and_errors_as_lists(client: Client) -> None:
    schema = client.get("/orchestrator/api/schema/", HTTP_ACCEPT="application/json").json()
    components = schema["components"]["schemas"]

    def body(path: str) -> dict[str, object]:
        ref = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        name = ref["schema"]["$ref"].rsplit("/", 1)[-1]
        return dict(components[name]["properties"])

    assert set(body("/api/v1/checkouts")) == {"customer_id", "items"}
    assert set(body("/api/v1/cancellations")) == {"order_id"}
    errors = components["Problem"]["properties"]["errors"]
    assert [v["type"] for v in errors["additionalProperties"]["oneOf"]] == ["array", "object"]


def test_the_schema_says_a_checkout_may_be_refused_with_503(client: Client) -> None:
    """Admission control's `overloaded` and a database's `unavailable` are in the contract;
    a client written from the schema must know to come back after Retry-After."""
    schema = client.get("/orchestrator/api/schema/", HTTP_ACCEPT="application/json").json()

    for path in ("/api/v1/checkouts", "/api/v1/cancellations"):
        refused = schema["paths"][path]["post"]["responses"]["503"]
        assert list(refused["content"]) == ["application/problem+json"]
        assert "Retry-After" in refused["description"]


def test_a_400s_errors_are_lists_as_the_schema_says(api: APIClient) -> None:
    response = api.post(
        "/api/v1/checkouts",
        {"items": [{"menu_item_id": 1, "quantity": 0}], "customer_id": "nope"},
        format="json",
    )

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors["customer_id"] == ["Must be a valid UUID."]
    assert errors["items"] == {
        "0": {"quantity": ["Ensure this value is greater than or equal to 1."]}
    }


@pytest.mark.parametrize(
    "items",
    [
        [{"menu_item_id": 1, "quantity": 0}],  # an entry's own field errors, keyed by its index
        [],  # the list's own message, under non_field_errors
    ],
)
def test_every_400_on_items_matches_the_schema_of_errors(
    api: APIClient, client: Client, items: list[dict[str, int]]
) -> None:
    schema = client.get("/orchestrator/api/schema/", HTTP_ACCEPT="application/json").json()
    errors_schema = schema["components"]["schemas"]["Problem"]["properties"]["errors"]

    response = api.post("/api/v1/checkouts", {"items": items}, format="json")

    assert response.status_code == 400
    jsonschema.validate(response.json()["errors"], errors_schema)
