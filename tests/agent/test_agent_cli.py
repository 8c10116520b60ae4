"""The agent's commands as a user runs them: config check, install-service, demo."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

from luxxon_agent.agent.localstub import LocalStub, free_port
from luxxon_agent.agent.service import render_unit
from luxxon_agent.api import AsyncLuxxonClient
from luxxon_agent.meter import earnings
from luxxon_agent.telemetry import Spool

from .conftest import (
    AGENT_COMMAND,
    VIDEO,
    Area,
    operator_account,
    operator_table,
    wait_until,
    write_config,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def agent_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENT_COMMAND, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


async def test_config_check_examples_and_errors(tmp_path: Path) -> None:
    broken = tmp_path / "agent.toml"
    broken.write_text((EXAMPLES / "laptop.toml").read_text().replace("label =", "lable ="))
    camera = tmp_path / "camera.toml"
    camera.write_text(
        (EXAMPLES / "laptop.toml")
        .read_text()
        .replace(
            'video = "testsrc://?size=1280x720&fps=30"', 'video = "rtsp://admin:hunter2@cam/s"'
        )
    )
    negative = {"LUXXON_AGENT_OPERATORS_0_COVERAGE_RADIUS_M": "-5"}
    check = ("config", "check", "--config")
    # independent processes: run side by side
    *examples, bad, typo, effective = await asyncio.gather(
        *(
            asyncio.to_thread(agent_cli, *check, str(EXAMPLES / name))
            for name in ("drone.toml", "fixed-camera.toml", "laptop.toml", "fleet.toml")
        ),
        asyncio.to_thread(agent_cli, *check, str(EXAMPLES / "drone.toml"), env=negative),
        asyncio.to_thread(agent_cli, *check, str(broken)),
        asyncio.to_thread(agent_cli, "config", "check", "--json", "--config", str(camera)),
    )
    for done in examples:
        assert done.returncode == 0, done.stderr
        assert "config OK" in done.stdout
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: operators[0].coverage.radius_m: Input should be greater than 0 "
        "(from environment variable LUXXON_AGENT_OPERATORS_0_COVERAGE_RADIUS_M)"
    ]
    assert typo.returncode == 2
    assert "operators[0].lable: unknown key" in typo.stderr
    shown = json.loads(effective.stdout)["operators"][0]
    assert shown["label"] == "laptop"
    assert shown["video"] == "rtsp://***@cam/s"  # the camera's password is not printed


def test_install_service_writes_unit_and_refuses_overwrite(tmp_path: Path) -> None:
    assert (EXAMPLES / "luxxon-agent.service").read_text() == render_unit()
    unit = tmp_path / "luxxon-agent.service"
    args = ["install-service", "--path", str(unit), "--exec", "/opt/luxxon/bin/luxxon-agent"]
    done = agent_cli(*args)
    assert done.returncode == 0, done.stderr
    text = unit.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=30",
        "Restart=always",
        "LoadCredential=luxxon-api-key:",
        "User=luxxon-agent",
        "NoNewPrivileges=yes",
        "ExecStart=/opt/luxxon/bin/luxxon-agent run --config /etc/luxxon-agent/agent.toml",
    ):
        assert line in text
    again = agent_cli(*args)
    assert again.returncode == 2 and "--force" in again.stderr
    assert agent_cli(*args, "--force").returncode == 0


def test_demo_json(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    frame = tmp_path / "frame.jpg"
    done = agent_cli(
        "demo", "--seconds", "8", "--json", "--frame", str(frame), env={"TMPDIR": str(temp)}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    session, meter, settlement = result["session"], result["meter"], result["settlement"]
    assert session["state"] == "ENDED" and session["maxDurationSeconds"] == 8
    assert meter["mode"] == "wallclock" and 7 <= meter["liveSeconds"] <= 10
    assert meter["samplesDelivered"] == meter["samplesTaken"] >= 5
    assert meter["framesSent"] > 20
    clean, rate = session["cleanSeconds"], int(session["ratePerSecondMicroUsdc"])
    assert clean >= 5
    split = earnings(clean, rate, settlement["feeBps"])
    assert int(settlement["operatorEarnedMicroUsdc"]) == split.operator_earned_micro_usdc
    assert settlement["state"] in ("SUBMITTED", "CONFIRMED") and settlement["txHash"]
    assert result["framePath"] == str(frame) and frame.read_bytes()[:2] == b"\xff\xd8"
    assert list(temp.iterdir()) == []  # the demo's temp dir is gone


async def test_demo_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = await asyncio.create_subprocess_exec(
        *AGENT_COMMAND, "demo", "--seconds", "60", "--json",
        "--frame", str(tmp_path / "frame.jpg"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(temp)},
    )  # fmt: skip
    try:

        def sampled() -> bool:
            """The demo's session is LIVE and its telemetry under way."""
            spools = list(temp.glob("luxxon-demo-*/agent/demo-cam/telemetry.sqlite3"))
            if not spools:
                return False
            with Spool(spools[0]) as spool:
                return spool.stats().spooled >= 2

        await wait_until(sampled, 40, "the demo's session to go LIVE and sample")
        demo_dir = next(temp.glob("luxxon-demo-*"))
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(40):
            _, stderr = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 130, stderr.decode()[-2000:]
    assert "interrupted" in stderr.decode()
    assert list(temp.iterdir()) == []
    # no stub left running: nothing has the demo's database open any more
    leftover = subprocess.run(
        ["pgrep", "-f", str(demo_dir)], capture_output=True, text=True, check=False
    )
    assert leftover.stdout.strip() == ""


