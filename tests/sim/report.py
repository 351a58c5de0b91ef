"""Running seeds, shrinking a failing one, and printing what a developer needs to act on it."""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tests.sim.scenario import FAULT_KINDS, Faults
from tests.sim.simulator import Run, Simulation, short
from tests.sim.world import vacuum

PROGRESS_EVERY = 500
# Runs between two VACUUMs of the simulation databases (world.vacuum).
VACUUM_EVERY = 200


@dataclass
class Case:
    seed: int
    faults: Faults
    keep: list[int] | None

    def command(self) -> str:
        extra = []
        if self.faults.enabled != frozenset(FAULT_KINDS):
            extra.append(f"--faults {','.join(sorted(self.faults.enabled)) or ','}")
        if self.keep is not None:
            extra.append(f"--inputs {','.join(map(str, self.keep)) or ','}")
        args = f" SIM_ARGS={shlex.quote(' '.join(extra))}" if extra else ""
        return f"make simulate SEED={self.seed}{args}"

    def run(self) -> Run:
        return Simulation(self.seed, self.faults, keep=self.keep).execute()


class Runner:
    def __init__(self, *, faults: Faults, keep: list[int] | None, shrink: bool) -> None:
        self.faults, self.keep, self.shrink = faults, keep, shrink
        self.delivered = 0

    def replay(self, seed: int) -> int:
        case = Case(seed, self.faults, self.keep)
        run = case.run()
        for line in run.trace:
            print(line)
        print(f"-- {run.delivered} messages delivered in {run.virtual_s:.1f} s of virtual time")
        if run.ok:
            print(f"seed {seed}: every check passed")
            return 0
        for violation in run.violations:
            print(f"VIOLATION {violation}")
        print(f"replay: {case.command()}")
        return 1

    def many(self, seeds: Sequence[int]) -> list[int]:
        failed = []
        started = time.perf_counter()
        for done, seed in enumerate(seeds, start=1):
            case = Case(seed, self.faults, self.keep)
            run = case.run()
            self.delivered += run.delivered
            if not run.ok:
                failed.append(seed)
                self.explain(case, run)
            if done % VACUUM_EVERY == 0:
                vacuum()
            if done % PROGRESS_EVERY == 0 and done < len(seeds):
                took = time.perf_counter() - started
                print(f"… {done}/{len(seeds)} runs, {len(failed)} failed, {done / took:.2f} runs/s")
        return failed

    def explain(self, case: Case, run: Run) -> None:
        print(f"\n=== seed {case.seed}: {len(run.violations)} violation(s)")
        for violation in run.violations:
            print(f"VIOLATION {violation}")
        small, small_run = shrink(case, run) if self.shrink else (case, run)
        if small is not case:
            print(f"-- shrunk to: {small.command()}")
        print("-- the messages that led there:")
        for line in cut(small_run):
            print(line)
        print(
            f"replay: {small.command()}"
            + (f"  (whole run: {case.command()})" if small is not case else "")
        )


def cut(run: Run, limit: int = 80) -> list[str]:
    """The trace lines that mention a saga, order or customer of the first violation."""
    ids = {short(i) for i in run.violations[0].ids} if run.violations else set()
    lines = [run.trace[0], *(line for line in run.trace[1:] if any(i in line for i in ids))]
    return lines if len(lines) <= limit else [*lines[: limit // 2], "   …", *lines[-limit // 2 :]]


def shrink(case: Case, run: Run) -> tuple[Case, Run]:
    """Greedy: drop fault kinds, then inputs, one at a time, while the same rule still breaks."""
    rule = run.violations[0].rule

    def fails(candidate: Case) -> Run | None:
        result = candidate.run()
        return result if any(v.rule == rule for v in result.violations) else None

    best, best_run = case, run
    for kind in sorted(best.faults.enabled):
        candidate = Case(best.seed, best.faults.without(kind), best.keep)
        result = fails(candidate)
        if result is not None:
            best, best_run = candidate, result
    indices = (
        best.keep
        if best.keep is not None
        else [i.index for i in Simulation(best.seed, best.faults).all_inputs]
    )
    for index in list(indices):
        candidate = Case(best.seed, best.faults, [i for i in indices if i != index])
        result = fails(candidate)
        if result is not None:
            best, best_run, indices = candidate, result, candidate.keep or []
    return best, best_run
