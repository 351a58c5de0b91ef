"""What the clients and the operator do in one run, drawn from its seed: the API-level inputs.

A scenario is a list of inputs, each at a virtual time. Shrinking drops inputs from it; the
faults the scheduler injects are chosen separately (``Faults``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = (
    "late",  # a message waits far longer than usual (past deadlines) before it is delivered
    "duplicate",  # a message is delivered twice, with the same id
    "loss",  # a command or reply is never delivered
    "crash_before_commit",  # the handler's transaction dies before it commits: redelivered
    "crash_after_commit",  # the worker dies after the commit, before the ack: redelivered
    "operator",  # an operator retries, resumes or force-compensates sagas in `failed`
    "malformed",  # a message that can never be handled: it must be dead-lettered, explained
)


@dataclass(frozen=True)
class Faults:
    enabled: frozenset[str] = frozenset(FAULT_KINDS)
    late: float = 0.08
    duplicate: float = 0.06
    loss: float = 0.05
    crash_before_commit: float = 0.04
    crash_after_commit: float = 0.04
    operator_every_s: float = 15.0

    def on(self, kind: str) -> bool:
        return kind in self.enabled

    def without(self, kind: str) -> Faults:
        return Faults(enabled=self.enabled - {kind})

    @classmethod
    def named(cls, names: str) -> Faults:
        chosen = frozenset(n for n in names.split(",") if n)
        unknown = chosen - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {', '.join(sorted(unknown))}")
        return cls(enabled=chosen)


@dataclass(frozen=True)
class Input:
    index: int
    at: float
    kind: str  # register, deposit, checkout, cancel, block, unblock, malformed
    args: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        args = " ".join(f"{k}={v}" for k, v in self.args.items())
        return f"input#{self.index} {self.kind} {args}".rstrip()


UNKNOWN_MENU_ITEM = 9999


def draw(seed: int, menu: list[int], *, malformed: bool) -> list[Input]:
    """The inputs of one run. ``menu`` is the menu's item ids."""
    rng = random.Random(seed)
    inputs: list[tuple[float, str, dict[str, Any]]] = []
    customers = rng.randint(1, 3)
    for c in range(customers):
        inputs.append((0.001 * c, "register", {"customer": c}))
        amount = rng.choice([0, 400, 900, 1500, 3000, 20000])
        if amount:
            inputs.append((rng.uniform(0.2, 3.0), "deposit", {"customer": c, "amount": amount}))
    checkouts = rng.randint(1, 5)
    for k in range(checkouts):
        at = rng.uniform(1.0, 40.0)
        items = []
        for _ in range(rng.randint(1, 3)):
            item = UNKNOWN_MENU_ITEM if rng.random() < 0.06 else rng.choice(menu)
            items.append((item, rng.randint(1, 3)))
        inputs.append(
            (at, "checkout", {"checkout": k, "customer": rng.randrange(customers), "items": items})
        )
        if rng.random() < 0.45:
            later = at + rng.choice([rng.uniform(0.05, 3.0), rng.uniform(3.0, 90.0)])
            inputs.append((later, "cancel", {"checkout": k}))
            if rng.random() < 0.35:  # a second cancellation of the same order, at once
                inputs.append((later + rng.uniform(0.0, 0.05), "cancel", {"checkout": k}))
    for _ in range(rng.randint(0, 2)):
        c = rng.randrange(customers)
        inputs.append(
            (
                rng.uniform(1.0, 80.0),
                "deposit",
                {"customer": c, "amount": rng.choice([300, 1000, 5000])},
            )
        )
    if rng.random() < 0.3:
        c = rng.randrange(customers)
        at = rng.uniform(0.5, 40.0)
        inputs.append((at, "block", {"customer": c}))
        if rng.random() < 0.6:
            inputs.append((at + rng.uniform(0.1, 30.0), "unblock", {"customer": c}))
    if malformed and rng.random() < 0.3:
        variant = rng.choice(["garbage", "no_saga_id", "orphan_reply"])
        inputs.append((rng.uniform(0.5, 60.0), "malformed", {"variant": variant}))
    inputs.sort(key=lambda i: i[0])
    return [Input(n, at, kind, args) for n, (at, kind, args) in enumerate(inputs)]
