"""The key Nginx's per-address buckets count by, checked on a real Nginx: the client address is
taken from a test header (realip) so that IPv6 clients can be played on an IPv4 loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from deploy.gateway import nginx
from deploy.local.processes import NGINX

pytestmark = pytest.mark.skipif(not os.access(NGINX, os.X_OK), reason="nginx is not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("nginx-keys")
    port = _free_port()
    temp = "\n".join(f"    {kind}_temp_path {state / kind};" for kind in ("client_body", "proxy"))
    config = state / "nginx.conf"
    config.write_text(
        "\n".join(
            [
                *([] if os.geteuid() != 0 else ["user root;"]),
                "worker_processes 1;",
                f"pid {state / 'nginx.pid'};",
                "error_log stderr warn;",
                "events {}",
                "http {",
                temp,
                "    access_log off;",
                *(f"    {line}" for line in nginx.client_net_map()),
                "    server {",
                f"        listen 127.0.0.1:{port};",
                "        set_real_ip_from 127.0.0.1;",
                "        real_ip_header X-Test-Client;",
                "        location / {",
                "            return 200 $gateway_client_net;",
                "        }",
                "    }",
                "}",
            ]
        )
    )
    process = subprocess.Popen(
        [NGINX, "-e", "stderr", "-c", str(config), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx is not listening"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def key(url: str, client: str) -> bytes:
    return httpx.get(url, headers={"X-Test-Client": client}).content


def test_an_ipv6_client_counts_by_its_64(url: str) -> None:
    first = key(url, "2001:db8:1:2:aaaa::1")

    assert first == socket.inet_pton(socket.AF_INET6, "2001:db8:1:2::")[:8]
    assert key(url, "2001:db8:1:2:ffff:ffff:ffff:ffff") == first
    assert key(url, "2001:db8:1:3::1") != first
    # Bytes that are a newline or NUL in the address are bytes like any other.
    assert key(url, "a0a:0:a00::1") == bytes.fromhex("0a0a00000a000000")


def test_an_ipv4_client_counts_by_its_address(url: str) -> None:
    assert key(url, "192.0.2.1") == socket.inet_aton("192.0.2.1")
    assert key(url, "192.0.2.2") != key(url, "192.0.2.1")
