"""Run the whole system as plain processes on one machine, under supervisord.

    python -m deploy.local.stack up            # prepare, start, print URLs, follow logs; Ctrl-C stops
    python -m deploy.local.stack up --detach   # same, but return once everything is ready
    python -m deploy.local.stack down          # stop a stack started in the background
    python -m deploy.local.stack status

Everything is configured from the environment (see README, "Configuration"); the defaults give
the gateway on http://127.0.0.1:8000. A second stack (the end-to-end tests use one) only needs
another STACK_DIR, STACK_PORT_BASE, database names and Redis database. GATEWAY=nginx runs Nginx
instead of Envoy as the gateway, with the same routes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common.messaging.routing import SERVICES
from deploy.gateway import envoy, nginx, policy
from deploy.gateway.routes import FLOWER
from deploy.local.backing import ensure_postgres, ensure_redis
from deploy.local.identity import ensure_token_keys, identity_env, token_keys_dir
from deploy.local.keys import ensure_message_keys
from deploy.local.layout import ROOT, Stack, log, venv_bin
from deploy.local.processes import NGINX, Program, programs
from deploy.local.supervisor import is_running, supervisor_conf, supervisorctl

# --- preparation -----------------------------------------------------------------------------


def manage(stack: Stack, service: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args, f"--settings={service}.settings"],
        cwd=ROOT,
        env={**os.environ, **stack.service_env(service)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def run_for_every_service(stack: Stack, *args: str) -> None:
    """Run one management command for the four services at once; fail loudly if one fails."""
    running = {service: manage(stack, service, *args) for service in SERVICES}
    for service, process in running.items():
        output, _ = process.communicate()
        if process.returncode != 0:
            sys.stdout.write(output.decode(errors="replace"))
            sys.exit(f"stack | `manage.py {' '.join(args)}` failed for {service}")


def ensure_nginx(stack: Stack) -> None:
    if stack.gateway == "nginx" and not os.access(NGINX, os.X_OK):
        sys.exit(
            f"stack | GATEWAY=nginx needs {NGINX}. Install it (Debian: apt-get install nginx)."
        )


def flower_login() -> tuple[str, str]:
    return os.environ.get("FLOWER_USER", "admin"), os.environ.get("FLOWER_PASSWORD", "admin")


def prepare(stack: Stack) -> None:
    ensure_nginx(stack)
    ensure_postgres(stack)
    ensure_redis(stack)
    ensure_message_keys(stack.env)
    stack.env.setdefault("ADMIN_USERNAME", os.environ.get("ADMIN_USERNAME", "admin"))
    stack.env.setdefault("ADMIN_PASSWORD", os.environ.get("ADMIN_PASSWORD", "admin"))
    ensure_token_keys(stack)
    log("databases: create if missing, migrate, load the menu, ensure the admin user")
    run_for_every_service(stack, "bootstrap")


# --- configuration and readiness ---------------------------------------------------------------


def write_gateway_config(stack: Stack) -> Path:
    """The gateway's configuration file, for the gateway this stack runs."""
    upstreams = {s: ("127.0.0.1", stack.service_port(s)) for s in SERVICES}
    upstreams[FLOWER] = ("127.0.0.1", stack.flower_port)
    listen = ("127.0.0.1", stack.gateway_port)
    operator_listen = ("127.0.0.1", stack.operator_port)
    # What the stack gives its processes wins, so the gateway trusts the issuer they use.
    settings = {**os.environ, **stack.env}
    limit = policy.RateLimit.from_env(settings)
    caller_limits = policy.caller_limits(settings)
    if stack.gateway == "nginx":
        state = stack.dir / "nginx"
        state.mkdir(exist_ok=True)
        path = stack.dir / "nginx.conf"
        # As root, Nginx's workers would otherwise run as nobody, who cannot write to STACK_DIR.
        user = "root" if os.geteuid() == 0 else None
        config = nginx.render(
            listen=listen,
            operator_listen=operator_listen,
            upstreams=upstreams,
            state_dir=state,
            user=user,
            workers=2,
            rate_limit=limit,
            caller_limits=caller_limits,
        )
        path.write_text(config)
        return path
    path = stack.dir / "envoy.json"
    rendered = envoy.render(
        listen=listen,
        operator_listen=operator_listen,
        admin=("127.0.0.1", stack.envoy_admin_port),
        upstreams=upstreams,
        rate_limit=limit,
        identity=policy.Identity.from_env(settings),
        caller_limits=caller_limits,
        tracing=policy.Tracing.from_env(settings),
    )
    path.write_text(json.dumps(rendered, indent=2))
    return path


