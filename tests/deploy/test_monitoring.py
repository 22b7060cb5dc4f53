"""deploy/: the Grafana dashboard and the Prometheus alerts query only metrics the receiver exports, and parse."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML
from starlette.testclient import TestClient

from fieldrelay.settings import Settings
from receiver.app import create_app
from workers.actions.registry import action_params

ROOT = Path(__file__).parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "fieldrelay.json"
ALERTS = ROOT / "deploy" / "prometheus" / "fieldrelay-alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "fieldrelay-alerts.test.yml"
METRIC = re.compile(r"\bfieldrelay_[a-z0-9_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported(redis_url: str, tmp_path: Path) -> set[str]:
    """Every series name a receiver's GET /metrics can serve, read from a real scrape."""
    app = create_app(Settings(redis_url=redis_url, data_dir=tmp_path), action_params())
    with TestClient(app) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    names = set()
    for family in text_string_to_metric_families(response.text):
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def alert_rules() -> list[dict]:
    return [rule for group in YAML(typ="safe").load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_every_metric_the_dashboard_queries_is_one_the_receiver_exports(redis_url, tmp_path):
    queried = {name for expr in dashboard_queries() for name in METRIC.findall(expr)}
    assert queried - exported(redis_url, tmp_path) == set()


def test_the_dashboard_shows_what_an_operator_watches():
    queried = {name for expr in dashboard_queries() for name in METRIC.findall(expr)}
    assert {
        "fieldrelay_events_received_total",  # events in
        "fieldrelay_rule_matches_total",  # matches
        "fieldrelay_actions_total",  # actions by outcome
        "fieldrelay_retries_total",
        "fieldrelay_dlq_size",
        "fieldrelay_queue_depth",
        "fieldrelay_target_rate_remaining",  # target budget
        "fieldrelay_target_quota_remaining",
        "fieldrelay_poll_lag_seconds",
    } <= queried
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "fieldrelay" and dashboard["templating"]["list"][0]["type"] == "datasource"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_every_metric_an_alert_reads_is_one_the_receiver_exports(redis_url, tmp_path):
    rules = alert_rules()
    assert [r["alert"] for r in rules] == [
        "FieldrelayDeadLettersGrowing",
        "FieldrelayPollLagHigh",
        "FieldrelayTargetPaused",
    ]
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]) and rule["labels"]["severity"] in ("info", "warning")
        assert {"summary", "description"} <= set(rule["annotations"])
    read = {name for rule in rules for name in METRIC.findall(rule["expr"])}
    assert read == {"fieldrelay_dlq_size", "fieldrelay_poll_lag_seconds", "fieldrelay_target_paused"}
    assert read <= exported(redis_url, tmp_path)


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian's `prometheus` package has it; .ci/run installs it)")
    return found


def test_promtool_accepts_the_alerts_and_their_unit_tests_pass():
    tool = promtool()
    check = subprocess.run([tool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [tool, "test", "rules", ALERT_TESTS.name], cwd=ALERTS.parent, capture_output=True, text=True, timeout=60
    )
    assert test.returncode == 0, test.stdout + test.stderr


def test_promtool_parses_every_dashboard_query(tmp_path):
    """Each panel's PromQL, as a recording rule, so promtool's parser reads it."""
    tool = promtool()
    rules = [{"record": f"fieldrelay:dashboard:{i}", "expr": expr} for i, expr in enumerate(dashboard_queries())]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))  # JSON is YAML
    check = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
