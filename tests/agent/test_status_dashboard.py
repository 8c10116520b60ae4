"""`luxxon-agent status` rides out an agent restart: shown as unreachable, then back."""

from __future__ import annotations

import asyncio
import signal

from luxxon_agent.agent.status import AgentStatus, Availability, OperatorStatus
from luxxon_agent.agent.status_server import StatusServer

from .conftest import AGENT_COMMAND


def _status() -> AgentStatus:
    op = OperatorStatus(label="cam-1", device_kind="FIXED", availability=Availability.ONLINE)
    return AgentStatus(version="0", pid=1, started_at="now", api_base_url="http://127.0.0.1:1",
                       api_ok=True, operators=[op])  # fmt: skip


async def test_live_dashboard_survives_the_agent_going_away_and_quits_on_ctrl_c() -> None:
    server = StatusServer("127.0.0.1:0", _status, metrics=False)
    await server.start()
    listen = server.address
    proc = await asyncio.create_subprocess_exec(
        *AGENT_COMMAND, "status", "--listen", listen,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await asyncio.sleep(2.0)
        await server.stop()  # the agent restarts...
        await asyncio.sleep(2.5)
        assert proc.returncode is None, "the dashboard exited when the agent went away"
        server = StatusServer(listen, _status, metrics=False)
        await server.start()  # ...and is back on the same address
        await asyncio.sleep(2.0)
        assert proc.returncode is None
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await server.stop()
    assert proc.returncode == 0, err.decode()
    assert "cam-1" in out.decode()
