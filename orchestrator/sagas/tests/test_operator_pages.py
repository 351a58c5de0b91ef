"""Operator surfaces every service has: health, readiness, OpenAPI, Swagger UI, admin, metrics."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

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
