"""supervisord for a local stack: its configuration and its control client."""

from __future__ import annotations

import subprocess

from deploy.local.layout import ROOT, Stack, venv_bin
from deploy.local.processes import Program


def supervisor_conf(stack: Stack, progs: list[Program]) -> str:
    esc = lambda text: text.replace("%", "%%")  # noqa: E731 — supervisord expands %(…)s
    lines = [
        "[unix_http_server]",
        f"file={esc(str(stack.socket))}",
        "[supervisord]",
        f"logfile={esc(str(stack.logs / 'supervisord.log'))}",
        f"pidfile={esc(str(stack.dir / 'supervisord.pid'))}",
        f"childlogdir={esc(str(stack.logs))}",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[supervisorctl]",
        f"serverurl=unix://{esc(str(stack.socket))}",
    ]
    for prog in progs:
        lines += [
            f"[program:{prog.name}]",
            f"command={esc(prog.command)}",
            f"directory={esc(str(ROOT))}",
            f"priority={prog.priority}",
            "autostart=true",
            # Like compose's `restart: unless-stopped`: a process that dies is started again.
            "autorestart=true",
            "startsecs=1",
            "startretries=50",
            "stopasgroup=true",
            "killasgroup=true",
            "stopsignal=TERM",
            "stopwaitsecs=20",
            "redirect_stderr=true",
            f"stdout_logfile={esc(str(stack.logs / (prog.name + '.log')))}",
            "stdout_logfile_maxbytes=50MB",
            "stdout_logfile_backups=2",
        ]
        if prog.env:
            pairs = ",".join(f'{k}="{esc(v)}"' for k, v in prog.env.items())
            lines.append(f"environment={pairs}")
    return "\n".join(lines) + "\n"


def supervisorctl(
    stack: Stack, *args: str, check: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [venv_bin("supervisorctl"), "-c", str(stack.dir / "supervisord.conf"), *args],
        capture_output=True,
        text=True,
        check=check,
    )


def is_running(stack: Stack) -> bool:
    if not stack.socket.exists():
        return False
    return supervisorctl(stack, "pid").stdout.strip().isdigit()
