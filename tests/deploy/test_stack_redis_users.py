"""`make up` with its private Redis: each process logs in as its own service, Flower as
`flower` with its own app; with a Redis given by REDIS_URL, no process is given another URL."""

from __future__ import annotations

from pathlib import Path

from common.messaging.redis_acl import USERS
from deploy.local.layout import Stack
from deploy.local.processes import Program, programs

SERVICES = ("customer", "account", "order", "orchestrator")


def stack_programs(tmp_path: Path, redis_urls: dict[str, str] | None) -> list[Program]:
    return programs(
        python="/venv/bin/python",
        services=SERVICES,
        ports={s: 9001 + i for i, s in enumerate(SERVICES)},
        state_dir=tmp_path,
        gateway="envoy",
        gateway_config=tmp_path / "envoy.json",
        envoy_base_id=9000,
        flower_port=9055,
        flower_auth="admin:pw",
        redis_urls=redis_urls,
    )


def test_each_process_gets_its_own_services_redis_user(tmp_path: Path) -> None:
    urls = {user: f"redis://{user}:pw-{user}@127.0.0.1:56379/0" for user in USERS}

    progs = stack_programs(tmp_path, urls)

    for prog in progs:
        if prog.kind == "gateway":
            assert "REDIS_URL" not in prog.env
        elif prog.kind == "flower":
            assert prog.env["REDIS_URL"] == urls["flower"]
            assert "-A common.messaging.flower flower" in prog.command
        else:
            assert prog.service is not None
            assert prog.env["REDIS_URL"] == urls[prog.service], prog.name
    assert {p.name for p in progs if p.env.get("REDIS_URL") == urls["orchestrator"]} == {
        "orchestrator-web",
        "orchestrator-worker",
        "orchestrator-relay",
        "orchestrator-beat",
    }


def test_with_one_given_redis_url_no_process_gets_another(tmp_path: Path) -> None:
    progs = stack_programs(tmp_path, None)

    assert not any("REDIS_URL" in prog.env for prog in progs)


def test_a_services_commands_get_its_own_url(tmp_path: Path) -> None:
    stack = Stack(dir=tmp_path, port_base=40000)
    assert "REDIS_URL" not in stack.service_env("order")

    stack.redis_urls = {"order": "redis://order:pw@127.0.0.1:56379/0"}

    assert stack.service_env("order")["REDIS_URL"] == "redis://order:pw@127.0.0.1:56379/0"
    assert stack.service_env("order")["CAFE_ENV"] == "development"
    assert "REDIS_URL" not in stack.service_env("account")
