"""A real Prometheus (Debian's package; .ci/run installs it) scraping the private stack with the
local scrape config and the alert rules of deploy/monitoring: every target up, the key series
of the outbox, inbox, sagas and the Envoy gateway present, every query of the Grafana dashboard
answered after a short load, and an alert firing when its cause appears."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from celery import Celery

from common.polling import wait_until
from deploy.monitoring import generate
from tests.e2e.cafe import Cafe
from tests.e2e.conftest import PORT_BASE, REDIS_URL, SERVICES, Stack
from tests.e2e.gateways import free_port

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
# The dashboard's variables as Grafana fills them in: every service, and a rate window that
# holds many of this Prometheus's 2 s scrapes (a scrape may take up to its interval: the
# orchestrator's took 0.7 s on a loaded 2-core machine).
DASHBOARD_VARIABLES = {"$service": ".*", "$__rate_interval": "1m"}


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        assert response.status_code == 200, f"{expr}: {response.text}"
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.url}{path}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["data"]


def eventually(check: Callable[[], Any], what: str, timeout_s: float = 60.0) -> Any:
    return wait_until(check, timeout_s=timeout_s, every_s=0.5, what=what)


@pytest.fixture(scope="module")
def prometheus(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus not found: apt-get install prometheus (.ci/run does)"
    state = tmp_path_factory.mktemp("prometheus")
    config = generate.prometheus_local(
        PORT_BASE, interval="2s", rule_files=[str(MONITORING / "alerts.yml")]
    )
    (state / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    log = (state / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={state / 'prometheus.yml'}",
            f"--storage.tsdb.path={state / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    running = Prometheus(f"http://127.0.0.1:{port}")
    try:

        def ready() -> bool:
            assert process.poll() is None, (state / "prometheus.log").read_text()[-3000:]
            try:
                return httpx.get(f"{running.url}/-/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        eventually(ready, "prometheus ready", timeout_s=30)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(state, ignore_errors=True)


def by_label(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}


def test_prometheus_scrapes_every_target_of_the_stack(prometheus: Prometheus) -> None:
    def all_up() -> list[dict[str, Any]] | None:
        targets = prometheus.get("/api/v1/targets?state=active")["activeTargets"]
        return targets if targets and all(t["health"] == "up" for t in targets) else None

    targets = eventually(all_up, "every target up")

    scraped = {(t["labels"]["job"], t["labels"].get("service", "")) for t in targets}
    assert scraped == {("cafe", s) for s in SERVICES} | {("envoy", "")}
    # The scrape-time gauges of every service, and the orchestrator's saga gauges.
    for metric in (
        "outbox_pending",
        "outbox_oldest_pending_age_seconds",
        "outbox_dead_rows",
        "outbox_broker_up",
        "inbox_dead_letters_open",
        "inbox_queue_depth",
    ):
        assert set(by_label(prometheus.query(metric), "service")) == set(SERVICES), metric
    for metric in ("sagas_in_flight", "sagas_overdue", "sagas_failed"):
        assert set(by_label(prometheus.query(metric), "type")) == {"place_order", "cancel_order"}
    assert by_label(prometheus.query("saga_reply_timeout_seconds"), "service") == {
        "orchestrator": 1.5  # the e2e stack's SAGA_REPLY_TIMEOUT_S
    }
    rules = prometheus.get("/api/v1/rules")["groups"]
    assert {r["name"] for g in rules for r in g["rules"]} == {a["alert"] for a in generate.ALERTS}
    assert all(r["health"] == "ok" for g in rules for r in g["rules"])


def _dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads((MONITORING / "grafana" / "cafe.json").read_text())
    queries = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in DASHBOARD_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, expr
            queries.append((f"{panel['title']} / {target['legendFormat']}", expr))
    return queries


def test_after_a_short_load_the_key_series_and_every_dashboard_query_have_data(
    stack: Stack, gateway: httpx.Client, prometheus: Prometheus
) -> None:
    # Rates need a sample before the load and samples during it: every target scraped once,
    # then one checkout, whose counters (created at their first increment) Prometheus must see
    # before the rest of the load moves them on.
    eventually(lambda: len(prometheus.query("up")) == len(SERVICES) + 1, "a first scrape")
    cafe = Cafe(gateway)
    customer = cafe.customer(deposit=10_000)
    first = cafe.wait(cafe.checkout(customer, [{"menu_item_id": 1, "quantity": 1}]))
    eventually(
        lambda: prometheus.query('saga_duration_seconds_count{type="place_order"}'),
        "the first saga's duration",
    )
    for _ in range(5):
        cafe.checkout(customer, [{"menu_item_id": 1, "quantity": 1}])
    cafe.cancel(first["order_id"])
    assert {s["state"] for s in cafe.wait_all()} <= {"completed", "rejected"}

    def counters_seen() -> bool:
        handled = by_label(prometheus.query("sum by (service) (inbox_handled_total)"), "service")
        started = prometheus.query('sagas_started_total{type="place_order"}')
        upstream = by_label(
            prometheus.query("envoy_cluster_upstream_rq_total"), "envoy_cluster_name"
        )
        return (
            set(handled) == set(SERVICES)
            and all(v > 0 for v in handled.values())
            and bool(started)
            and float(started[0]["value"][1]) >= 6
            and all(upstream.get(s, 0) > 0 for s in SERVICES)
        )

    eventually(counters_seen, "the load's counters in Prometheus")
    for metric in (
        "outbox_published_total",
        "outbox_commit_to_publish_seconds_count",
        "sagas_finished_total",
        "saga_duration_seconds_count",
        "sagas_in_flight_oldest_age_seconds",
        'envoy_http_downstream_rq_xx{envoy_http_conn_manager_prefix="gateway"}',
    ):
        assert prometheus.query(metric), metric

    # A message the account service cannot read is dead-lettered: the dashboard's dead-letter
    # counter appears, and the DeadLetters alert fires for the account service.
    app = Celery(broker=REDIS_URL)
    try:
        app.send_task(
            "inbox.consume", args=["{not an envelope"], queue="account", task_id=str(uuid.uuid4())
        )
    finally:
        app.close()

    def account_alert() -> list[dict[str, Any]]:
        alerts = prometheus.get("/api/v1/alerts")["alerts"]
        return [
            a
            for a in alerts
            if a["labels"]["alertname"] == "DeadLetters"
            and a["labels"].get("service") == "account"
            and a["state"] == "firing"
        ]

    firing = eventually(account_alert, "the DeadLetters alert for account")
    assert firing[0]["annotations"]["summary"].startswith("account: ")
    eventually(lambda: prometheus.query("inbox_dead_letters_total"), "dead-letter counter")

    empty = []
    for name, expr in _dashboard_queries():
        values = [float(r["value"][1]) for r in prometheus.query(expr)]
        if not any(math.isfinite(v) for v in values):
            empty.append(f"{name}: {expr} -> {values}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
