"""A bug in one of the supervisor's loops restarts that loop; it never cancels the others."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from luxxon_agent.agent.supervisor import Supervisor

from .conftest import one_camera_config


def _supervisor(tmp_path: Path) -> Supervisor:
    return Supervisor(one_camera_config(tmp_path), env={})


async def test_a_crashing_loop_is_logged_once_and_restarted_its_siblings_run_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    supervisor = _supervisor(tmp_path)
    runs = 0
    sibling_ticks = 0

    async def buggy() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise KeyError("a bug")
        await asyncio.Event().wait()

    async def sibling() -> None:
        nonlocal sibling_ticks
        while True:
            await asyncio.sleep(0.05)
            sibling_ticks += 1

    with caplog.at_level(logging.ERROR, logger="luxxon_agent.agent.supervisor"):
        async with asyncio.timeout(10), asyncio.TaskGroup() as group:
            loop = group.create_task(supervisor._restarting("position", buggy))
            other = group.create_task(sibling())
            while runs < 2:
                await asyncio.sleep(0.05)
            ticks = sibling_ticks
            await asyncio.sleep(0.2)
            assert sibling_ticks > ticks  # still running after the crash
            loop.cancel()
            other.cancel()
    assert runs == 2
    crashes = [r for r in caplog.records if "position crashed; restarting it" in r.getMessage()]
    assert len(crashes) == 1 and crashes[0].exc_info is not None


def test_the_apis_last_error_is_in_the_status_until_it_answers(tmp_path: Path) -> None:
    from luxxon_agent.errors import NetworkError

    supervisor = _supervisor(tmp_path)
    assert supervisor.status().api_last_error is None
    supervisor.api_health.failed(NetworkError("connect to https://u:pw@api.example failed"))
    body = supervisor.snapshot()
    assert body["api_last_error"] and "pw" not in body["api_last_error"]
    supervisor.api_health.ok()
    assert supervisor.status().api_last_error is None
