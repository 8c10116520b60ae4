"""Fleet benchmark: what each additional operator costs one agent.

Run: .venv/bin/python benchmarks/bench_fleet.py [--seconds 20] [--operators 1,4,8]

For each N: one stub (a child process, per-operator dispatch on), one operator
workspace with one API key and N registered device keys, and `luxxon-agent run`
in a process of its own with N [[operators]] (320x240 testsrc at 15 fps,
sim:// GPS, 1 Hz signed telemetry each). N consumer sessions are dispatched at
once; once all are LIVE the agent's CPU (user+system ticks from /proc, percent
of one core) and RSS (VmRSS at the end of the window, VmHWM peak) are read
over `--seconds`. The cost of an additional operator is the slope against
N = 1, printed against the targets (<= 15 MB RSS, <= 5 % of a core).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from luxxon_agent.agent.fleet_demo import Fleet, FleetOptions  # noqa: E402
from luxxon_agent.agent.localstub import LocalStub, free_port  # noqa: E402
from luxxon_agent.agent.status import StatusEndpointError, fetch_status  # noqa: E402
from luxxon_agent.models import SessionState  # noqa: E402

CLI = str(Path(sys.executable).with_name("luxxon-agent"))
TICKS = os.sysconf("SC_CLK_TCK")
VIDEO = "testsrc://?size=320x240&fps=15"
TARGET_RSS_MB = 15.0
TARGET_CPU_PCT = 5.0
SESSION_SECONDS = 600
"""Longer than any window: the sessions are LIVE throughout the measurement."""


@dataclass(frozen=True)
class Figures:
    operators: int
    cpu_pct: float
    rss_mb: float
    peak_mb: float
    frames: int
    delivered: int


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _memory_mb(pid: int) -> tuple[float, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def _toml(data: dict[str, Any]) -> str:
    """The agent's config as TOML: tables of scalars and one array of tables, all it has."""

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

    def table(header: str, values: dict[str, Any]) -> list[str]:
        lines = [header]
        nested = []
        for key, value in values.items():
            if isinstance(value, dict):
                nested.append((key, value))
            else:
                lines.append(f"{key} = {scalar(value)}")
        for key, value in nested:
            inner = ", ".join(f"{k} = {scalar(v)}" for k, v in value.items())
            lines.append(f"{key} = {{ {inner} }}")
        return lines

    lines: list[str] = []
    for name, section in data.items():
        if isinstance(section, list):
            for item in section:
                lines += table(f"[[{name}]]", item)
        else:
            lines += table(f"[{name}]", section)
    return "\n".join(lines) + "\n"


async def _status(listen: str) -> dict[str, Any] | None:
    import json

    try:
        return dict(json.loads(await fetch_status(listen)))
    except StatusEndpointError:  # not listening yet: polled again
        return None


async def _stay_live(fleet: Fleet, ids: list[str], seconds: float, n: int) -> None:
    """Wait out the window, checking once a second that every session is still LIVE:
    figures for a window in which a session ended would not be N operators' figures."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(1.0, left))
        dropped = [
            f"{s.id} {s.state.value}"
            for s in await fleet.sessions(ids)
            if s.state is not SessionState.LIVE
        ]
        if dropped:
            raise RuntimeError(f"N={n}: not LIVE through the window: {', '.join(dropped)}")


async def measure(n: int, seconds: float, root: Path) -> Figures:
    stub = LocalStub(db=root / "stub.sqlite3", data_dir=root / "stub", meter="telemetry")
    await stub.start()
    listen = f"127.0.0.1:{free_port()}"
    options = FleetOptions(
        operators=n, video=VIDEO, run_agent=False, status_listen=listen, seconds=SESSION_SECONDS
    )
    agent: asyncio.subprocess.Process | None = None
    try:
        async with Fleet(options, root / "fleet", stub) as fleet:
            config = root / "agent.toml"
            config.write_text(_toml(fleet.config_data))
            assert fleet.operator is not None and fleet.operator.api_key is not None
            env = {**os.environ, "LUXXON_API_KEY": fleet.operator.api_key.reveal()}
            log = (root / "agent.log").open("wb")
            agent = await asyncio.create_subprocess_exec(
                CLI, "run", "--config", str(config), "--log-format", "json",
                env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
            log.close()
            deadline = time.monotonic() + 60
            while True:
                status = await _status(listen)
                ops = status["operators"] if status else []
                if len(ops) == n and all(op["availability"] == "ONLINE" for op in ops):
                    break
                if time.monotonic() > deadline or agent.returncode is not None:
                    raise RuntimeError(f"N={n}: the agent did not go ONLINE (see {log.name})")
                await asyncio.sleep(0.5)
            ids = [(await fleet.request()).id for _ in range(n)]
            await fleet.wait_sessions(
                ids, lambda s: s.state is SessionState.LIVE, 60.0, f"N={n}: all LIVE"
            )
            await asyncio.sleep(3)  # encoders and bitrate estimators settle
            cpu0, t0 = _cpu_seconds(agent.pid), time.monotonic()
            await _stay_live(fleet, ids, seconds, n)
            cpu1, t1 = _cpu_seconds(agent.pid), time.monotonic()
            rss, peak = _memory_mb(agent.pid)
            status = await _status(listen) or {"operators": []}
            frames = sum(op["video"]["frames"] for op in status["operators"])
            delivered = sum(op["telemetry"]["delivered"] for op in status["operators"])
            agent.send_signal(signal.SIGTERM)
            async with asyncio.timeout(60):
                await agent.wait()
            return Figures(n, 100 * (cpu1 - cpu0) / (t1 - t0), rss, peak, frames, delivered)
    finally:
        if agent is not None and agent.returncode is None:
            agent.kill()
            await agent.wait()
        await stub.stop()


def report(figures: list[Figures]) -> None:
    print(f"{'N':>3} {'CPU % core':>11} {'RSS MB':>8} {'peak MB':>8} {'frames':>8} {'samples':>8}")
    for f in figures:
        print(
            f"{f.operators:>3} {f.cpu_pct:>11.1f} {f.rss_mb:>8.1f} {f.peak_mb:>8.1f}"
            f" {f.frames:>8} {f.delivered:>8}"
        )
    base = figures[0]
    print()
    print(f"per additional operator (slope against N={base.operators}), target alongside:")
    for f in figures[1:]:
        extra = f.operators - base.operators
        cpu = (f.cpu_pct - base.cpu_pct) / extra
        rss = (f.rss_mb - base.rss_mb) / extra
        print(
            f"  N={f.operators}: CPU {cpu:5.1f} % of a core (target <= {TARGET_CPU_PCT:.0f} %,"
            f" {cpu / TARGET_CPU_PCT:.2f}x)   RSS {rss:5.1f} MB (target <= {TARGET_RSS_MB:.0f} MB,"
            f" {rss / TARGET_RSS_MB:.2f}x)"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--operators", default="1,4,8")
    args = parser.parse_args()
    counts = [int(part) for part in args.operators.split(",")]
    figures = []
    for n in counts:
        with tempfile.TemporaryDirectory(prefix=f"bench-fleet-{n}-") as tmp:
            figures.append(await measure(n, args.seconds, Path(tmp)))
            print(f"measured N={n}", file=sys.stderr)
    report(figures)


if __name__ == "__main__":
    asyncio.run(main())
