"""The generated Prometheus configs and alert rules, checked by promtool (Debian's `prometheus`
package; .ci/run installs it): the configs load, the rules parse, and every alert's unit tests
in deploy/monitoring/alerts.test.yml pass. A real Prometheus against a running stack is in
tests/e2e/test_monitoring.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from deploy.monitoring import generate

HERE = Path(generate.__file__).resolve().parent
PROMTOOL = shutil.which("promtool")


def promtool(*args: str | Path, cwd: Path = HERE) -> str:
    assert PROMTOOL, "promtool not found: apt-get install prometheus (.ci/run does)"
    done = subprocess.run(
        [PROMTOOL, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_alert_rules_parse() -> None:
    out = promtool("check", "rules", "alerts.yml")
    assert f"SUCCESS: {len(generate.ALERTS)} rules found" in out


def test_every_alert_has_unit_tests_that_pass() -> None:
    tests = yaml.safe_load((HERE / "alerts.test.yml").read_text())
    tested = {case["alertname"] for t in tests["tests"] for case in t["alert_rule_test"]}
    # Each alert is expected to fire in one case and to stay quiet in another.
    firing = {
        case["alertname"]
        for t in tests["tests"]
        for case in t["alert_rule_test"]
        if case["exp_alerts"]
    }
    quiet = {
        case["alertname"]
        for t in tests["tests"]
        for case in t["alert_rule_test"]
        if not case["exp_alerts"]
    }
    names = {rule["alert"] for rule in generate.ALERTS}
    assert tested == firing == quiet == names

    out = promtool("test", "rules", "alerts.test.yml")
    assert "SUCCESS" in out


def test_local_config_loads_with_its_rules() -> None:
    out = promtool("check", "config", "prometheus-local.yml")
    assert "SUCCESS: 1 rule files found" in out
    assert f"SUCCESS: {len(generate.ALERTS)} rules found" in out


def _without_kubernetes_sd(config: Any) -> tuple[Any, list[Any]]:
    """The config with each kubernetes_sd_configs swapped for an empty static_configs, and the
    blocks taken out."""
    taken: list[Any] = []
    for job in config["scrape_configs"]:
        if "kubernetes_sd_configs" in job:
            taken.extend(job.pop("kubernetes_sd_configs"))
            job["static_configs"] = [{"targets": []}]
    return config, taken


def test_cluster_config_loads_with_its_rules(tmp_path: Path) -> None:
    # Debian builds Prometheus without Kubernetes discovery, so its promtool refuses the
    # kubernetes_sd_configs key: those blocks are checked here, everything else (relabelling,
    # regexes, rule files) by promtool.
    config, discovery = _without_kubernetes_sd(
        yaml.safe_load((HERE / "prometheus.yml").read_text())
    )
    assert discovery and all(
        set(sd) == {"role", "namespaces"}
        and sd["role"] == "pod"
        and set(sd["namespaces"]) == {"names"}
        and all(isinstance(n, str) and n for n in sd["namespaces"]["names"])
        for sd in discovery
    )
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(HERE / "alerts.yml", tmp_path / "alerts.yml")

    out = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert f"SUCCESS: {len(generate.ALERTS)} rules found" in out


def test_local_config_follows_the_port_base() -> None:
    config = generate.prometheus_local(21000, interval="1s", rule_files=["/x/alerts.yml"])
    targets = {
        job["job_name"]: {t for s in job["static_configs"] for t in s["targets"]}
        for job in config["scrape_configs"]
    }
    assert targets == {"cafe": {"127.0.0.1:21100"}, "envoy": {"127.0.0.1:22901"}}
    assert config["global"]["scrape_interval"] == "1s"
    assert config["rule_files"] == ["/x/alerts.yml"]
