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
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from common.messaging.routing import SERVICES
from common.settings.database import database_url
from deploy.gateway import envoy, nginx
from deploy.gateway.routes import FLOWER
from deploy.local.processes import GATEWAYS, NGINX, Program, programs

ROOT = Path(__file__).resolve().parents[2]
PRIVATE_PG_PORT = 55432
PRIVATE_REDIS_PORT = 56379


@dataclass
class Stack:
    dir: Path
    port_base: int
    gateway: str = "envoy"
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Stack:
        stack_dir = Path(os.environ.get("STACK_DIR", ROOT / "var" / "stack")).resolve()
        gateway = os.environ.get("GATEWAY", "envoy")
        if gateway not in GATEWAYS:
            sys.exit(f"stack | GATEWAY must be one of {', '.join(GATEWAYS)}, not {gateway!r}")
        return cls(
            dir=stack_dir,
            port_base=int(os.environ.get("STACK_PORT_BASE", "8000")),
            gateway=gateway,
        )

    # Ports: gateway on the base, services on base+1…4, Flower on base+55, Envoy admin on base+1901.
    @property
    def gateway_port(self) -> int:
        return self.port_base

    def service_port(self, service: str) -> int:
        return self.port_base + 1 + SERVICES.index(service)

    @property
    def flower_port(self) -> int:
        return self.port_base + 55

    @property
    def envoy_admin_port(self) -> int:
        return self.port_base + 1901

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def socket(self) -> Path:
        return self.dir / "supervisor.sock"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"


def log(message: str) -> None:
    print(f"stack | {message}", flush=True)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


# --- PostgreSQL and Redis --------------------------------------------------------------------


def remember(stack: Stack, **values: str) -> None:
    """Use these settings now, and write them to .env so later ``manage.py`` runs find them too."""
    stack.env.update(values)
    env_file = ROOT / ".env"
    known = env_file.read_text() if env_file.exists() else ""
    with env_file.open("a") as out:
        for key, value in values.items():
            if f"{key}={value}" not in known:
                out.write(f"# written by `make up`: a private instance it started\n{key}={value}\n")