async def test_doctor_passes_on_a_good_box_and_names_fixes(
    stub: LocalStub, tmp_path: Path, area: Area
) -> None:
    account = await operator_account(stub, "op-doc", "cam-1", tmp_path)
    good = write_config(
        tmp_path, stub, operator_table("cam-1", "op-doc", tmp_path, area),
        device_slug="op-doc", status_port=free_port(),
    )  # fmt: skip
    done = await asyncio.to_thread(agent_cli, "doctor", "--json", "--config", str(good))
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    assert done.returncode == 0, checks
    assert checks["credentials"]["ok"] and "sessions:operate" in checks["credentials"]["detail"]
    assert checks["clock offset"]["ok"] and checks["API reachable"]["ok"]
    assert checks["cam-1: GPS fix"]["ok"] and checks["cam-1: camera"]["ok"]
    # registered for 30 days (the test accounts'): valid, but inside the 30-day warning
    delegation = checks["device delegation"]
    assert delegation["ok"] and delegation["warning"] and "renew" in delegation["fix"]
    assert "cam-1: valid until" in delegation["detail"]

    assert account.api_key is not None
    async with AsyncLuxxonClient(stub.base_url, api_key=account.api_key) as seller:
        (registered,) = await seller.list_operators(account.workspace_id)
        await seller.revoke_operator(account.workspace_id, registered.id)
    dead_gps = f"tcp://127.0.0.1:{free_port()}"
    bad_table = operator_table("cam-1", "op-doc", tmp_path, area, position=dead_gps).replace(
        VIDEO, "v4l2:///dev/v4l/by-id/usb-missing-camera-video-index0"
    )
    bad = write_config(tmp_path, stub, bad_table, device_slug="op-doc", status_port=free_port())
    done = await asyncio.to_thread(
        agent_cli, "doctor", "--json", "--seconds", "3", "--config", str(bad)
    )
    assert done.returncode == 1
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    assert not checks["cam-1: GPS fix"]["ok"] and "gps check" in checks["cam-1: GPS fix"]["fix"]
    assert not checks["cam-1: camera"]["ok"] and "/dev/v4l/by-id" in checks["cam-1: camera"]["fix"]
    assert checks["credentials"]["ok"]
    revoked = checks["device delegation"]
    assert not revoked["ok"] and "delegation revoked" in revoked["detail"]
    assert "luxxon operators register" in revoked["fix"]


async def test_doctor_checks_each_operators_own_device_key(
    stub: LocalStub, tmp_path: Path, area: Area
) -> None:
    from luxxon_agent.agent.provision import new_private_key
    from luxxon_agent.files import write_atomic

    await operator_account(stub, "op-fleet-doc", "cam-1", tmp_path)
    unregistered = tmp_path / "cam-2.device-key"
    write_atomic(unregistered, new_private_key().reveal().encode())
    tables = operator_table("cam-1", "op-fleet-doc", tmp_path, area) + operator_table(
        "cam-2", "op-fleet-doc", tmp_path, area
    ) + f'device_key_file = "{unregistered}"\n'  # fmt: skip
    config = write_config(
        tmp_path, stub, tables, device_slug="op-fleet-doc", status_port=free_port()
    )
    done = await asyncio.to_thread(
        agent_cli, "doctor", "--json", "--seconds", "1", "--config", str(config)
    )
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    assert checks["cam-1: device key"]["ok"] and checks["cam-2: device key"]["ok"]
    assert checks["cam-1: device delegation"]["ok"], checks
    own = checks["cam-2: device delegation"]
    assert not own["ok"] and "is not registered" in own["detail"]
    assert done.returncode == 1
