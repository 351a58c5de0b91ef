"""``python -m tests.sim``: run seeds, audit each run, shrink and report what fails.

make simulate SEED=7              one run, its whole trace (the same bytes every time)
make simulate RUNS=500            seeds 1..500 (FIRST_SEED moves the start), violations only
make simulate SEED=7 SIM_ARGS="--faults late,loss --inputs 0,1,4"   a shrunk case
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim")
    parser.add_argument("--seed", type=int, help="replay one seed and print its trace")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--seeds", help="comma-separated seeds to run (regression list)")
    parser.add_argument("--faults", help="comma-separated fault kinds (default: all)")
    parser.add_argument("--inputs", help="comma-separated input numbers to keep (default: all)")
    parser.add_argument("--no-shrink", action="store_true")
    args = parser.parse_args(argv)

    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.sim.settings"
    import django

    django.setup()
    from tests.sim.report import Runner
    from tests.sim.scenario import Faults
    from tests.sim.world import create_databases

    create_databases()
    faults = Faults() if args.faults is None else Faults.named(args.faults)
    keep = None if args.inputs is None else [int(i) for i in args.inputs.split(",") if i]
    runner = Runner(faults=faults, keep=keep, shrink=not args.no_shrink)
    if args.seed is not None:
        return runner.replay(args.seed)
    if args.seeds:
        seeds = [int(s) for s in args.seeds.split(",") if s]
    else:
        seeds = list(range(args.first_seed, args.first_seed + args.runs))
    started = time.perf_counter()
    failed = runner.many(seeds)
    took = time.perf_counter() - started
    print(
        f"{len(seeds)} runs, {len(failed)} with violations"
        f"{' (seeds ' + ', '.join(map(str, failed)) + ')' if failed else ''}; "
        f"{took:.1f} s: {len(seeds) / took:.2f} runs/s, {runner.delivered / took:.0f} messages/s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