def _pg_bin(name: str) -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return found[-1] if found else (Path(p) if (p := shutil.which(name)) else None)


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; run its tools as the 'postgres' user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def ensure_postgres(stack: Stack) -> None:
    first = urlsplit(database_url(SERVICES[0], os.environ))
    if _reachable(first.hostname or "127.0.0.1", first.port or 5432):
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        sys.exit(
            f"stack | PostgreSQL is not reachable at {first.hostname}:{first.port} and its server is "
            "not installed. Install it (Debian: apt-get install postgresql) or set "
            "<SERVICE>_DATABASE_URL / DATABASE_HOST and DATABASE_PORT."
        )
    data = ROOT / "var" / "postgres"
    log(f"PostgreSQL unreachable; starting a private instance in {data} on port {PRIVATE_PG_PORT}")
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        subprocess.run(
            _as_postgres([str(initdb), "-D", str(data), "-U", "postgres", "--auth=trust"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    if not _reachable("127.0.0.1", PRIVATE_PG_PORT):
        subprocess.run(
            _as_postgres(
                [
                    str(pg_ctl),
                    "-D",
                    str(data),
                    "-l",
                    str(data / "server.log"),
                    "-w",
                    "start",
                    "-o",
                    f"-p {PRIVATE_PG_PORT} -k {data} -c listen_addresses=127.0.0.1",
                ]
            ),
            check=True,
        )
    remember(stack, DATABASE_HOST="127.0.0.1", DATABASE_PORT=str(PRIVATE_PG_PORT))


def ensure_redis(stack: Stack) -> None:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    parts = urlsplit(url)
    if _reachable(parts.hostname or "127.0.0.1", parts.port or 6379):
        return
    server = shutil.which("redis-server")
    if server is None:
        sys.exit(
            f"stack | Redis is not reachable at {parts.hostname}:{parts.port} and redis-server is not "
            "installed. Install it (Debian: apt-get install redis-server) or set REDIS_URL."
        )
    data = ROOT / "var" / "redis"
    data.mkdir(parents=True, exist_ok=True)
    log(f"Redis unreachable; starting a private instance in {data} on port {PRIVATE_REDIS_PORT}")
    subprocess.run(
        [
            server,
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            str(PRIVATE_REDIS_PORT),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data),
            "--logfile",
            str(data / "redis.log"),
            "--pidfile",
            str(data / "redis.pid"),
        ],
        check=True,
    )
    for _ in range(50):
        if _reachable("127.0.0.1", PRIVATE_REDIS_PORT):
            break
        time.sleep(0.1)
    db = parts.path.lstrip("/") or "0"
    remember(stack, REDIS_URL=f"redis://127.0.0.1:{PRIVATE_REDIS_PORT}/{db}")


# --- preparation -----------------------------------------------------------------------------


def manage(stack: Stack, service: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args, f"--settings={service}.settings"],
        cwd=ROOT,
        env={**os.environ, **stack.env},
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
    stack.env.setdefault("ADMIN_USERNAME", os.environ.get("ADMIN_USERNAME", "admin"))
    stack.env.setdefault("ADMIN_PASSWORD", os.environ.get("ADMIN_PASSWORD", "admin"))
    log("databases: create if missing, migrate, load the menu, ensure the admin user")
    run_for_every_service(stack, "bootstrap")


# --- supervisord -----------------------------------------------------------------------------


def supervisor_conf(stack: Stack, progs: list[Program]) -> str:
    esc = lambda text: text.replace("%", "%%")  # noqa: E731 — supervisord expands %(…)s
    lines = [
        "[unix_http_server]",
        f"file={esc(str(stack.socket))}",
        "[supervisord]",
        f"logfile={esc(str(stack.logs / 'supervisord.log'))}",
        f"pidfile={esc(str(stack.dir / 'supervisord.pid'))}",
        f"childlogdir={esc(str(stack.logs))}",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[supervisorctl]",
        f"serverurl=unix://{esc(str(stack.socket))}",
    ]
    for prog in progs:
        lines += [
            f"[program:{prog.name}]",
            f"command={esc(prog.command)}",
            f"directory={esc(str(ROOT))}",
            f"priority={prog.priority}",
            "autostart=true",
            # Like compose's `restart: unless-stopped`: a process that dies is started again.
            "autorestart=true",
            "startsecs=1",
            "startretries=50",
            "stopasgroup=true",
            "killasgroup=true",
            "stopsignal=TERM",
            "stopwaitsecs=20",
            "redirect_stderr=true",
            f"stdout_logfile={esc(str(stack.logs / (prog.name + '.log')))}",
            "stdout_logfile_maxbytes=50MB",
            "stdout_logfile_backups=2",
        ]
        if prog.env:
            pairs = ",".join(f'{k}="{esc(v)}"' for k, v in prog.env.items())
            lines.append(f"environment={pairs}")
    return "\n".join(lines) + "\n"


def supervisorctl(
    stack: Stack, *args: str, check: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_venv_bin("supervisorctl"), "-c", str(stack.dir / "supervisord.conf"), *args],
        capture_output=True,
        text=True,
        check=check,
    )


def is_running(stack: Stack) -> bool:
    if not stack.socket.exists():
        return False
    return supervisorctl(stack, "pid").stdout.strip().isdigit()


def write_gateway_config(stack: Stack) -> Path:
    """The gateway's configuration file, for the gateway this stack runs."""
    upstreams = {s: ("127.0.0.1", stack.service_port(s)) for s in SERVICES}
    upstreams[FLOWER] = ("127.0.0.1", stack.flower_port)
    listen = ("127.0.0.1", stack.gateway_port)
    if stack.gateway == "nginx":
        state = stack.dir / "nginx"
        state.mkdir(exist_ok=True)
        path = stack.dir / "nginx.conf"
        # As root, Nginx's workers would otherwise run as nobody, who cannot write to STACK_DIR.
        user = "root" if os.geteuid() == 0 else None
        path.write_text(
            nginx.render(listen=listen, upstreams=upstreams, state_dir=state, user=user, workers=2)
        )
        return path
    path = stack.dir / "envoy.json"
    config = envoy.render(
        listen=listen, admin=("127.0.0.1", stack.envoy_admin_port), upstreams=upstreams
    )
    path.write_text(json.dumps(config, indent=2))
    return path


def write_configs(stack: Stack) -> list[Program]:
    stack.logs.mkdir(parents=True, exist_ok=True)
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


def wait_ready(stack: Stack, timeout_s: float = 120.0) -> None:
    """Wait until every service answers ``/readyz`` and Flower answers at all (401 without a
    login), both through the gateway, and every worker and relay has said it consumes (each
    touches its ``READY_FILE``)."""
    deadline = time.monotonic() + timeout_s
    urls = {s: f"{stack.url}/{s}/readyz" for s in SERVICES} | {FLOWER: f"{stack.url}/flower/"}
    up = {s: {200} for s in SERVICES} | {FLOWER: {200, 401}}
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
    lines = [
        f"ready: gateway {stack.url} ({stack.gateway})",
        f"  API            {stack.url}/api/v1/  (customers, accounts, menu, orders, checkouts, cancellations)",
        *(
            f"  {s:<14} admin {stack.url}/{s}/admin/   docs {stack.url}/{s}/api/docs/"
            for s in SERVICES
        ),
        f"  admin login    {user} / {password}",
        f"  Flower         {stack.url}/flower/   login {flower_user} / {flower_password}",
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
    """Yield new lines of every program's log, prefixed with the program's name."""
    width = max(len(n) for n in names)
    handles = {}
    for name in names:
        path = stack.logs / f"{name}.log"
        path.touch()
        handle = path.open("r", errors="replace")
        handle.seek(0, os.SEEK_END)
        handles[name] = handle
    while True:
        quiet = True
        for name, handle in handles.items():
            for line in handle.readlines():
                quiet = False
                yield f"{name:<{width}} | {line.rstrip()}"
        if quiet:
            time.sleep(0.2)


def up(stack: Stack, *, detach: bool) -> None:
    stack.dir.mkdir(parents=True, exist_ok=True)
    if is_running(stack):
        log(f"already running (supervisord in {stack.dir})")
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
            [_venv_bin("supervisord"), "-c", str(stack.dir / "supervisord.conf")],
            cwd=ROOT,
            env={**os.environ, **stack.env},
            check=True,
        )
    wait_ready(stack)
    print_urls(stack)
    if detach:
        log(f"running in the background; stop with: make down  (STACK_DIR={stack.dir})")
        return
    log("streaming logs; Ctrl-C stops everything")
    try:
        for line in follow_logs(stack, [p.name for p in progs]):
            print(line, flush=True)
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
