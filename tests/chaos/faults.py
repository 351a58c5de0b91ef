"""The faults, injected one after another at moments drawn from the seed: every kind at least
once, then kinds at random. Processes are killed and paused through supervisord's pids (it
restarts what dies); the backing servers are stopped and started by the run itself."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.chaos.stack import SERVICES, ChaosStack

KINDS = (
    "kill_worker",
    "kill_relay",
    "kill_web",
    "kill_beat",
    "pause_worker",
    "redis_restart",
    "postgres_restart",
)
TARGETS = {
    "kill_worker": [f"{s}-worker" for s in SERVICES],
    "kill_relay": [f"{s}-relay" for s in SERVICES],
    "kill_web": [f"{s}-web" for s in SERVICES],
    "kill_beat": ["orchestrator-beat"],
    "pause_worker": [f"{s}-worker" for s in SERVICES],
}


def schedule(rng: random.Random, seconds: float, count: int) -> list[tuple[float, str]]:
    """``count`` faults (at least one of each kind) at moments spread over the first 85 % of
    the run, so the last one still falls among the clients' requests."""
    kinds = list(KINDS) + [rng.choice(KINDS) for _ in range(max(0, count - len(KINDS)))]
    rng.shuffle(kinds)
    moments = sorted(rng.uniform(0.05, 0.85) * seconds for _ in kinds)
    return list(zip(moments, kinds, strict=True))


@dataclass
class Injector:
    stack: ChaosStack
    plan: list[tuple[float, str]]
    rng: random.Random
    pause_s: float  # longer than the saga reply deadline
    say: Callable[[str], None]
    injected: Counter[str] = field(default_factory=Counter)
    missed: list[str] = field(default_factory=list)  # a target that was not running
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, started: float) -> None:
        for at, kind in self.plan:
            delay = started + at - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                return
            self.inject(kind, time.monotonic() - started)

    def inject(self, kind: str, now: float) -> None:
        if kind in TARGETS:
            program = self.rng.choice(TARGETS[kind])
            # Just killed, it may still be starting again: give supervisord a few seconds.
            deadline = time.monotonic() + 10
            while True:
                if kind == "pause_worker":
                    done = self._pause(program)
                else:
                    done = self.stack.signal(program, signal.SIGKILL)
                if done or time.monotonic() > deadline or self.stop.wait(0.5):
                    break
            what = f"{kind} {program}"
        elif kind == "redis_restart":
            keys = self.stack.redis_keys()
            self.stack.stop_redis()
            time.sleep(self.rng.uniform(0.2, 1.5))
            self.stack.start_redis()
            done, what = True, f"{kind} (dropped {keys} keys)"
        else:
            self.stack.stop_postgres()
            time.sleep(self.rng.uniform(0.5, 2.5))
            self.stack.start_postgres()
            done, what = True, kind
        if done:
            self.injected[kind] += 1
            self.say(f"t={now:6.1f}s  {what}")
        else:
            self.missed.append(what)
            self.say(f"t={now:6.1f}s  {what}: not running, skipped")

    def _pause(self, program: str) -> bool:
        if not self.stack.signal(program, signal.SIGSTOP):
            return False
        try:
            self.stop.wait(self.pause_s)
        finally:
            self.stack.signal(program, signal.SIGCONT)
        return True
