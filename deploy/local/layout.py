"""Where a local stack lives: its directory, ports and logs; shared by the stack's modules."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from common.messaging.routing import SERVICES
from deploy.local.processes import GATEWAYS

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    dir: Path
    port_base: int
    gateway: str = "envoy"
    # What every process of the stack gets besides the caller's environment. A local stack is
    # a development stack by definition (common/settings/production.py).
    env: dict[str, str] = field(default_factory=lambda: {"CAFE_ENV": "development"})
    # Each Redis user's URL (the services' and Flower's), when the stack runs its private Redis
    # with one user per service; empty when every process uses the one REDIS_URL it was given.
    redis_urls: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Stack:
        stack_dir = Path(os.environ.get("STACK_DIR", ROOT / "var" / "stack")).resolve()
        gateway = os.environ.get("GATEWAY", "envoy")
        if gateway not in GATEWAYS:
            sys.exit(f"stack | GATEWAY must be one of {', '.join(GATEWAYS)}, not {gateway!r}")
        return cls(
            dir=stack_dir,
            port_base=int(os.environ.get("STACK_PORT_BASE", "8000")),
            gateway=gateway,
        )

    def service_env(self, service: str) -> dict[str, str]:
        """What a process of ``service`` gets besides the caller's environment."""
        own = self.redis_urls.get(service)
        return {**self.env, **({"REDIS_URL": own} if own else {})}

    # Ports: gateway on the base, services on base+1…4, Flower on base+55, the gateway's
    # operator listener on base+100, Envoy admin on base+1901.
    @property
    def gateway_port(self) -> int:
        return self.port_base

    @property
    def operator_port(self) -> int:
        return self.port_base + 100

    def service_port(self, service: str) -> int:
        return self.port_base + 1 + SERVICES.index(service)

    @property
    def flower_port(self) -> int:
        return self.port_base + 55

    @property
    def envoy_admin_port(self) -> int:
        return self.port_base + 1901

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def operator_url(self) -> str:
        """Admin, readiness, metrics and Flower: the gateway's operator listener."""
        return f"http://127.0.0.1:{self.operator_port}"

    @property
    def socket(self) -> Path:
        return self.dir / "supervisor.sock"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"


def log(message: str) -> None:
    print(f"stack | {message}", flush=True)


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)
