"""The Grafana dashboard in deploy/grafana/: its queries name only series Conveyor exports,
its data source is a template variable (importable anywhere), its panel ids are unique, and
(where promtool is installed) every query parses as PromQL."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.workers.observability.metrics import series_names

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "conveyor-dashboard.json"
METRIC = re.compile(r"\bconveyor_[a-z_]+")
DATASOURCE_VARIABLE = "DS_PROMETHEUS"
TEMPLATED_UID = "${" + DATASOURCE_VARIABLE + "}"
# What the panels must show (the issue's list), by the series each needs.
REQUIRED = {
    "conveyor_messages_total", "conveyor_dead_letters_total", "conveyor_retries_total",
    "conveyor_batch_seconds_bucket", "conveyor_batch_size_bucket", "conveyor_message_age_seconds_bucket",
    "conveyor_queue_messages", "conveyor_queue_consumers", "conveyor_outbox_pending",
    "conveyor_outbox_lag_seconds", "conveyor_relay_published_total", "conveyor_relay_confirm_seconds_bucket",
    "conveyor_relay_leader", "conveyor_ready", "conveyor_reconnects_total", "conveyor_db_pool_size",
    "conveyor_db_pool_available", "conveyor_db_pool_waiting", "conveyor_reconcile_drift",
    "conveyor_db_oldest_transaction_seconds",
}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels (collapsed rows keep theirs inside) included."""
    for panel in container.get("panels", []):
        yield panel
        yield from panels(panel)


def expressions() -> list[tuple[str, str]]:
    found = []
    for panel in panels(dashboard()):
        for target in panel.get("targets", []):
            where = f"panel {panel.get('id')} {panel.get('title')!r} {target.get('refId')}"
            found.append((where, target.get("expr", "")))
    return found


def datasources(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), (dict, str)):
            yield node["datasource"] if isinstance(node["datasource"], dict) else {"uid": node["datasource"]}
        for value in node.values():
            yield from datasources(value)
    elif isinstance(node, list):
        for value in node:
            yield from datasources(value)


def test_every_query_names_exported_series_only() -> None:
    exported = series_names()
    found = expressions()
    assert len(found) >= 20
    for where, expr in found:
        used = set(METRIC.findall(expr))
        assert used, f"{where}: query names no conveyor_* series: {expr!r}"
        assert used <= exported, f"{where}: not exported: {sorted(used - exported)}"
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        stale = set(METRIC.findall(text)) - exported
        assert not stale, f"variable {variable['name']}: not exported: {sorted(stale)}"


def test_the_panels_cover_the_issue_list() -> None:
    used = {name for _, expr in expressions() for name in METRIC.findall(expr)}
    assert REQUIRED - used == set(), f"no panel shows: {sorted(REQUIRED - used)}"


def test_quantiles_aggregate_buckets_by_le() -> None:
    for where, expr in expressions():
        if "histogram_quantile" in expr:
            assert "_bucket" in expr and re.search(r"by \((le\b|[^)]*\ble\b)", expr), f"{where}: {expr}"


def test_datasource_is_templated() -> None:
    board = dashboard()
    inputs = [item for item in board.get("__inputs", []) if item.get("name") == DATASOURCE_VARIABLE]
    assert inputs and inputs[0]["type"] == "datasource" and inputs[0]["pluginId"] == "prometheus"
    variables = [item for item in board["templating"]["list"] if item["name"] == DATASOURCE_VARIABLE]
    assert variables and variables[0]["type"] == "datasource" and variables[0]["query"] == "prometheus"
    seen = 0
    for source in datasources(board):
        if source.get("type") == "grafana":  # the built-in annotations source, not a data source
            continue
        seen += 1
        assert source.get("uid") == TEMPLATED_UID, f"hard-coded data source: {source}"
    assert seen >= len(expressions()), "every panel and target names the templated data source"


def test_panel_ids_are_unique() -> None:
    ids = [panel.get("id") for panel in panels(dashboard())]
    assert None not in ids, "every panel needs an id"
    duplicates = [panel_id for panel_id, count in Counter(ids).items() if count > 1]
    assert not duplicates, f"duplicate panel ids: {duplicates}"


def test_schema_version() -> None:
    assert 36 <= dashboard()["schemaVersion"] <= 41


def test_queries_parse_as_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("promtool is not installed; CI must run tests/setup-tools.sh before the tests")
        pytest.skip("promtool is not installed (bash tests/setup-tools.sh installs it)")
    rules = []
    for number, (_, expr) in enumerate(expressions()):
        concrete = re.sub(r"\$__(rate_interval|interval|range)", "5m", expr)
        concrete = re.sub(r"\$\{?\w+\}?", ".*", concrete)
        rules.append({"record": f"dashboard:query_{number}", "expr": concrete})
    path = tmp_path / "dashboard-queries.yml"  # JSON is YAML: no YAML writer needed
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, f"a dashboard query is not valid PromQL:\n{result.stdout}{result.stderr}"
