"""The fleet view: Debian's real `prometheus` scrapes two running agents; the Grafana dashboard.

Grafana is not in Debian's archive, so the dashboard is validated without it:
a schema check written from Grafana's dashboard model (panels with unique ids,
a type, a gridPos on the 24-column grid without overlaps, the templated
Prometheus datasource, targets with unique refIds), and every PromQL
expression's metric names checked against a running agent's real /metrics,
then evaluated by the real Prometheus, which must answer each panel with series.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from luxxon_agent.agent.fleet_demo import Fleet, FleetOptions
from luxxon_agent.agent.localstub import LocalStub
from luxxon_agent.agent.status import METRICS_PATH, fetch_status
from luxxon_agent.models import SessionState
from tests.agent.test_prometheus import prometheus, query
from tests.conftest import require_tool

DASHBOARD = Path(__file__).parents[2] / "examples" / "grafana-dashboard.json"
GRID_COLUMNS = 24
PANEL_TYPES = {"stat", "timeseries", "state-timeline", "table", "gauge", "bargauge", "row"}
SHARED_LABELS = ["cam-1", "cam-2"]
"""Both agents name their operators alike, as two sites copying one agent.toml would."""
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset",
}  # fmt: skip


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels() -> list[dict[str, Any]]:
    return list(_dashboard()["panels"])


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords, labels left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings (label values, regexes)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word, rest = match.group(), text[match.end() :].lstrip()
        if rest.startswith("(") or word in PROMQL_WORDS:
            continue  # a function call or a keyword
        if match.start() > 0 and text[match.start() - 1].isdigit():
            continue  # a duration's unit or an exponent
        names.add(word)
    return names


def _substituted(expr: str) -> str:
    """The expression as Grafana sends it with "All" chosen for every variable."""
    return expr.replace("$instance", ".*").replace("$operator", ".*")


def test_promql_metric_names_are_found_and_functions_are_not() -> None:
    expr = (
        'sum by (instance) (rate(luxxon_agent_video_frames_total{operator=~"$operator"}[5m]))'
        ' + 2 * max without (state) (luxxon_agent_availability{state="BUSY"}) > bool 1e3'
    )
    assert metric_names(expr) == {"luxxon_agent_video_frames_total", "luxxon_agent_availability"}


def test_dashboard_follows_grafanas_dashboard_model() -> None:
    dashboard = _dashboard()
    assert isinstance(dashboard["title"], str) and dashboard["title"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("instance", "operator"):
        assert variables[name]["type"] == "query" and variables[name]["includeAll"]
        assert variables[name]["datasource"]["uid"] == "${datasource}"
    panels = _panels()
    ids = [panel["id"] for panel in panels]
    assert all(isinstance(i, int) and i > 0 for i in ids) and len(set(ids)) == len(ids)
    cells: dict[tuple[int, int], int] = {}
    for panel in panels:
        assert panel["type"] in PANEL_TYPES, panel["type"]
        assert panel["title"]
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("x", "y", "w", "h")), panel["title"]
        assert grid["x"] >= 0 and grid["y"] >= 0 and grid["w"] > 0 and grid["h"] > 0
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"panel {panel['id']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["id"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(set(refs)) == len(refs), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert metric_names(target["expr"]), target["expr"]
    # an operator is known by (instance, operator): labels repeat across agents
    for panel in panels:
        for target in panel["targets"]:
            for grouping in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", target["expr"]):
                if "operator" in grouping:
                    assert "instance" in grouping, (panel["title"], target["expr"])
            if "{{operator}}" in target.get("legendFormat", ""):
                assert "{{instance}}" in target["legendFormat"], panel["title"]
    titles = " ".join(panel["title"].lower() for panel in panels)
    for wanted in ("availability", "session", "bitrate", "frame rate", "gps fix"):
        assert wanted in titles, wanted
    for wanted in ("telemetry pending", "reconnects", "earnings"):
        assert wanted in titles, wanted


async def _all_series(fleets: list[Fleet]) -> set[str]:
    """Every sample name the running agents export at /metrics now."""
    names: set[str] = set()
    for fleet in fleets:
        assert fleet.supervisor is not None and fleet.supervisor.status_server is not None
        text = await fetch_status(fleet.supervisor.status_server.address, METRICS_PATH)
        for family in text_string_to_metric_families(text):
            names.update(sample.name for sample in family.samples)
    return names


async def test_prometheus_scrapes_two_agents_per_operator_and_the_dashboard_reads_them(
    tmp_path: Path,
) -> None:
    require_tool("prometheus")
    stub = LocalStub(db=tmp_path / "stub.sqlite3", data_dir=tmp_path / "stub", meter="telemetry")
    await stub.start()
    try:
        await _two_agents(stub, tmp_path)
    finally:
        await stub.stop()


async def _two_agents(stub: LocalStub, tmp_path: Path) -> None:
    north_options = FleetOptions(operators=2, seconds=20, name="north")
    south_options = FleetOptions(operators=2, seconds=20, name="south")
    north = Fleet(north_options, tmp_path / "north", stub)
    south = Fleet(south_options, tmp_path / "south", stub)
    north.labels = south.labels = SHARED_LABELS
    async with north, south:
        fleets = [north, south]
        addresses = {}
        for fleet in fleets:
            assert fleet.supervisor is not None and fleet.supervisor.status_server is not None
            addresses[fleet.supervisor.status_server.address] = fleet
        ids = [(await north.request()).id for _ in range(4)]
        live = await north.wait_sessions(
            ids, lambda s: s.state is SessionState.LIVE, 45.0, "four LIVE on two agents"
        )
        held = {s.operator_id for s in live}
        assert len(held) == 4  # every operator of both agents serves one
        with prometheus(tmp_path, *addresses) as base_url:
            async with httpx.AsyncClient(base_url=base_url, timeout=5, trust_env=False) as client:
                await _check_series(client, fleets, addresses, ids)
                await _check_dashboard(client, fleets, addresses)


async def _wait_query(
    client: httpx.AsyncClient, promql: str, count: int | None, what: str, *, timeout: float = 45.0
) -> list[dict[str, Any]]:
    """The result of `promql` once it has `count` series (None: any), bounded in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await query(client, promql)
        if len(result) == count or (count is None and result):
            return result
        if loop.time() > deadline:
            pytest.fail(f"{what}: {promql} gave {len(result)} series, not {count}: {result}")
        await asyncio.sleep(0.5)


