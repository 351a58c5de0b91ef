"""Customer API: given a request, when it is handled, then the contract of DESIGN.md §7 holds."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from customer.customers.models import Customer
from customer.customers.services import customer_register

pytestmark = pytest.mark.django_db

PASSWORD = "a good long passphrase"


def register(api: APIClient, **body: object) -> Any:
    return api.post("/api/v1/customers", {"password": PASSWORD, **body}, format="json")


def test_register_returns_the_customer_and_its_location(api: APIClient) -> None:
    response = register(api, name="Aiko", email="aiko@example.com")

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "name", "email", "status", "created_at"}
    assert body["status"] == "active"
    assert body["created_at"].endswith("Z")
    assert response["Location"] == f"/api/v1/customers/{body['id']}"
    assert api.get(response["Location"]).json() == body


def test_email_is_unique_ignoring_case(api: APIClient) -> None:
    register(api, name="Aiko", email="aiko@example.com")

    response = register(api, name="Other", email="AIKO@Example.com")

    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "email_taken"
    assert Customer.objects.count() == 1


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "email": "a@example.com"},
        {"name": "   ", "email": "a@example.com"},
        {"name": "x" * 101, "email": "a@example.com"},
        {"name": "Aiko", "email": "not-an-email"},
        {"name": "Aiko"},
        {"email": "a@example.com"},
        {"name": 12, "email": ["a@example.com"]},
        {"name": "Aiko", "email": "a@example.com", "password": ""},
        {"name": "Aiko", "email": "a@example.com", "password": None},
        {"name": "Aiko", "email": "a@example.com", "password": ["x"]},
    ],
)
def test_invalid_body_is_a_validation_problem(api: APIClient, body: dict[str, object]) -> None:
    response = api.post("/api/v1/customers", {"password": PASSWORD, **body}, format="json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"
    assert Customer.objects.count() == 0


def test_name_of_100_characters_is_accepted(api: APIClient) -> None:
    assert register(api, name="x" * 100, email="long@example.com").status_code == 201


def test_malformed_json_and_wrong_media_type_are_4xx(api: APIClient) -> None:
    malformed = api.post("/api/v1/customers", '{"name": ', content_type="application/json")
    as_form = api.post(
        "/api/v1/customers", "name=a", content_type="application/x-www-form-urlencoded"
    )
    not_a_dict = api.post("/api/v1/customers", "[1, 2]", content_type="application/json")

    assert (malformed.status_code, malformed.json()["code"]) == (400, "malformed_request")
    assert (as_form.status_code, as_form.json()["code"]) == (415, "unsupported_media_type")
    assert not_a_dict.status_code == 400


def test_unknown_and_malformed_ids_are_404(api: APIClient) -> None:
    for path in (f"/api/v1/customers/{uuid.uuid4()}", "/api/v1/customers/not-a-uuid"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


def test_block_and_unblock(api: APIClient) -> None:
    customer_id = register(api, name="Aiko", email="aiko@example.com").json()["id"]

    blocked = api.post(f"/api/v1/customers/{customer_id}/block")
    again = api.post(f"/api/v1/customers/{customer_id}/block")
    unblocked = api.post(f"/api/v1/customers/{customer_id}/unblock")

    assert (blocked.status_code, blocked.json()["status"]) == (200, "blocked")
    assert (again.status_code, again.json()["status"]) == (200, "blocked")
    assert (unblocked.status_code, unblocked.json()["status"]) == (200, "active")
    assert api.post(f"/api/v1/customers/{uuid.uuid4()}/block").status_code == 404


def test_list_is_paginated_newest_first_and_page_size_is_capped(api: APIClient) -> None:
    for n in range(205):
        customer_register(name=f"c{n}", email=f"c{n}@example.com", password=PASSWORD)

    first = api.get("/api/v1/customers").json()
    capped = api.get("/api/v1/customers?page_size=1000").json()
    last = api.get("/api/v1/customers?page_size=200&page=2").json()

    assert first["count"] == 205
    assert len(first["results"]) == 50
    assert first["previous"] is None and "page=2" in first["next"]
    assert first["results"][0]["name"] == "c204"
    assert len(capped["results"]) == 200
    assert len(last["results"]) == 5 and last["next"] is None


@pytest.mark.parametrize(
    "query",
    [
        "page_size=0",
        "page_size=-1",
        "page_size=abc",
        "page=0",
        "page=x",
        # Digits to str.isdigit(), not to int().
        "page_size=%C2%B2",
        "page=%C2%B2",
        # Arabic-Indic three: int() would take it for 3.
        "page_size=%D9%A3",
        # Longer than int() converts.
        "page_size=" + "9" * 5000,
        "page=" + "9" * 5000,
    ],
)
def test_bad_page_parameters_are_400(api: APIClient, query: str) -> None:
    response = api.get(f"/api/v1/customers?{query}")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"


@pytest.mark.parametrize("body", ["[" * 5000, '{"a":' * 5000, "[" * 5000 + "]" * 5000])
def test_a_body_nested_too_deeply_is_400(api: APIClient, body: str) -> None:
    response = api.post("/api/v1/customers", data=body, content_type="application/json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"


def test_page_past_the_end_is_404(api: APIClient) -> None:
    response = api.get("/api/v1/customers?page=5")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


def test_idempotency_key_replays_the_first_registration(api: APIClient) -> None:
    body = {"name": "Aiko", "email": "aiko@example.com", "password": PASSWORD}
    first = api.post("/api/v1/customers", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    second = api.post("/api/v1/customers", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    other = api.post(
        "/api/v1/customers", {**body, "name": "Bo"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )

    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json() == first.json()
    assert second["Location"] == first["Location"]
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    assert Customer.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_registrations_of_one_email_let_exactly_one_through() -> None:
    def attempt(n: int) -> int:
        try:
            return (
                APIClient()
                .post(
                    "/api/v1/customers",
                    {"name": f"n{n}", "email": "race@example.com", "password": PASSWORD},
                    format="json",
                )
                .status_code
            )
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = sorted(pool.map(attempt, range(16)))

    assert codes.count(201) == 1
    assert codes.count(409) == 15
