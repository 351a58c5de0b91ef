"""``make chaos``: ``python -m tests.chaos [--checkouts N] [--seconds S] [--seed K]``.

Starts its own stack on private PostgreSQL and Redis, drives checkouts, cancellations and
deposits through the gateway while faults are injected, waits for quiescence, checks the
Outcomes through the API, prints a report (JSON last) and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from deploy.local.layout import ROOT
from tests.chaos.audit import Finals, Violation, audit, settle
from tests.chaos.client import Api, Login, Tally
from tests.chaos.drive import Driver, Plan, Record
from tests.chaos.faults import KINDS, Injector, schedule
from tests.chaos.stack import ChaosStack

# What the stack's processes get unless the caller's environment says otherwise: short saga
# deadlines so a paused worker overruns one within seconds, and a visibility timeout that hands
# a killed worker's message out again within the run; every client comes from one address.
SETTINGS = {
    "SAGA_REPLY_TIMEOUT_S": "2",
    "SAGA_BACKOFF_CAP_S": "8",
    "CELERY_VISIBILITY_TIMEOUT": "30",
    "STACK_READY_TIMEOUT_S": "600",
    **{
        f"GATEWAY_RATE_LIMIT_{name}_{part}": value
        for name in ("SIGNUP", "LOGIN")
        for part, value in (("RPS", "1000"), ("BURST", "2000"))
    },
}


def say(message: str) -> None:
    print(f"chaos | {message}", flush=True)


def arguments(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--checkouts", type=int, default=int(env("CHAOS_CHECKOUTS", "200")))
    parser.add_argument("--seconds", type=float, default=float(env("CHAOS_SECONDS", "120")))
    parser.add_argument("--seed", type=int, default=int(env("CHAOS_SEED", "0")) or None)
    parser.add_argument("--faults", type=int, default=int(env("CHAOS_FAULTS", "0")) or None)
    parser.add_argument("--customers", type=int, default=int(env("CHAOS_CUSTOMERS", "0")) or None)
    parser.add_argument("--clients", type=int, default=int(env("CHAOS_CLIENTS", "8")))
    parser.add_argument(
        "--settle-seconds", type=float, default=float(env("CHAOS_SETTLE_SECONDS", "240"))
    )
    parser.add_argument(
        "--drive-limit-seconds",
        type=float,
        default=float(env("CHAOS_DRIVE_LIMIT_SECONDS", "0")) or None,
        help="no new client turn after this long (default 3 × seconds + 60)",
    )
    parser.add_argument("--port-base", type=int, default=int(env("CHAOS_PORT_BASE", "47000")))
    parser.add_argument("--dir", type=Path, default=Path(env("CHAOS_DIR", ROOT / "var" / "chaos")))
    parser.add_argument(
        "--keep",
        action="store_true",
        default=env("CHAOS_KEEP", "") == "1",
        help="leave the stack running at the end (stop it with --down)",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    seed = args.seed or random.SystemRandom().randrange(1, 1_000_000)
    faults = args.faults or max(len(KINDS), int(args.seconds / 6))
    customers = args.customers or max(4, args.checkouts // 8)
    stack = ChaosStack(dir=args.dir.resolve(), port_base=args.port_base, settings=SETTINGS)
    say(
        f"seed {seed}: {args.checkouts} checkouts over {args.seconds:.0f}s, {customers} customers, "
        f"{faults} faults; stack in {stack.dir}, gateway {stack.url}"
    )
    began = time.monotonic()
    stack.up()
    try:
        return _chaos(stack, args, seed, faults, customers, began)
    finally:
        if args.keep:
            say(f"left running: {stack.url} (operator {stack.operator_url}, {stack.operator})")
        else:
            stack.down()


def _chaos(
    stack: ChaosStack,
    args: argparse.Namespace,
    seed: int,
    faults: int,
    customers: int,
    began: float,
) -> dict[str, Any]:
    tally, record = Tally(), Record()
    api = Api(stack.url, tally)
    operator = Login(api, *stack.operator)
    menu = [int(item["id"]) for item in api.call("GET", "/api/v1/menu").json()]
    limit_s = args.drive_limit_seconds or 3 * args.seconds + 60
    plan = Plan(args.checkouts, args.seconds, customers, seed, args.clients, limit_s)
    driver = Driver(stack.url, plan, record, api, menu)
    rng = random.Random(seed)
    pause_s = float(stack.env["SAGA_REPLY_TIMEOUT_S"]) + 2.0
    injector = Injector(stack, schedule(rng, args.seconds, faults), rng, pause_s, say)
    ready_s = time.monotonic() - began
    say(f"stack ready after {ready_s:.1f}s; driving")
    started = time.monotonic()
    chaos = threading.Thread(target=injector.run, args=(started,), name="faults", daemon=True)
    chaos.start()

    def enough(*_: object) -> None:  # Ctrl-C: stop driving and injecting, then settle and audit
        say("stopping the clients and the faults; settling")
        driver.stop.set()
        injector.stop.set()

    signal.signal(signal.SIGINT, enough)
    signal.signal(signal.SIGTERM, enough)
    try:
        driver.run()
        chaos.join()
    finally:
        injector.stop.set()
        driver.stop.set()
        chaos.join()
    drive_s = time.monotonic() - started
    say(
        f"drove for {drive_s:.1f}s: {len(record.checkouts)} checkouts, "
        f"{len(record.cancellations)} cancellations, {len(record.customers)} customers; settling"
    )
    finals = settle(operator, stack.operator_url, record, args.settle_seconds, say)
    violations = audit(operator, record, finals)
    violations += [Violation("stuck", "answered", text) for text in record.gave_up]
    samples = tally.server_errors  # the first few; every 500 counts
    violations += [
        Violation("outcome", "never-500", samples[n] if n < len(samples) else "(one more 500)")
        for n in range(tally.statuses[500])
    ]
    violations += [
        Violation("outcome", "every-fault-kind", f"{kind} never injected")
        for kind in KINDS
        if not injector.injected[kind]
    ]
    api.close()
    return report(
        args.checkouts,
        seed,
        record,
        finals,
        violations,
        tally,
        injector.injected,
        {
            "ready_s": ready_s,
            "drive_s": drive_s,
            "settle_s": finals.settle_s,
            "total_s": time.monotonic() - began,
        },
    )


def report(
    planned: int,
    seed: int,
    record: Record,
    finals: Finals,
    violations: list[Violation],
    tally: Tally,
    injected: Counter[str],
    durations: dict[str, float],
) -> dict[str, Any]:
    def states(finished: dict[str, dict[str, Any] | None]) -> dict[str, int]:
        return dict(Counter(f["state"] if f else "missing" for f in finished.values()))

    kinds = Counter(v.kind for v in violations)
    result = {
        "seed": seed,
        "faults": dict(sorted(injected.items())),
        "faults_total": sum(injected.values()),
        "checkouts_planned": planned,
        "customers": len(record.customers),
        "deposits": sum(len(c.deposits) for c in record.customers.values()),
        "checkouts": states(finals.checkouts),
        "cancellations": states(finals.cancellations),
        "refused": dict(record.refused),
        "http": {str(k): v for k, v in sorted(tally.statuses.items())},
        "http_errors": dict(tally.errors),
        "lost": kinds["lost"],
        "duplicated": kinds["duplicated"],
        "stuck": kinds["stuck"],
        "violations": len(violations),
        "violated": dict(Counter(v.rule for v in violations)),
        "seconds": {k: round(v, 1) for k, v in durations.items()},
    }
    # Every rule broken, with its first few cases (the rest are in the count).
    shown: Counter[str] = Counter()
    for violation in violations:
        shown[violation.rule] += 1
        if shown[violation.rule] <= 5:
            say(f"VIOLATION {violation}")
    say(
        f"faults {result['faults_total']} {result['faults']}; checkouts {result['checkouts']}; "
        f"cancellations {result['cancellations']}; lost {result['lost']}, duplicated "
        f"{result['duplicated']}, stuck {result['stuck']}, violations {result['violations']}"
    )
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    result = run(args)
    (args.dir / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    raise SystemExit(1 if result["violations"] else 0)


if __name__ == "__main__":
    main()
