"""The stub's telemetry ingest under a fleet: N telemetry-only operators at 1 Hz (issue 13, item 7).

    .venv/bin/python benchmarks/bench_fleet_telemetry.py [--operators 50] [--seconds 60]

One SUPPLIER workspace registers N operators, each with its own device key
(a wallet-signed delegation), and sets each ONLINE with its own coverage; a
consumer requests N sessions, which per-operator dispatch hands out one per
operator; all N go LIVE. Then every operator posts one signed sample a second
(its own key, its own session; starts staggered over the first second) for
`--seconds`, each POST timed from the client. The stub is the real command
(`luxxon-agent stub --meter telemetry --no-video`, a subprocess on loopback, the
real clock, its SQLite file in a temp dir), so its CPU is its own: read from
/proc. Samples lost = samples sent minus the rows the stub stored for them,
counted in its database afterwards (read-only), so a 201 that was not stored
would count too. Targets (issue 13): 0 lost, p99 POST latency <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from luxxon_agent.agent.localstub import LocalStub
from luxxon_agent.api import AsyncLuxxonClient
from luxxon_agent.eip712 import KeySigner
from luxxon_agent.errors import LuxxonError
from luxxon_agent.identity import create_workspace_signed, siwe_login
from luxxon_agent.models import (
    CreateApiKeyRequest,
    CreateSessionRequest,
    DeviceKind,
    Environment,
    Role,
    Scope,
)
from luxxon_agent.secret import Secret
from luxxon_agent.telemetry import TelemetryPayload, sign_sample
from luxxon_agent.telemetry.delegation import register_operator

HERE = (4.711, -74.072)
TARGET_P99_MS = 100.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class FleetOperator:
    operator_id: str
    device: KeySigner
    session_id: str = ""
    latencies_ms: list[float] = field(default_factory=list)
    sent: int = 0
    failed: int = 0


async def set_up(base: str, operators: int) -> tuple[Secret, list[FleetOperator]]:
    """A fleet of `operators`, each ONLINE and holding one LIVE session; returns the API key."""
    wallet = Secret("0x" + secrets.token_hex(32))
    async with AsyncLuxxonClient(base) as supplier:
        chain_id = (await supplier.config()).chain_id
        ws = await create_workspace_signed(
            supplier, wallet, slug="bench-fleet", name="Bench fleet", roles=[Role.SUPPLIER]
        )
        await siwe_login(supplier, wallet)
        key = await supplier.create_api_key(
            ws.id,
            CreateApiKeyRequest(
                label="fleet",
                environment=Environment.TEST,
                scopes=[Scope.SESSIONS_OPERATE, Scope.SESSIONS_READ],
            ),
        )
        fleet = []
        for index in range(operators):
            device = KeySigner(Secret("0x" + secrets.token_hex(32)))
            registered = await register_operator(
                supplier,
                workspace_id=ws.id,
                label=f"cam-{index:03d}",
                kind=DeviceKind.FIXED,
                device_address=device.address,
                wallet=KeySigner(wallet),
                chain_id=chain_id,
                issued_at=datetime.now(UTC),
                lifetime=timedelta(days=1),
            )
            fleet.append(FleetOperator(registered.id, device))
    assert key.plaintext is not None
    api_key = Secret(key.plaintext)
    headers = {"Authorization": f"Bearer {api_key.reveal()}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as raw:
        for member in fleet:
            # the API client's operator methods are the fleet-agent's; the wire is enough here
            response = await raw.patch(
                f"/workspaces/{ws.id}/operators/{member.operator_id}",
                json={
                    "availabilityState": "ONLINE",
                    "coverageLat": HERE[0],
                    "coverageLng": HERE[1],
                    "coverageRadiusMeters": 5_000,
                },
            )
            response.raise_for_status()
    consumer_wallet = Secret("0x" + secrets.token_hex(32))
    by_operator = {member.operator_id: member for member in fleet}
    async with AsyncLuxxonClient(base) as consumer:
        await create_workspace_signed(
            consumer, consumer_wallet, slug="bench-watch", name="Watch", roles=[Role.CONSUMER]
        )
        await siwe_login(consumer, consumer_wallet)
        for _ in fleet:
            session = await consumer.create_session(
                CreateSessionRequest(lat=HERE[0], lng=HERE[1], max_duration_seconds=3600)
            )
            dispatched = await consumer.dispatch(session.id)
            assert dispatched.operator_id is not None, "per-operator dispatch is off"
            by_operator[dispatched.operator_id].session_id = session.id
    async with AsyncLuxxonClient(base, api_key=api_key) as operate:
        for member in fleet:
            await operate.accept(member.session_id)
            await operate.start(member.session_id)
    return api_key, fleet


async def run_operator(
    base: str, api_key: Secret, member: FleetOperator, chain_id: int, offset: float, seconds: int
) -> None:
    """One telemetry-only operator: a signed sample a second, on an absolute schedule."""
    loop = asyncio.get_running_loop()
    began = loop.time() + offset
    async with AsyncLuxxonClient(base, api_key=api_key) as client:
        for tick in range(seconds):
            await asyncio.sleep(max(0.0, began + tick - loop.time()))
            payload = TelemetryPayload.from_reading(
                member.session_id, datetime.now(UTC), HERE[0], HERE[1], 3.0, "gps"
            )
            sample = sign_sample(member.device, payload, chain_id)
            member.sent += 1
            posted = time.perf_counter()
            try:
                await client.post_telemetry(member.session_id, sample)
            except LuxxonError as exc:
                member.failed += 1
                print(f"  {member.operator_id}: {exc}")
                continue
            member.latencies_ms.append(1e3 * (time.perf_counter() - posted))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def stored_samples(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT session_id, COUNT(*) FROM telemetry GROUP BY session_id")
        return {session_id: count for session_id, count in rows}


async def bench(operators: int, seconds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stub = LocalStub(
            db=root / "stub.db", data_dir=root, meter="telemetry", with_video=False, env=os.environ
        )
        await stub.start()
        try:
            await measure(stub, operators, seconds)
        finally:
            await stub.stop()


async def measure(stub: LocalStub, operators: int, seconds: int) -> None:
    base, pid = stub.base_url, stub.pid
    assert pid is not None
    set_up_began = time.perf_counter()
    api_key, fleet = await set_up(base, operators)
    async with AsyncLuxxonClient(base) as client:
        chain_id = (await client.config()).chain_id
    print(
        f"stub telemetry ingest: {operators} operators (own device key each), 1 Hz,"
        f" {seconds} s; set-up {time.perf_counter() - set_up_began:.1f} s"
    )
    cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(
        *(
            run_operator(base, api_key, member, chain_id, index / operators, seconds)
            for index, member in enumerate(fleet)
        )
    )
    wall = time.perf_counter() - wall_before
    stub_cpu = cpu_seconds(pid) - cpu_before
    load = os.getloadavg()[0]
    stored = stored_samples(stub.db)
    sent = sum(member.sent for member in fleet)
    kept = sum(stored.get(member.session_id, 0) for member in fleet)
    lost = sent - kept
    latencies = [ms for member in fleet for ms in member.latencies_ms]
    p50, p95, p99 = (percentile(latencies, q) for q in (0.50, 0.95, 0.99))
    print(f"  samples sent {sent}, stored {kept}, failed POSTs {sum(m.failed for m in fleet)}")
    print(
        f"  samples lost {lost:>6}            target 0        {'met' if lost == 0 else 'NOT met'}"
    )
    print(
        f"  POST latency p99 {p99:7.1f} ms      target <= {TARGET_P99_MS:.0f} ms"
        f"  {'met' if p99 <= TARGET_P99_MS else 'NOT met'}"
        f"   (p50 {p50:.1f}, p95 {p95:.1f}, max {max(latencies):.1f} ms)"
    )
    print(
        f"  stub CPU {stub_cpu:.1f} s over {wall:.1f} s = {100 * stub_cpu / wall:.1f} % of a core"
        f" ({1e3 * stub_cpu / max(1, kept):.2f} ms per sample);"
        f" 1-minute load {load:.1f} on {os.cpu_count()} cores"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operators", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    asyncio.run(bench(args.operators, args.seconds))


if __name__ == "__main__":
    main()