def write_configs(stack: Stack) -> list[Program]:
    stack.logs.mkdir(parents=True, exist_ok=True)
    stack.env.update(identity_env(stack))
    progs = programs(
        python=sys.executable,
        services=SERVICES,
        ports={s: stack.service_port(s) for s in SERVICES},
        state_dir=stack.dir,
        gateway=stack.gateway,
        gateway_config=write_gateway_config(stack),
        envoy_base_id=stack.port_base,
        flower_port=stack.flower_port,
        flower_auth=":".join(flower_login()),
        web_env={"customer": {"TOKEN_KEYS_DIR": str(token_keys_dir(stack))}},
        redis_urls=stack.redis_urls,
    )
    (stack.dir / "supervisord.conf").write_text(supervisor_conf(stack, progs))
    return progs


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 — our own loopback URL
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return None


def wait_ready(stack: Stack, timeout_s: float | None = None) -> None:
    """Wait until every service answers ``/readyz`` and Flower answers at all (401 without a
    login), both through the gateway's operator listener, the public listener answers (the
    customer's ``/healthz``), and every worker and relay has said it consumes (each touches its
    ``READY_FILE``)."""
    if timeout_s is None:
        # A loaded machine starts fifteen Python processes slowly; STACK_READY_TIMEOUT_S allows it.
        timeout_s = float(os.environ.get("STACK_READY_TIMEOUT_S", "120"))
    deadline = time.monotonic() + timeout_s
    operator = stack.operator_url
    urls = (
        {s: f"{operator}/{s}/readyz" for s in SERVICES}
        | {FLOWER: f"{operator}/flower/"}
        | {"public": f"{stack.url}/customer/healthz"}
    )
    up = {s: {200} for s in SERVICES} | {FLOWER: {200, 401}, "public": {200}}
    pending = set(urls)
    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        while pending and time.monotonic() < deadline:
            checks = {name: pool.submit(_status, urls[name]) for name in pending}
            pending = {name for name, status in checks.items() if status.result() not in up[name]}
            if pending:
                time.sleep(0.3)
    markers = [f"{s}-{kind}" for s in SERVICES for kind in ("worker", "relay")]
    while time.monotonic() < deadline and not all(
        (stack.dir / "ready" / m).exists() for m in markers
    ):
        time.sleep(0.2)
    pending |= {m for m in markers if not (stack.dir / "ready" / m).exists()}
    if pending:
        print(supervisorctl(stack, "status").stdout)
        sys.exit(
            f"stack | not ready after {timeout_s:.0f}s: {', '.join(sorted(pending))}; see {stack.logs}"
        )


