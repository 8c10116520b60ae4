"""The real `luxxon-agent stub` process on a free loopback port, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from tests.conftest import free_port
from tests.stub.conftest import Actor, data
from tests.support import wait_healthy

LUXXON_AGENT = str(Path(sys.executable).with_name("luxxon-agent"))
STARTUP_TIMEOUT = 30.0


async def _run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        LUXXON_AGENT,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, dict[str, str], Path]]:
    port = free_port()
    env = os.environ | {"XDG_DATA_HOME": str(tmp_path / "data")}
    db = tmp_path / "stub.sqlite3"
    proc = await asyncio.create_subprocess_exec(
        LUXXON_AGENT,
        "stub",
        "--port",
        str(port),
        "--db",
        str(db),
        "--no-video",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        await wait_healthy(f"{base}/health", proc, STARTUP_TIMEOUT)
        yield base, env, db
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    # uvicorn re-raises the SIGTERM it handled after its graceful shutdown
    assert proc.returncode in (0, -signal.SIGTERM), err.decode()[-2000:]


async def test_operator_lifecycle_over_real_http(
    server: tuple[str, dict[str, str], Path],
) -> None:
    base, env, db = server
    async with httpx.AsyncClient(base_url=base) as http:
        supplier = Actor(Account.create(), http)
        await supplier.create_workspace("acme-drones", ["SUPPLIER"])
        login = await supplier.login()
        assert login["selectedWorkspaceId"] == supplier.workspace_id
        key = await supplier.mint_key(["sessions:operate", "sessions:read", "wallet:read"])
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key['plaintext']}"}
    ) as operator:
        data(
            await operator.patch(
                f"/workspaces/{supplier.workspace_id}",
                json={
                    "availabilityState": "ONLINE",
                    "coverageLat": 4.711,
                    "coverageLng": -74.072,
                    "coverageRadiusMeters": 2000,
                },
            )
        )
        request_args = ["stub", "request", "--lat", "4.712", "--lng", "-74.071", "--duration"]
        code, out, err = await _run(env, *request_args, "600", "--dispatch", "--base-url", base)
        assert code == 0, err
        assert "created consumer workspace" in err
        session_id = out.split()[-1]
        assert session_id.startswith("ses_")
        key_file = Path(env["XDG_DATA_HOME"]) / "luxxon-agent" / "stub-consumer.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

        accepted = data(await operator.post(f"/sessions/{session_id}/accept"))
        assert accepted["state"] == "ASSIGNED"
        started = data(await operator.post(f"/sessions/{session_id}/start"))
        token = data(await operator.get(f"/sessions/{session_id}/producer-token"))
        assert token["whipUrl"] == started["whipUrl"]
        assert started["whipUrl"].startswith(base.removesuffix("/api/v1") + "/whip/")
        ended = data(await operator.post(f"/sessions/{session_id}/end"))
        assert ended["state"] == "ENDED"
        assert data(await operator.get(f"/settlements/{session_id}"))["state"] == "CONFIRMED"

        # the consumer's second request reuses its wallet and workspace
        code, out, err = await _run(env, *request_args, "60", "--base-url", base)
        assert code == 0, err
        assert "created consumer workspace" not in err
        assert out.count("\n") == 1, out  # one line whose last word is the id
        second = out.split()[-1]
        assert second.startswith("ses_") and second != session_id

        # --json: stdout is one valid JSON object, the Session in wire form
        code, out, err = await _run(env, *request_args, "60", "--json", "--base-url", base)
        assert code == 0, err
        shown = json.loads(out)
        assert shown["state"] == "REQUESTED" and shown["maxDurationSeconds"] == 60
        third = shown["id"]
        assert third not in (session_id, second)

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        states = dict(conn.execute("SELECT id, state FROM sessions").fetchall())
    assert states == {session_id: "ENDED", second: "REQUESTED", third: "REQUESTED"}
