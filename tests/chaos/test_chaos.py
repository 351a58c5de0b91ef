"""``make chaos``, bounded for CI: a short run with every fault kind at least once must end with
every saga terminal, every Outcome holding and nothing lost, duplicated or stuck."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chaos.faults import KINDS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
# Beside the end-to-end stack's ports (E2E_PORT_BASE…+1901), never on them.
PORT_BASE = int(os.environ.get("E2E_PORT_BASE", "18000")) + 500
DIR = ROOT / "var" / f"{os.environ.get('E2E_DB_PREFIX', 'e2e_')}chaos"


@pytest.mark.timeout(900)
def test_a_bounded_chaos_run_loses_nothing_and_every_outcome_holds() -> None:
    env = {
        **os.environ,
        "CHAOS_CHECKOUTS": os.environ.get("CHAOS_CHECKOUTS", "40"),
        "CHAOS_SECONDS": os.environ.get("CHAOS_SECONDS", "30"),
        "CHAOS_FAULTS": str(len(KINDS)),
        "CHAOS_PORT_BASE": str(PORT_BASE),
        "CHAOS_DIR": str(DIR),
        "CHAOS_SETTLE_SECONDS": "180",
    }
    run = subprocess.run(
        [sys.executable, "-m", "tests.chaos"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    output = run.stdout + run.stderr
    last = (run.stdout.strip().splitlines() or [""])[-1]
    assert last.startswith("{"), output  # the report, printed last, even with violations
    report = json.loads(last)

    assert run.returncode == 0, output
    assert set(report["faults"]) == set(KINDS), output
    assert report["violations"] == report["lost"] == report["duplicated"] == report["stuck"] == 0
    checkouts = report["checkouts"]
    assert sum(checkouts.values()) >= 30, output  # the clients got through the faults
    assert set(checkouts) <= {"completed", "rejected", "failed"}, output
    assert checkouts.get("completed", 0) > 0, output
