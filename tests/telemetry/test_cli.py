"""`luxxon-agent keygen`, `luxxon operators ...` and `luxxon sessions earnings` as processes
against the stub over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta

from luxxon_agent.cli.earnings_report import local_check
from luxxon_agent.identity.device_key import DeviceKeyStore
from luxxon_agent.meter import earnings
from luxxon_agent.models import Session
from luxxon_agent.telemetry import Spool
from tests.conftest import free_port
from tests.stub.conftest import data
from tests.support import serve
from tests.telemetry.conftest import Live
from tests.telemetry.helpers import signed


async def run(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    """Run a CLI in a fresh process while this loop keeps serving the stub."""
    entry = "luxxon_agent.cli.agent" if args[0] == "luxxon-agent" else "luxxon_agent.cli.luxxon"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        f"from {entry} import main; main()",
        *args[1:],
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode() if stdin else None), 60)
    assert process.returncode == 0, f"{args}: {err.decode()}"
    return out.decode()


async def test_register_list_revoke_and_earnings_through_the_cli(live: Live, tmp_path):
    port = free_port()
    key = await live.supplier.mint_key(["sessions:operate", "sessions:read", "wallet:read"])
    env = {
        **os.environ,
        "PYTHONPATH": os.getcwd(),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "LUXXON_BASE_URL": f"http://127.0.0.1:{port}/api/v1",
        "LUXXON_API_KEY": key["plaintext"],
        "LUXXON_WALLET_PASSPHRASE": "test passphrase",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    ws = str(live.supplier.workspace_id)
    key_file = tmp_path / "device.json"
    async with serve(live.harness.app, port):
        made = json.loads(
            await run(env, "luxxon-agent", "keygen", "--key-file", str(key_file), "--json")
        )
        device = DeviceKeyStore(key_file).load()
        assert device is not None and device.address == made["address"]
        wallet_hex = "0x" + bytes(live.supplier.account.key).hex()
        await run(env, "luxxon", "wallet", "import", stdin=wallet_hex + "\n")
        registered = json.loads(
            await run(
                env,
                "luxxon",
                "operators",
                "register",
                "--workspace",
                ws,
                "--label",
                "drone-9",
                "--kind",
                "DRONE",
                "--device-address",
                device.address,
                "--expires-days",
                "2",
                "--json",
            )
        )
        assert registered["deviceAddress"] == device.address
        assert registered["kind"] == "DRONE" and "revokedAt" not in registered
        listed = json.loads(
            await run(env, "luxxon", "operators", "list", "--workspace", ws, "--json")
        )
        assert [o["label"] for o in listed] == ["drone-7", "drone-9"]

        # the device signs 10 seconds; 8 reach the stub, 2 are still in its spool
        signer = device.signer()
        whole = live.started_at.replace(microsecond=0)
        spool_path = tmp_path / "state" / "drone-9" / "telemetry.sqlite3"
        with Spool(spool_path) as spool:
            for k in range(1, 11):
                await live.harness.clock.advance(1)
                sample = signed(live.sid, whole + timedelta(seconds=k), signer=signer)
                spool.append(live.sid, sample)
                if k <= 8:
                    data(
                        await live.operator.post(
                            f"/sessions/{live.sid}/telemetry", json=sample.to_wire()
                        ),
                        201,
                    )
            spool.mark_delivered([r.id for r in spool.samples(live.sid)[:8]])
        await live.harness.clock.advance(0.1)
        ended = data(await live.operator.post(f"/sessions/{live.sid}/end"))
        report = json.loads(
            await run(
                env,
                "luxxon",
                "sessions",
                "earnings",
                live.sid,
                "--spool",
                str(spool_path),
                "--json",
            )
        )
        revoked = json.loads(
            await run(
                env, "luxxon", "operators", "revoke", "--workspace", ws, registered["id"], "--json"
            )
        )
        # without --spool: the agent's state_dir is searched, and an empty one is said so
        found = await run(
            {**env, "LUXXON_AGENT_AGENT_STATE_DIR": str(tmp_path / "state")},
            "luxxon",
            "sessions",
            "earnings",
            live.sid,
        )
        human = await run(
            {**env, "LUXXON_AGENT_AGENT_STATE_DIR": str(tmp_path / "empty")},
            "luxxon",
            "sessions",
            "earnings",
            live.sid,
        )
    assert revoked["revokedAt"]
    server, local = report["server"], report["local"]
    paid = earnings(ended["cleanSeconds"], 1000, 1000)
    # 8 samples delivered cover 9 seconds (the 2 s freshness window spans the 9th)
    assert server["cleanSeconds"] == ended["cleanSeconds"] == 9
    assert server["operatorEarnedMicroUsdc"] == str(paid.operator_earned_micro_usdc)
    assert server["settlementState"] == "CONFIRMED"
    assert (local["samplesTaken"], local["delivered"], local["pending"]) == (10, 8, 2)
    assert local["secondsMetered"] == 10 and local["secondsCovered"] == 10
    assert local["wouldEarnMicroUsdc"] == str(earnings(10, 1000, 1000).operator_earned_micro_usdc)
    assert "this machine's samples" in found and str(spool_path) in found
    assert "local cross-check: no telemetry spool found at" in human
    assert str(tmp_path / "empty") in human
    assert device.private_key.reveal()[2:] not in human


async def test_earnings_caps_the_local_meter_at_max_duration(live: Live, tmp_path):
    max_s = live.session["maxDurationSeconds"]
    ended_late = live.started_at + timedelta(seconds=max_s + 120)
    session = Session.model_validate(
        {**live.session, "state": "ENDED", "endedAt": ended_late.isoformat()}
    )
    with Spool(tmp_path / "s.db") as spool:
        for k in range(1, 4):
            spool.append(live.sid, signed(live.sid, live.started_at + timedelta(seconds=k)))
        check = local_check(
            spool,
            session,
            now=ended_late,
            fee_bps=1000,
            freshness_s=2.0,
            default_radius_m=200.0,
        )
        elsewhere = local_check(
            spool,
            session.model_copy(update={"id": "ses_other"}),
            now=ended_late,
            fee_bps=1000,
            freshness_s=2.0,
            default_radius_m=200.0,
        )
    assert check is not None and check.seconds_metered == max_s  # not max_s + 120
    assert check.seconds_covered == 4 and elsewhere is None
