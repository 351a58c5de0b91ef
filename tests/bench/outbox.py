"""Outbox benchmark: relay drain rate and commit→publish latency, on this machine, on loopback.

    make bench-outbox            # or: .venv/bin/python -m tests.bench.outbox [--rows N] [--rate R]

It uses its own database (``bench_customer``) and Redis database (15), starts the real relay
process (``manage.py relay``) and prints its figures; the last line is one JSON object.

1. Drain: ``--rows`` outbox rows are committed while no relay runs, then one relay starts; the
   rate is rows / (last ``sent_at`` − first ``sent_at``), so the relay's start-up is not counted.
2. Latency: writer processes commit one ``customer.registered`` per transaction at ``--rate``
   commits/s for ``--seconds``; a reader pops the queue. Latency = time the reader saw the
   message − time the writer's COMMIT returned.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/15"
os.environ.update(
    {
        # A local development stack (common/settings/production.py).
        "CAFE_ENV": "development",
        "DATABASE_NAME_PREFIX": "bench_",
        "REDIS_URL": REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "customer.settings",
        "LOG_LEVEL": "WARNING",
    }
)
os.environ.pop("CUSTOMER_DATABASE_URL", None)
sys.path.insert(0, str(ROOT))

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402

from common.messaging.contract import CustomerRegistered  # noqa: E402
from common.outbox.models import OutboxMessage  # noqa: E402
from common.outbox.services import outbox_event  # noqa: E402

QUEUE = "account"


def say(message: str) -> None:
    print(f"bench-outbox | {message}", flush=True)


def manage(*args: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args, "--settings=customer.settings"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def start_relay() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "relay", "--settings=customer.settings"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=20)


def reset(client: redis.Redis) -> None:
    OutboxMessage.objects.all().delete()
    client.flushdb()


def event() -> CustomerRegistered:
    return CustomerRegistered(customer_id=uuid.uuid4(), name="Bench", email="bench@example.com")


def drain(rows: int, client: redis.Redis) -> float:
    reset(client)
    say(f"drain: writing a backlog of {rows} rows")
    for start in range(0, rows, 1000):
        with transaction.atomic():
            for _ in range(min(1000, rows - start)):
                outbox_event("customer.registered", event())
    relay = start_relay()
    try:
        deadline = time.monotonic() + 300
        while OutboxMessage.objects.filter(status="pending").exists():
            if time.monotonic() > deadline:
                raise SystemExit("drain did not finish in 300 s")
            time.sleep(0.1)
    finally:
        stop(relay)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT extract(epoch FROM max(sent_at) - min(sent_at)) FROM {OutboxMessage._meta.db_table}"  # noqa: S608
        )
        (span,) = cursor.fetchone()
    published = sum(len(queued_envelopes(item)) for item in client.lrange(QUEUE, 0, -1))
    if published < rows:
        raise SystemExit(f"only {published} of {rows} rows reached the queue")
    rate = rows / float(span)
    say(f"drain: {rows} rows in {float(span):.2f} s by one relay = {rate:,.0f} msgs/s")
    return rate


def writer(rate: float, seconds: float, results: mp.Queue[tuple[str, dict[str, float]]]) -> None:
    connections.close_all()
    committed: dict[str, float] = {}
    interval = 1.0 / rate
    start = time.perf_counter()
    next_at = start
    while time.perf_counter() - start < seconds:
        with transaction.atomic():
            sent = outbox_event("customer.registered", event())
        committed[str(sent.id)] = time.time()
        next_at += interval
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    results.put(("writer", committed))


def reader(expected_s: float, results: mp.Queue[tuple[str, dict[str, float]]]) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    seen: dict[str, float] = {}
    idle_since = time.monotonic()
    deadline = time.monotonic() + expected_s + 30
    while time.monotonic() < deadline and (not seen or time.monotonic() - idle_since < 3):
        item = client.brpop([QUEUE], timeout=0.5)
        if item is None:
            continue
        now = time.time()
        idle_since = time.monotonic()
        for envelope in queued_envelopes(item[1]):
            seen[envelope["id"]] = now
    results.put(("reader", seen))


def queued_envelopes(item: bytes) -> list[dict[str, str]]:
    """The envelopes one task message on the queue carries (the relay packs a queue's)."""
    message = json.loads(item)
    args, _, _ = json.loads(base64.b64decode(message["body"]))
    return [json.loads(arg) for arg in args]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


def latency(rate: float, seconds: float, writers: int, client: redis.Redis) -> dict[str, float]:
    reset(client)
    relay = start_relay()
    time.sleep(3)  # let the relay start and LISTEN
    ctx = mp.get_context("fork")
    connections.close_all()
    results: mp.Queue[tuple[str, dict[str, float]]] = ctx.Queue()
    say(f"latency: {writers} writers x {rate / writers:.0f} commits/s for {seconds:.0f} s")
    procs = [ctx.Process(target=reader, args=(seconds, results))]
    procs += [
        ctx.Process(target=writer, args=(rate / writers, seconds, results)) for _ in range(writers)
    ]
    for p in procs:
        p.start()
    committed: dict[str, float] = {}
    seen: dict[str, float] = {}
    for _ in procs:
        role, times = results.get(timeout=seconds + 90)
        (seen if role == "reader" else committed).update(times)
    for p in procs:
        p.join(timeout=30)
    stop(relay)
    lost = set(committed) - set(seen)
    if lost:
        raise SystemExit(f"{len(lost)} committed messages never reached the queue")
    millis = [max(seen[i] - committed[i], 0.0) * 1000 for i in committed]
    achieved = len(committed) / seconds
    p50, p99 = percentile(millis, 0.50), percentile(millis, 0.99)
    say(
        f"latency: {len(committed)} commits ({achieved:.0f}/s), p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(millis):.1f} ms"
    )
    return {
        "commit_to_publish_ms_p50": round(p50, 2),
        "commit_to_publish_ms_p99": round(p99, 2),
        "steady_commits_per_s": round(achieved),
        "steady_messages": len(committed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument(
        "--rate", type=float, default=500.0, help="commits per second in the latency run"
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--writers", type=int, default=2)
    args = parser.parse_args()
    manage("bootstrap")
    client = redis.Redis.from_url(REDIS_URL)
    drain_rate = drain(args.rows, client)
    figures = latency(args.rate, args.seconds, args.writers, client)
    reset(client)
    print(
        json.dumps(
            {
                "relay_msgs_per_s": round(drain_rate),
                **figures,
                "relays": 1,
                "rows": args.rows,
                "cpus": os.cpu_count(),
                "load_avg_1m": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