async def _check_series(
    client: httpx.AsyncClient, fleets: list[Fleet], addresses: dict[str, Fleet], ids: list[str]
) -> None:
    labels = {(address, label) for address, fleet in addresses.items() for label in fleet.labels}
    busy = await _wait_query(
        client, 'luxxon_agent_availability{state="BUSY"} == 1', 4, "every operator BUSY"
    )
    assert {(s["metric"]["instance"], s["metric"]["operator"]) for s in busy} == labels
    sessions = await _wait_query(
        client, 'luxxon_agent_session_info{state="LIVE"}', 4, "each operator's LIVE session"
    )
    assert sorted(s["metric"]["session_id"] for s in sessions) == sorted(ids)
    operator_ids = await query(client, 'luxxon_agent_operator_info{operator_id!=""}')
    assert len({s["metric"]["operator_id"] for s in operator_ids}) == 4
    for promql, what in (
        ("luxxon_agent_video_bitrate_kbps > 0", "video bitrate"),
        ("luxxon_agent_video_fps > 0", "video fps"),
        ("luxxon_agent_gps_fix == 1", "GPS fix"),
        ("luxxon_agent_session_earned_micro_usdc > 0", "earnings so far"),
        ("luxxon_agent_earned_micro_usdc_total > 0", "earnings since start"),
    ):
        result = await _wait_query(client, promql, 4, what)
        assert {(s["metric"]["instance"], s["metric"]["operator"]) for s in result} == labels
    for name in ("luxxon_agent_telemetry_pending", "luxxon_agent_video_reconnects_total"):
        result = await query(client, name)
        assert {(s["metric"]["instance"], s["metric"]["operator"]) for s in result} == labels
    per_agent = await query(client, "sum by (instance) (luxxon_agent_live)")
    assert {s["metric"]["instance"]: s["value"][1] for s in per_agent} == {
        address: "2" for address in addresses
    }


async def _check_dashboard(
    client: httpx.AsyncClient, fleets: list[Fleet], addresses: dict[str, Fleet]
) -> None:
    exported = await _all_series(fleets)
    wanted = sorted(
        (address, label) for address, fleet in addresses.items() for label in fleet.labels
    )
    for panel in _panels():
        title = panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            unknown = metric_names(expr) - exported
            assert not unknown, f"panel {title!r} reads {unknown}, not exported"
            # a per-operator panel: one series per operator of each agent, never two
            # agents' same-named operators merged into one
            per_operator = "{{operator}}" in target.get("legendFormat", "")
            # a range function needs two scrapes in its window: waited for, bounded
            result = await _wait_query(
                client,
                _substituted(expr),
                len(wanted) if per_operator else None,
                f"panel {title!r}",
            )
            if per_operator:
                pairs = sorted((s["metric"]["instance"], s["metric"]["operator"]) for s in result)
                assert pairs == wanted, (title, pairs)
