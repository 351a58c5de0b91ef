"""Saga benchmark: checkouts end to end through the gateway, at increasing offered load.

    make bench-saga      # or: .venv/bin/python -m tests.bench.saga [--rates 10,25,50,60] [--seconds 30]
    .venv/bin/python -m tests.bench.saga --tracing 1     # the same with every checkout traced

It starts a private stack with every process (``deploy.local.stack up``: its own ports 28000+,
databases ``bench_<service>``, Redis db 14), funds customers, then for each rate submits
checkouts open-loop (at fixed intervals, not waiting for answers) for ``--seconds``. Latency is
POST sent → the saga's terminal ``updated_at`` (same clock). It also measures the transport
floor: no-op Celery tasks through the same Redis and the same worker settings. It prints a table,
writes a plot of latency against offered load, and prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import redis

from tests.bench import cpu

ROOT = Path(__file__).resolve().parents[2]
PORT_BASE = 28000
REDIS_URL = "redis://127.0.0.1:6379/14"
SERVICES = ("customer", "account", "order", "orchestrator")
ENV = {
    **os.environ,
    # A local development stack (common/settings/production.py).
    "CAFE_ENV": "development",
    "STACK_DIR": str(ROOT / "var" / "bench"),
    "STACK_PORT_BASE": str(PORT_BASE),
    "DATABASE_NAME_PREFIX": "bench_",
    "REDIS_URL": REDIS_URL,
    "LOG_LEVEL": "WARNING",
    # 50 customers sign up and log in from this one address before the timing starts.
    **{
        f"GATEWAY_RATE_LIMIT_{name}_{part}": value
        for name in ("SIGNUP", "LOGIN")
        for part, value in (("RPS", "1000"), ("BURST", "2000"))
    },
}
for _s in SERVICES:
    ENV.pop(f"{_s.upper()}_DATABASE_URL", None)
URL = f"http://127.0.0.1:{PORT_BASE}"
ORCHESTRATOR_DB = "postgresql://postgres@127.0.0.1:5432/bench_orchestrator"


def say(message: str) -> None:
    print(f"bench-saga | {message}", flush=True)


def stack(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "deploy.local.stack", *args], cwd=ROOT, env=ENV, check=True
    )


def fresh() -> None:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        for service in SERVICES:
            conn.execute(f'DROP DATABASE IF EXISTS "bench_{service}" WITH (FORCE)')
    redis.Redis.from_url(REDIS_URL).flushdb()


PASSWORD = "bench correct horse battery"


async def fund(client: aiohttp.ClientSession, count: int) -> dict[str, dict[str, str]]:
    """Sign up ``count`` customers, log each in (before any timing starts), fund them; returns
    each customer's Authorization header."""
    customers: dict[str, dict[str, str]] = {}
    for _ in range(count):
        email = f"{uuid.uuid4().hex}@example.com"
        body = {"name": "Bench", "email": email, "password": PASSWORD}
        async with client.post("/api/v1/customers", json=body) as r:
            customer = (await r.json())["id"]
        login = {"username": email, "password": PASSWORD}
        async with client.post("/api/v1/tokens", json=login) as r:
            customers[customer] = {"Authorization": f"Bearer {(await r.json())['access_token']}"}
    for customer, auth in customers.items():
        while True:
            async with client.get(f"/api/v1/accounts/{customer}", headers=auth) as r:
                if r.status == 200:
                    break
            await asyncio.sleep(0.05)
        deposit = {"amount": 1_000_000_000}
        async with client.post(
            f"/api/v1/accounts/{customer}/deposits", json=deposit, headers=auth
        ) as r:
            r.raise_for_status()
    return customers


