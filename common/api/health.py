"""``/healthz``: the process answers. ``/readyz``: its database and Redis answer too.

``/readyz`` names the dependency that is down and nothing more: exception texts carry host
names, users and authentication errors, so they go to the log, not into the response.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

from common.api.errors import PROBLEM_CONTENT_TYPE, problem

logger = logging.getLogger(__name__)

OK, UNREACHABLE = "ok", "unreachable"


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok", "service": settings.SERVICE_NAME})


def _check_database() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        logger.warning("readiness: the database is unreachable", exc_info=True)
        return False
    return True


def _check_redis() -> bool:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        logger.warning("readiness: Redis is unreachable", exc_info=True)
        return False
    finally:
        client.close()
    return True


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {
        "database": OK if _check_database() else UNREACHABLE,
        "redis": OK if _check_redis() else UNREACHABLE,
    }
    failed = {name: state for name, state in checks.items() if state != OK}
    if failed:
        body = problem(503, "not_ready", "A dependency is unreachable.", checks=failed)
        return JsonResponse(body, status=503, content_type=PROBLEM_CONTENT_TYPE)
    return JsonResponse({"status": "ready", "service": settings.SERVICE_NAME, "checks": checks})
