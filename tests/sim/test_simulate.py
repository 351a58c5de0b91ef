"""CI's run of the simulator: the regression seeds, then a few fresh ones.

Each regression seed broke an Outcome of DESIGN.md §7 on the code before its fix (see
``REGRESSIONS``); the fresh seeds change every run, and a failure prints the command that
replays it. The simulator runs in its own process (it configures Django for all four services).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FRESH = int(os.environ.get("SIM_FRESH_RUNS", "30"))

REGRESSIONS = {
    38: "a late begin_cancel locked an order for a cancellation that had already ended",
    44: "every re-sent approval was refused once a cancellation had taken the order further",
    113: "as 38",
    1009: "a late debit charged an order rejected for insufficient funds (net charge ≠ 0)",
    1021: "as 44",
    1044: "undo_cancel of a cancellation that never held the order was refused forever",
    1099: "as 38",
    1246: "as 1009",
}


def simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.sim", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )


def test_the_regression_seeds_keep_every_outcome() -> None:
    done = simulate("--seeds", ",".join(map(str, REGRESSIONS)), "--no-shrink")

    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert f"{len(REGRESSIONS)} runs, 0 with violations" in done.stdout


def test_fresh_seeds_keep_every_outcome() -> None:
    first = random.SystemRandom().randrange(1_000_000, 2_000_000_000)

    done = simulate("--runs", str(FRESH), "--first-seed", str(first))

    assert done.returncode == 0, (
        f"seeds {first}..{first + FRESH - 1}\n" + done.stdout[-6000:] + done.stderr[-3000:]
    )


def test_a_seed_replays_byte_for_byte() -> None:
    first, second = simulate("--seed", "1009"), simulate("--seed", "1009")

    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert first.stdout == second.stdout
    assert "account.debit" in first.stdout
