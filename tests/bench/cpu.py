"""Where the CPU goes: CPU seconds of every process of a running local stack, by program.

A benchmark takes a snapshot before and after a run and divides the difference by the work
done, so the figures say what one saga (or message) costs in each process, PostgreSQL and
Redis included. Processes are found under the stack's supervisord; PostgreSQL backends by the
database they serve (``<prefix><service>``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import psutil


def _program(proc: psutil.Process, supervisor_pid: int) -> str | None:
    """The supervisord program a process belongs to, split into main and pool processes."""
    try:
        chain = [proc, *proc.parents()]
    except psutil.Error:
        return None
    for depth, member in enumerate(chain):
        try:
            parent = member.ppid()
        except psutil.Error:
            return None
        if parent != supervisor_pid:
            continue
        cmd = " ".join(member.cmdline())
        if " worker " in cmd and "celery" in cmd:
            service = cmd.split(" -A ", 1)[1].split()[0]
            return f"{service}-worker" + (" (pool)" if depth else " (main)")
        if "manage.py relay" in cmd:
            return f"{cmd.split('--settings=', 1)[1].split('.')[0]}-relay"
        if "gunicorn" in cmd:
            return f"{cmd.split('gunicorn ', 1)[1].split('.')[0]}-web"
        if " beat " in cmd:
            return "orchestrator-beat"
        if " flower " in cmd:
            return "flower"
        return "gateway"
    return None


def snapshot(stack_dir: Path, database_prefix: str) -> dict[tuple[str, int], float]:
    """CPU seconds (user + system) so far of each process of the stack, PostgreSQL's and Redis's,
    keyed by (program, pid): a process that starts between two snapshots counts whole."""
    supervisor_pid = int((stack_dir / "supervisord.pid").read_text().strip())
    totals: dict[tuple[str, int], float] = defaultdict(float)
    for proc in psutil.process_iter(["name", "cmdline", "cpu_times"]):
        times = proc.info["cpu_times"]
        if times is None:
            continue
        seconds = times.user + times.system
        cmd = " ".join(proc.info["cmdline"] or ())
        if cmd.startswith("postgres: "):
            # "postgres: 15/main: <user> <database> <client> <state>" for a backend.
            words = cmd.split()
            database = words[3] if len(words) > 3 else ""
            if database.startswith(database_prefix):
                program = f"postgres {database.removeprefix(database_prefix)}"
            else:
                program = "postgres (background, other)"
        elif proc.info["name"] == "redis-server":
            program = "redis"
        elif proc.pid == os.getpid():
            program = "load generator"
        else:
            program = _program(proc, supervisor_pid) or ""
        if program:
            totals[program, proc.pid] += seconds
    return totals


def per_unit(
    before: dict[tuple[str, int], float], after: dict[tuple[str, int], float], units: int
) -> dict[str, float]:
    """Milliseconds of CPU per unit of work in each program, largest first, with the total of
    the system's processes (the load generator is listed but not counted)."""
    spent: dict[str, float] = defaultdict(float)
    for (program, pid), seconds in after.items():
        spent[program] += (seconds - before.get((program, pid), 0.0)) * 1000 / max(units, 1)
    rows = {k: round(v, 2) for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v > 0.005}
    rows["total"] = round(sum(v for k, v in spent.items() if k != "load generator"), 2)
    return rows
