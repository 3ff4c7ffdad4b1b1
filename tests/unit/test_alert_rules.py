"""The alert rules in deploy/prometheus/: promtool accepts them and their unit tests pass, they
name only series Conveyor exports, every alert is tested both ways and has a runbook section.

promtool comes from tests/setup-tools.sh. Without it these tests skip on a developer's
machine and fail in CI (CI=true), where a skip would hide that nothing was checked.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from conveyor.workers.observability.metrics import series_names

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "conveyor-alerts.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "conveyor-alerts.test.yml"
OPERATIONS = REPO / "docs" / "operations.md"
METRIC = re.compile(r"\bconveyor_[a-z_]+")
SEVERITIES = {"warning", "critical"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("promtool is not installed; CI must run tests/setup-tools.sh before the tests")
        pytest.skip("promtool is not installed (bash tests/setup-tools.sh installs it)")
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


# --- the two files, read with PyYAML ------------------------------------------------------------------

@dataclass
class Alert:
    name: str
    keys: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


def _rules() -> list[Alert]:
    alerts: list[Alert] = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert "alert" in rule, f"recording rules are not expected in {RULES.name}: {rule}"
            keys = {k: str(v) for k, v in rule.items() if k not in ("alert", "labels", "annotations")}
            alerts.append(Alert(rule["alert"], keys, dict(rule.get("labels", {})), dict(rule.get("annotations", {}))))
    return alerts


@dataclass
class RuleTest:
    alertname: str
    eval_time: str
    fires: bool


def _rule_tests() -> list[RuleTest]:
    return [RuleTest(case["alertname"], str(case["eval_time"]), bool(case.get("exp_alerts")))
            for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
            for case in test.get("alert_rule_test", [])]


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation other than - and _ dropped, spaces to -."""
    anchors, fenced = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
        if heading and not fenced:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


# --- promtool ----------------------------------------------------------------------------------------

def test_promtool_accepts_the_rules() -> None:
    result = run_promtool("check", "rules", str(RULES.relative_to(REPO)))
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool check rules failed:\n{output}"
    found = re.search(r"SUCCESS: (\d+) rules found", output)
    assert found, output
    assert int(found.group(1)) == len(_rules()), (
        f"promtool counts {found.group(1)} rules, PyYAML found {len(_rules())}")


def test_rule_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", str(RULE_TESTS.relative_to(REPO)))
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}{result.stderr}"


# --- the rules' content ----------------------------------------------------------------------------

def test_one_group_named_conveyor() -> None:
    groups = re.findall(r"^\s*- name:\s*(\S+)\s*$", RULES.read_text(), re.M)
    assert groups == ["conveyor"]


def test_the_reader_sees_every_alert() -> None:
    alerts = _rules()
    assert len(alerts) >= 12
    assert len({alert.name for alert in alerts}) == len(alerts), "duplicate alert names"
    assert all(alert.keys.get("expr") for alert in alerts)


def test_expressions_name_only_exported_series() -> None:
    exported = series_names()
    for alert in _rules():
        used = set(METRIC.findall(alert.keys["expr"]))
        assert used, f"{alert.name}: its expression names no conveyor_* series"
        assert used <= exported, f"{alert.name}: not exported: {sorted(used - exported)}"
    # Annotations and the test file's input series too: a renamed metric leaves no stale name.
    for path in (RULES, RULE_TESTS):
        stale = set(METRIC.findall(path.read_text())) - exported
        assert not stale, f"{path.name} names series Conveyor does not export: {sorted(stale)}"


def test_every_alert_has_for_severity_and_annotations() -> None:
    for alert in _rules():
        assert re.fullmatch(r"Conveyor[A-Z][A-Za-z0-9]+", alert.name), alert.name
        assert re.fullmatch(r"\d+[smh]", alert.keys.get("for", "")), f"{alert.name}: needs for:"
        assert alert.labels.get("severity") in SEVERITIES, f"{alert.name}: severity {alert.labels}"
        for key in ("summary", "description", "runbook"):
            assert alert.annotations.get(key), f"{alert.name}: annotation {key} missing"


def test_every_runbook_anchor_is_a_heading_of_operations_md() -> None:
    anchors = _anchors(OPERATIONS.read_text())
    for alert in _rules():
        runbook = alert.annotations["runbook"]
        assert runbook == f"docs/operations.md#{alert.name.lower()}", f"{alert.name}: runbook {runbook}"
        anchor = runbook.partition("#")[2]
        assert anchor in anchors, f"{alert.name}: docs/operations.md has no heading for #{anchor}"


def test_every_alert_is_tested_firing_and_silent() -> None:
    alerts = {alert.name for alert in _rules()}
    cases = _rule_tests()
    unknown = {case.alertname for case in cases} - alerts
    # promtool passes `exp_alerts: []` for an alert that does not exist: a typo would test nothing.
    assert not unknown, f"the rule tests name alerts that do not exist: {sorted(unknown)}"
    firing = {case.alertname for case in cases if case.fires}
    silent = {case.alertname for case in cases if not case.fires}
    assert alerts - firing == set(), f"no test case fires: {sorted(alerts - firing)}"
    assert alerts - silent == set(), f"no test case where it stays silent: {sorted(alerts - silent)}"


def test_anchor_slugs_follow_github() -> None:
    anchors = _anchors("# Top\n## ConveyorDLQGrowing\n```\n# not a heading\n```\n## Scraping, loading the rules\n")
    assert anchors == {"top", "conveyordlqgrowing", "scraping-loading-the-rules"}
