"""End to end over real HTTP: sampler -> spool -> uploader -> proxy -> stub -> meter.

The stub and the sampler share a FakeClock, so "20 s" of session time pass in
well under a second of real time; the uploader backs off in real time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import timedelta

from luxxon_agent.api import AsyncLuxxonClient, RetryPolicy
from luxxon_agent.backoff import Backoff
from luxxon_agent.position.fix import Fix, SourceKind
from luxxon_agent.position.latest_fix import LatestFix
from luxxon_agent.secret import Secret
from luxxon_agent.telemetry import Sampler, Spool, TickOutcome, Uploader
from tests.conftest import free_port
from tests.stub.conftest import data
from tests.support import serve, wait_for
from tests.telemetry.conftest import Live
from tests.telemetry.helpers import CHAIN, DEVICE, TcpProxy, signed

FAST_BACKOFF = Backoff(initial=0.05, maximum=0.3)


async def operator_key(live: Live) -> str:
    key = await live.supplier.mint_key(["sessions:operate", "sessions:read"])
    return str(key["plaintext"])


def stored_count(live: Live, sid: str) -> int:
    row = live.harness.stub.store.one("SELECT COUNT(*) FROM telemetry WHERE session_id = ?", (sid,))
    return int(row[0])


async def test_a_20_second_outage_loses_nothing_and_the_meter_pays_every_second(
    live: Live, tmp_path
):
    clock = live.harness.clock
    stub_port, proxy_port = free_port(), free_port()
    proxy = TcpProxy(stub_port, proxy_port)
    latest = LatestFix(max_age_s=2.0, clock=clock)
    ticks: asyncio.Queue = asyncio.Queue()
    client = AsyncLuxxonClient(
        f"http://127.0.0.1:{proxy_port}/api/v1",
        api_key=Secret(await operator_key(live)),
        timeout=2.0,
        retries=RetryPolicy(attempts=2, backoff=FAST_BACKOFF),
    )
    pending_during_outage = 0
    async with serve(live.harness.app, stub_port), client, proxy:
        with Spool(tmp_path / "spool.db") as spool:
            uploader = Uploader(spool, client, backoff=FAST_BACKOFF)
            sampler = Sampler(
                spool=spool,
                provider=latest,
                signer=DEVICE,
                session_id=live.sid,
                chain_id=CHAIN,
                clock=clock,
                on_tick=ticks.put_nowait,
                on_sample=uploader.notify,
            )
            async with uploader, sampler:
                await asyncio.sleep(0)
                for k in range(1, 61):
                    if k == 20:
                        await proxy.down()
                    if k == 40:
                        # the outage must have been felt (in real time) before it ends
                        await wait_for(
                            lambda: uploader.counters.failures > 0, 10, "a failure", interval=0.01
                        )
                        pending_during_outage = spool.stats(live.sid).pending
                        await proxy.up()
                    latest.update(
                        Fix(
                            time=clock.now() + timedelta(seconds=0.5),
                            lat=4.711,
                            lng=-74.072,
                            accuracy_m=4.0,
                            source=SourceKind.SIM,
                        )
                    )
                    await clock.advance(1)
                    tick = await asyncio.wait_for(ticks.get(), 5)
                    assert tick.outcome is TickOutcome.SAMPLED, tick
                result = await uploader.drain(timeout=30, session_id=live.sid)
            assert result.complete and result.delivered == 60, result
            assert uploader.counters.failures > 0  # the outage was felt
    assert pending_during_outage >= 19  # the backlog built up while the stub was unreachable
    assert stored_count(live, live.sid) == 60
    await clock.advance(0.1)
    ended = data(await live.operator.post(f"/sessions/{live.sid}/end"))
    assert (ended["cleanSeconds"], ended["failedSeconds"]) == (60, 0)


_UPLOADER = textwrap.dedent(
    """
    import asyncio, json, sys
    from luxxon_agent.api import AsyncLuxxonClient
    from luxxon_agent.secret import Secret
    from luxxon_agent.telemetry import Spool, Uploader

    async def main():
        key = Secret(sys.stdin.readline().strip())
        with Spool(sys.argv[1]) as spool:
            async with AsyncLuxxonClient(sys.argv[2], api_key=key) as client:
                async with Uploader(spool, client, concurrency=2, batch_size=16) as up:
                    result = await up.drain(timeout=60)
                    print(json.dumps({"complete": result.complete, "pending": result.pending,
                                      "delivered": up.counters.delivered,
                                      "duplicates": up.counters.duplicates}), flush=True)

    asyncio.run(main())
    """
)


def start_uploader(spool_path, base_url: str, key: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", _UPLOADER, str(spool_path), base_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert process.stdin is not None
    process.stdin.write(key + "\n")  # the key never goes on the command line
    process.stdin.close()
    return process


def finish(process: subprocess.Popen) -> str:
    assert process.stdout is not None
    try:
        out = process.stdout.read()  # EOF when the process exits (its drain is bounded: 60 s)
        process.wait(timeout=10)
    finally:
        process.kill()
        process.stdout.close()
    return out


async def test_sigkill_mid_drain_then_restart_loses_and_duplicates_nothing(live: Live, tmp_path):
    clock = live.harness.clock
    count = 500
    whole = live.started_at.replace(microsecond=0)
    spool_path = tmp_path / "spool.db"
    with Spool(spool_path) as spool:
        for k in range(1, count + 1):
            spool.append(live.sid, signed(live.sid, whole + timedelta(seconds=k)))
    await clock.advance(count + 1)
    key = await operator_key(live)
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    async with serve(live.harness.app, port):
        first = start_uploader(spool_path, base, key)
        try:
            await wait_for(
                lambda: stored_count(live, live.sid) >= 100, 30, "100 deliveries", interval=0.01
            )
            first.send_signal(signal.SIGKILL)
            killed_at = stored_count(live, live.sid)
        finally:
            first.kill()
            await asyncio.to_thread(first.wait, 10)
            assert first.stdout is not None
            first.stdout.close()
        assert killed_at < count, "the drain finished before the kill"
        second = start_uploader(spool_path, base, key)
        out = await asyncio.to_thread(finish, second)
    report = json.loads(out)
    assert report["complete"] and report["pending"] == 0
    # what the first run sent but had not marked yet came back as duplicates, nothing else did
    assert report["duplicates"] <= 16
    rows = live.harness.stub.store.all(
        "SELECT captured_at_ms FROM telemetry WHERE session_id = ? ORDER BY captured_at_ms",
        (live.sid,),
    )
    first_ms = int(whole.timestamp() * 1000) + 1000
    assert [r[0] for r in rows] == [first_ms + 1000 * i for i in range(count)]
    db = sqlite3.connect(spool_path)
    states = dict(db.execute("SELECT state, COUNT(*) FROM samples GROUP BY state").fetchall())
    db.close()
    assert states == {1: count}