def print_urls(stack: Stack) -> None:
    user = stack.env.get("ADMIN_USERNAME", os.environ.get("ADMIN_USERNAME", "admin"))
    password = stack.env.get("ADMIN_PASSWORD", os.environ.get("ADMIN_PASSWORD", "admin"))
    flower_user, flower_password = flower_login()
    operator = stack.operator_url
    lines = [
        f"ready: gateway {stack.url} ({stack.gateway}), operator listener {operator}",
        f"  API            {stack.url}/api/v1/  (customers, accounts, menu, orders, checkouts, cancellations)",
        *(
            f"  {s:<14} docs {stack.url}/{s}/api/docs/   admin {operator}/{s}/admin/"
            for s in SERVICES
        ),
        f"  admin login    {user} / {password}",
        f"  Flower         {operator}/flower/   login {flower_user} / {flower_password}",
        f"  readiness      {operator}/<service>/readyz   metrics {operator}/<service>/metrics",
        *(
            [f"  Envoy admin    http://127.0.0.1:{stack.envoy_admin_port}/stats/prometheus"]
            if stack.gateway == "envoy"
            else []
        ),
        f"  logs           {stack.logs}",
    ]
    for line in lines:
        log(line)


def follow_logs(stack: Stack, names: list[str]) -> Iterator[str]:
    """Yield new lines of every program's log, prefixed with the program's name, until the
    stack stops (``make down`` from another shell): then the last lines, and the end."""
    width = max(len(n) for n in names)
    handles = {}
    for name in names:
        path = stack.logs / f"{name}.log"
        path.touch()
        handle = path.open("r", errors="replace")
        handle.seek(0, os.SEEK_END)
        handles[name] = handle
    while True:
        # Read before looking: what the processes wrote as they stopped is still shown.
        stopped = not stack.socket.exists()
        quiet = True
        for name, handle in handles.items():
            for line in handle.readlines():
                quiet = False
                yield f"{name:<{width}} | {line.rstrip()}"
        if stopped:
            return
        if quiet:
            time.sleep(0.2)


def up(stack: Stack, *, detach: bool) -> None:
    stack.dir.mkdir(parents=True, exist_ok=True)
    if is_running(stack):
        log(f"already running (supervisord in {stack.dir})")
        ensure_redis(stack)  # the users of a private Redis, for the configuration written again
        progs = write_configs(stack)
    else:
        prepare(stack)
        progs = write_configs(stack)
        # Metrics files of processes that no longer exist would be summed in forever.
        shutil.rmtree(stack.dir / "prometheus", ignore_errors=True)
        shutil.rmtree(stack.dir / "ready", ignore_errors=True)
        for service in SERVICES:
            (stack.dir / "prometheus" / service).mkdir(parents=True)
        log(f"starting {len(progs)} processes under supervisord")
        subprocess.run(
            [venv_bin("supervisord"), "-c", str(stack.dir / "supervisord.conf")],
            cwd=ROOT,
            env={**os.environ, **stack.env},
            check=True,
        )
    # A loaded machine may need longer (STACK_READY_TIMEOUT_S) to start fifteen processes.
    wait_ready(stack, float(os.environ.get("STACK_READY_TIMEOUT_S", "120")))
    print_urls(stack)
    if detach:
        log(f"running in the background; stop with: make down  (STACK_DIR={stack.dir})")
        return
    log("streaming logs; Ctrl-C stops everything")
    try:
        for line in follow_logs(stack, [p.name for p in progs]):
            print(line, flush=True)
        log("the stack was stopped (make down)")
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        down(stack)


def down(stack: Stack) -> None:
    if not is_running(stack):
        log("not running")
        return
    log("stopping every process")
    supervisorctl(stack, "shutdown")
    for _ in range(150):
        if not stack.socket.exists():
            break
        time.sleep(0.2)
    log("stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="stack", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="prepare and start everything")
    up_parser.add_argument("--detach", action="store_true", help="return once ready")
    sub.add_parser("down", help="stop everything")
    sub.add_parser("status", help="show each process")
    args = parser.parse_args(argv)
    stack = Stack.from_env()
    if args.command == "up":
        up(stack, detach=args.detach)
    elif args.command == "down":
        down(stack)
    else:
        if not is_running(stack):
            log("not running")
            sys.exit(3)
        print(supervisorctl(stack, "status").stdout, end="")


if __name__ == "__main__":
    main()