def parse(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


async def run_rate(
    client: aiohttp.ClientSession, customers: dict[str, dict[str, str]], rate: float, seconds: float
) -> dict[str, Any]:
    """Offer ``rate`` checkouts/s for ``seconds``; return what finished and how fast."""
    sent: dict[str, float] = {}
    failures = 0
    shed = 0  # 503 overloaded: refused at once by admission control, nothing started
    shed_ms: list[float] = []  # how long each refusal took to come back
    interval = 1.0 / rate
    names = list(customers)
    owner: dict[str, str] = {}
    cpu_before = cpu.snapshot(Path(ENV["STACK_DIR"]), "bench_")
    start = time.monotonic()

    async def one(n: int) -> None:
        nonlocal failures, shed
        customer = names[n % len(names)]
        body = {"items": [{"menu_item_id": 1 + n % 6, "quantity": 1}]}
        posted = time.time()
        try:
            async with client.post(
                "/api/v1/checkouts", json=body, headers=customers[customer]
            ) as response:
                if response.status != 202:
                    if response.status == 503:
                        shed += 1
                        shed_ms.append((time.time() - posted) * 1000)
                    else:
                        failures += 1
                    return
                saga_id = (await response.json())["id"]
                sent[saga_id] = posted
                owner[saga_id] = customer
        except aiohttp.ClientError:
            failures += 1

    tasks = []
    n = 0
    while time.monotonic() - start < seconds:
        target = start + n * interval
        if target > time.monotonic():
            await asyncio.sleep(target - time.monotonic())
        tasks.append(asyncio.create_task(one(n)))
        n += 1
    await asyncio.gather(*tasks)
    offered_for = time.monotonic() - start

    # Wait in the database (one cheap query) until every saga has ended, so that the CPU spent
    # is that of the sagas alone; then read each saga's terminal state through the API.
    await wait_until_ended(list(sent), time.monotonic() + 120)
    cpu_after = cpu.snapshot(Path(ENV["STACK_DIR"]), "bench_")
    latencies: list[float] = []
    states: dict[str, int] = {}
    pending = dict(sent)
    deadline = time.monotonic() + 120
    finished_last = 0.0
    while pending and time.monotonic() < deadline:
        done = []
        for saga_id in list(pending)[:400]:
            async with client.get(
                f"/api/v1/checkouts/{saga_id}", headers=customers[owner[saga_id]]
            ) as response:
                body = await response.json()
            if body["state"] in {"completed", "rejected", "failed"}:
                ended = parse(body["updated_at"])
                latencies.append((ended - pending[saga_id]) * 1000)
                finished_last = max(finished_last, ended)
                states[body["state"]] = states.get(body["state"], 0) + 1
                done.append(saga_id)
        for saga_id in done:
            pending.pop(saga_id)
        if pending:
            await asyncio.sleep(0.5)
    first_post = min(sent.values()) if sent else time.time()
    completed = states.get("completed", 0)
    span = max(finished_last - first_post, offered_for)
    latencies.sort()
    cpu_ms = cpu.per_unit(cpu_before, cpu_after, len(sent) - len(pending))
    return {
        "offered_per_s": rate,
        "submitted": len(sent),
        "post_failures": failures,
        "shed": shed,
        "shed_ms_p99": round(sorted(shed_ms)[int(len(shed_ms) * 0.99)], 1) if shed_ms else None,
        "unfinished": len(pending),
        "states": states,
        "sagas_per_s": round(completed / span, 1),
        "latency_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
        "latency_ms_p99": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1)
        if latencies
        else None,
        "latency_ms_max": round(latencies[-1], 1) if latencies else None,
        "cpu_ms_per_saga": cpu_ms,
    }


async def wait_until_ended(saga_ids: list[str], deadline: float) -> None:
    with psycopg.connect(ORCHESTRATOR_DB, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM sagas_saga WHERE id = ANY(%s::uuid[]) "
                "AND state IN ('running', 'compensating')",
                [saga_ids],
            ).fetchone()
            if not row or not row[0]:
                return
            await asyncio.sleep(0.1)


def vacuum() -> None:
    """Vacuum the bench databases before each rate. This machine's PostgreSQL runs with
    autovacuum off, so without it every rate would start on the dead rows of the ones before
    (each saga updates its row four times, the relay each outbox row once)."""
    for service in SERVICES:
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:5432/bench_{service}", autocommit=True
        ) as conn:
            conn.execute("VACUUM (ANALYZE)")


def messages_per_saga(since: datetime, sagas: int) -> float:
    total = 0
    for service in SERVICES:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/bench_{service}") as conn:
            row = conn.execute(
                "SELECT count(*) FROM outbox_message WHERE created_at >= %s AND type NOT LIKE 'customer.registered%%'",
                [since],
            ).fetchone()
            total += row[0] if row else 0
    return round(total / max(sagas, 1), 2)


