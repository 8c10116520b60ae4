"""Small builders shared by the telemetry tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from luxxon_agent.eip712 import KeySigner
from luxxon_agent.models import TelemetrySample
from luxxon_agent.secret import Secret
from luxxon_agent.telemetry import TelemetryPayload, sign_sample

CHAIN = 8453
T0 = datetime(2026, 5, 13, 8, 0, tzinfo=UTC)
DEVICE = KeySigner(Secret("0x" + "42" * 32))


def signed(
    session_id: str,
    at: datetime,
    *,
    lat: float = 4.711,
    lng: float = -74.072,
    accuracy_m: float = 3.0,
    signer: KeySigner = DEVICE,
    chain_id: int = CHAIN,
) -> TelemetrySample:
    payload = TelemetryPayload.from_reading(session_id, at, lat, lng, accuracy_m, "gps")
    return sign_sample(signer, payload, chain_id)


def seconds(start: datetime, count: int) -> list[datetime]:
    return [start + timedelta(seconds=i) for i in range(count)]


@dataclass(frozen=True)
class FakeFix:
    """What LatestFix.current() hands out."""

    time: datetime
    lat: float
    lng: float
    accuracy_m: float | None = 3.0
    source: str = "sim"


class TcpProxy:
    """A loopback TCP proxy the test can take down (connections reset, port closed) and up."""

    def __init__(self, target_port: int, port: int) -> None:
        self.target_port = target_port
        self.port = port
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def __aenter__(self) -> TcpProxy:
        await self.up()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.down()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # an RST, as when a cable is pulled mid-request
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pipes = [
            asyncio.ensure_future(_pipe(reader, up_writer)),
            asyncio.ensure_future(_pipe(up_reader, writer)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._pipes.difference_update(pipes)
            self._writers.difference_update((writer, up_writer))
            for w in (writer, up_writer):
                w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.transport.abort()
