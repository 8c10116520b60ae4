"""A real Prometheus (Debian's `prometheus`) scrapes a running agent; PromQL finds its series."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from luxxon_agent.agent.localstub import LocalStub, free_port
from tests.conftest import require_tool

from .conftest import (
    Agents,
    Area,
    operator_account,
    operator_online,
    operator_table,
    wait_until,
    write_config,
)

LABEL = "cam-prom"


@contextlib.contextmanager
def prometheus(tmp_path: Path, target: str) -> Iterator[str]:
    """Prometheus scraping `target` every second; yields its base URL, killed by PID after."""
    binary = require_tool("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: luxxon-agent
    static_configs:
      - targets: ["{target}"]
"""
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def query(client: httpx.AsyncClient, promql: str) -> list[dict[str, Any]]:
    """The instant vector `promql` evaluates to now ([] while Prometheus is not ready)."""
    try:
        response = await client.get("/api/v1/query", params={"query": promql})
    except httpx.TransportError:
        return []
    if response.status_code != 200:
        return []
    body = response.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def test_prometheus_scrapes_the_agents_series_with_its_operator_label(
    stub: LocalStub, tmp_path: Path, agents: Agents, area: Area
) -> None:
    await operator_account(stub, "op-prom", LABEL, tmp_path)
    fixed = f"fixed://?lat={area.lat}&lng={area.lng}&accuracy_m=4"
    table = operator_table(LABEL, "op-prom", tmp_path, area, position=fixed)
    port = free_port()
    config = write_config(tmp_path, stub, table, device_slug="op-prom", status_port=port)
    agent = await agents.start(config, tmp_path / "agent.log")
    await wait_until(lambda: operator_online(port, LABEL), 30, f"{LABEL} ONLINE")
    with prometheus(tmp_path, f"127.0.0.1:{port}") as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=5, trust_env=False) as client:

            async def online() -> list[dict[str, Any]]:
                return await query(client, f'luxxon_agent_online{{operator="{LABEL}"}} == 1')

            [series] = await wait_until(online, 60, "Prometheus to scrape luxxon_agent_online")
            assert series["metric"]["job"] == "luxxon-agent"
            assert series["metric"]["instance"] == f"127.0.0.1:{port}"
            [accuracy] = await query(
                client, f'luxxon_agent_gps_accuracy_meters{{operator="{LABEL}"}}'
            )
            assert float(accuracy["value"][1]) == 4.0  # the surveyed accuracy of fixed://
            served = await query(client, "luxxon_agent_sessions_served_total")
            assert [s["metric"]["operator"] for s in served] == [LABEL]
            [up] = await query(client, 'up{job="luxxon-agent"}')
            assert up["value"][1] == "1"
            targets = (await client.get("/api/v1/targets")).json()["data"]["activeTargets"]
            assert [t["health"] for t in targets] == ["up"], json.dumps(targets)
    assert await agent.stop() == 0


def test_example_scrape_config_is_valid() -> None:
    promtool = require_tool("promtool")
    example = Path(__file__).parents[2] / "examples" / "prometheus.yml"
    done = subprocess.run(
        [promtool, "check", "config", str(example)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