def celery_noop_per_s(tasks: int = 5000) -> float:
    """The transport floor: no-op tasks through the same Redis, one worker with the stack's settings."""
    client = redis.Redis.from_url(REDIS_URL)
    client.delete("bench_noop", "bench:noop:done")
    env = {**ENV, "DJANGO_SETTINGS_MODULE": "order.settings"}
    worker = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "order",
            "worker",
            "--queues",
            "bench_noop",
            "--hostname",
            "noop@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sys.path.insert(0, str(ROOT))
        os.environ.update({"REDIS_URL": REDIS_URL, "DJANGO_SETTINGS_MODULE": "order.settings"})
        from order.celery import app

        app.send_task("transport.noop", args=("bench:noop:done",), queue="bench_noop")
        deadline = time.monotonic() + 60
        while client.get("bench:noop:done") is None and time.monotonic() < deadline:
            time.sleep(0.1)
        client.delete("bench:noop:done")
        with app.producer_or_acquire() as producer:
            for _ in range(tasks):
                app.send_task(
                    "transport.noop",
                    args=("bench:noop:done",),
                    queue="bench_noop",
                    producer=producer,
                )
        start = time.monotonic()
        while int(client.get("bench:noop:done") or 0) < tasks and time.monotonic() - start < 120:
            time.sleep(0.02)
        return round(int(client.get("bench:noop:done") or 0) / (time.monotonic() - start))
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    offered = [r["offered_per_s"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(offered, [r["latency_ms_p50"] for r in rows], marker="o", label="p50")
    ax.plot(offered, [r["latency_ms_p99"] for r in rows], marker="o", label="p99")
    ax.axhline(1000, color="grey", linestyle="--", linewidth=1, label="p99 target 1 s")
    for r in rows:
        ax.annotate(
            f"{r['sagas_per_s']}/s",
            (r["offered_per_s"], r["latency_ms_p99"]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=8,
        )
    ax.set_yscale("log")
    ax.set_xlabel("offered load (checkouts/s)")
    ax.set_ylabel("POST → terminal state (ms)")
    ax.set_title("place-order saga latency against offered load (2 cores, all processes)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rates = [float(r) for r in args.rates.split(",")]
    # aiohttp, not httpx: the load generator shares the two cores with the system, and httpx
    # spent 2.2 ms of CPU per POST against aiohttp's 0.27 ms.
    connector = aiohttp.TCPConnector(limit=64)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(URL, connector=connector, timeout=timeout) as client:
        customers = await fund(client, 50)
        say(f"{len(customers)} customers funded")
        await run_rate(client, customers, 5, 3)  # warm up every process
        rows = []
        since = datetime.now().astimezone()
        for rate in rates:
            vacuum()
            row = await run_rate(client, customers, rate, args.seconds)
            say(json.dumps(row))
            rows.append(row)
        total = sum(r["states"].get("completed", 0) + r["states"].get("rejected", 0) for r in rows)
        return {"rows": rows, "messages_per_saga": messages_per_saga(since, total), "sagas": total}


SINK = "import time\nfrom tests.tracing.otlp import receiving\nwith receiving({port}, keep=False):\n    time.sleep(86400)"


def start_trace_sink(ratio: float) -> tuple[subprocess.Popen[bytes], int]:
    """An OTLP/HTTP receiver that only counts spans, in its own process (a collector would be
    on another machine; here its CPU is part of what the two cores do), and the stack's
    environment pointed at it: the standard ``OTEL_*`` settings every process reads."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    sink = subprocess.Popen([sys.executable, "-c", SINK.format(port=port)], cwd=ROOT)
    ENV.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": f"{ratio:g}",
        }
    )
    return sink, port


def spans_received(sink: tuple[subprocess.Popen[bytes], int] | None) -> int | None:
    """Every span the sink has counted, once the exporters' batches (5 s) have come in."""
    if sink is None:
        return None
    time.sleep(6)
    with urllib.request.urlopen(f"http://127.0.0.1:{sink[1]}/count", timeout=5) as answer:
        return int(answer.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="10,20,30,40,50,53,56")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--plot", default=str(ROOT / "tests" / "bench" / "results" / "bench-saga.png")
    )
    parser.add_argument("--keep", action="store_true", help="leave the bench stack running")
    parser.add_argument(
        "--tracing",
        metavar="SAMPLER_ARG",
        type=float,
        help="trace every process (gateway too) into an OTLP/HTTP sink in its own process, "
        "sampling this fraction of new traces (1 = every checkout)",
    )
    args = parser.parse_args()
    stack("down")
    fresh()
    sink = start_trace_sink(args.tracing) if args.tracing is not None else None
    stack("up", "--detach")
    try:
        result = asyncio.run(main_async(args))
        spans = spans_received(sink)
        noop = celery_noop_per_s()
    finally:
        if not args.keep:
            stack("down")
        if sink is not None:
            sink[0].terminate()
            sink[0].wait()
    rows = result["rows"]
    meeting = [
        r
        for r in rows
        if r["latency_ms_p99"] is not None and r["latency_ms_p99"] <= 1000 and not r["unfinished"]
    ]
    best = max(meeting or rows, key=lambda r: r["sagas_per_s"])
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    plot(rows, Path(args.plot))
    say(f"{'offered/s':>10} {'done/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  states")
    for r in rows:
        say(
            f"{r['offered_per_s']:>10} {r['sagas_per_s']:>8} {r['latency_ms_p50']:>8} {r['latency_ms_p99']:>8} {r['latency_ms_max']:>8}  {r['states']}"
        )
    say(f"plot: {args.plot}")
    print(
        json.dumps(
            {
                "sagas_per_s": best["sagas_per_s"],
                "latency_ms_p50": best["latency_ms_p50"],
                "latency_ms_p99": best["latency_ms_p99"],
                "offered_per_s": best["offered_per_s"],
                "sustained_s": args.seconds,
                "messages_per_saga": result["messages_per_saga"],
                "celery_noop_per_s": noop,
                # Every request carries a customer's access token, verified at the gateway and
                # again by the service.
                "auth": True,
                "tracing_sampled": args.tracing,
                "spans_per_saga": round(spans / result["sagas"], 1) if spans is not None else None,
                "cpus": os.cpu_count(),
                "load_avg_1m": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
