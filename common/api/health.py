"""``/healthz``: the process answers. ``/readyz``: its database and Redis answer too."""

from __future__ import annotations

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from common.api.errors import PROBLEM_CONTENT_TYPE, problem


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok", "service": settings.SERVICE_NAME})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_redis() -> str | None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


def readyz(request: HttpRequest) -> JsonResponse:
    failures = {
        name: error
        for name, error in (("database", _check_database()), ("redis", _check_redis()))
        if error is not None
    }
    if failures:
        body = problem(503, "not_ready", "A dependency is unreachable.", checks=failures)
        return JsonResponse(body, status=503, content_type=PROBLEM_CONTENT_TYPE)
    return JsonResponse(
        {"status": "ready", "service": settings.SERVICE_NAME, "checks": ["database", "redis"]}
    )
