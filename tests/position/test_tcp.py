"""tcp://: raw NMEA from a real TCP server on 127.0.0.1; the server drops us, we reconnect."""

from __future__ import annotations

import asyncio

import pytest

from luxxon_agent.position import Fix, NoFix, SourceKind, open_source
from tests.conftest import free_port
from tests.position.replay import capture_lines

WAIT_S = 15.0


async def test_fixes_then_reconnect_after_the_server_drops_us() -> None:
    lines = capture_lines("ublox-zed-f9p-nmea.log")
    connections: list[asyncio.StreamWriter] = []
    handlers: list[asyncio.Task[None]] = []

    async def serve(writer: asyncio.StreamWriter) -> None:
        try:
            for line in lines[:400]:
                writer.write(line)
                await writer.drain()
                await asyncio.sleep(0.0005)
        finally:
            writer.close()  # the phone app went away mid-stream
            await writer.wait_closed()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        await serve(writer)

    port = free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    source = open_source(f"tcp://127.0.0.1:{port}")
    reports: list[Fix | NoFix] = []

    async def until_second_connection_fixes() -> None:
        async for report in source:
            reports.append(report)
            after_drop = [r for r in reports if isinstance(r, NoFix) and "closed" in r.reason]
            if after_drop and len(connections) >= 2 and isinstance(report, Fix):
                return

    try:
        await asyncio.wait_for(until_second_connection_fixes(), WAIT_S)
    finally:
        await source.close()
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
    fixes = [r for r in reports if isinstance(r, Fix)]
    assert len(fixes) >= 5
    assert all(f.source is SourceKind.TCP for f in fixes)
    assert all(f.lat == pytest.approx(-45.8776, abs=1e-3) for f in fixes)
    # u-blox sends GST: accuracy comes from it, not from HDOP
    assert source.stats.sentences["GST"] > 0
    assert source.stats.reconnects >= 1


async def test_refused_connection_is_no_fix_not_an_exception() -> None:
    source = open_source(f"tcp://127.0.0.1:{free_port()}")
    try:
        report = await asyncio.wait_for(anext(aiter(source)), WAIT_S)
    finally:
        await source.close()
    assert isinstance(report, NoFix) and "cannot connect" in report.reason


async def test_a_mute_peer_is_reported_as_no_fix() -> None:
    """Connected, but the receiver behind the socket says nothing: NoFix, not silence."""
    accepted = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        accepted.set()

    port = free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    source = open_source(f"tcp://127.0.0.1:{port}")
    try:
        report = await asyncio.wait_for(anext(aiter(source)), WAIT_S)
        assert accepted.is_set()
        assert isinstance(report, NoFix) and report.reason == "no data for 2 s"
    finally:
        await source.close()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


def test_silence_speaks_every_two_seconds() -> None:
    from luxxon_agent.position.position_source import QUIET_FLUSH_S, Silence

    silence = Silence()
    due = [silence.quiet() for _ in range(int(5.0 / QUIET_FLUSH_S))]
    assert [i for i, d in enumerate(due) if d] == [7, 15]  # after 2.0 s and 4.0 s of quiet
    silence.heard()
    assert silence.quiet_s == 0.0 and not silence.quiet()
