"""`SerialSource`: NMEA from a serial or USB receiver (`serial:///dev/ttyUSB0?baud=9600`).

pyserial is blocking, so every open, read and close runs in the default
executor; the event loop never waits on the device. Unplugging the device
makes reads fail: the source reports `NoFix`, then reopens the same path
with backoff until the device is back (a by-id/by-path symlink keeps the
path stable across replugs).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from luxxon_agent.backoff import Backoff
from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.position.fix import SourceKind
from luxxon_agent.position.line_splitter import LineSplitter
from luxxon_agent.position.nmea import NmeaAssembler
from luxxon_agent.position.position_source import QUIET_FLUSH_S
from luxxon_agent.position.reconnecting_source import RECONNECT_BACKOFF, close_blocking
from luxxon_agent.position.stream_source import StreamSource

if TYPE_CHECKING:
    import serial  # type: ignore[import-untyped]  # pyserial ships no type information

logger = logging.getLogger(__name__)

AUTOBAUD_RATES = (9600, 4800, 38400, 115200, 19200, 57600)
"""Tried in this order (most common receiver defaults first) when no baud is given."""
AUTOBAUD_PROBE_S = 1.5
"""How long each rate may take to show one checksum-valid sentence."""


class SerialSource(StreamSource):
    """Reads a serial NMEA receiver; detects the baud rate; survives unplug and replug."""

    kind = SourceKind.SERIAL
    lost_reason = "serial device lost"  # serial.SerialException is an OSError
    # an open port with a mute receiver is not fixed by reopening it
    reconnect_after_silent_s = None

    def __init__(
        self,
        description: str,
        path: str,
        *,
        baud: int | None = None,
        backoff: Backoff = RECONNECT_BACKOFF,
        probe_s: float = AUTOBAUD_PROBE_S,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(description, backoff, clock)
        self.path, self.baud = path, baud
        self.probe_s = probe_s
        self.detected_baud: int | None = None
        self._port: serial.Serial | None = None
        self._pending: asyncio.Future[bytes] | None = None

    async def _open(self) -> str | None:
        opening = asyncio.get_running_loop().run_in_executor(None, self._open_port)
        try:
            self._port, reason = await opening
        except asyncio.CancelledError:
            opening.add_done_callback(_close_opened)  # the thread may still open it
            raise
        if self._port is None:
            return reason
        logger.info("%r open at %d baud", self, self._port.baudrate)
        return None

    async def _read(self) -> bytes | None:
        assert self._port is not None
        self._pending = asyncio.get_running_loop().run_in_executor(None, _read_some, self._port)
        return await self._pending or None  # b"": the port timeout passed in silence

    def _open_port(self) -> tuple[serial.Serial | None, str]:
        """Open the port (in an executor thread); find the baud rate if not given."""
        import serial

        rates: tuple[int, ...] = (self.baud,) if self.baud else AUTOBAUD_RATES
        if self.detected_baud and not self.baud:
            rates = (self.detected_baud, *[r for r in AUTOBAUD_RATES if r != self.detected_baud])
        for rate in rates:
            try:
                port = serial.Serial(self.path, rate, timeout=QUIET_FLUSH_S)
            except (OSError, ValueError) as exc:
                return None, f"cannot open serial device: {exc.__class__.__name__}"
            if self.baud or _speaks_nmea(port, self.probe_s):
                self.detected_baud = rate
                return port, ""
            port.close()
        return None, "no NMEA at any baud rate " + "/".join(str(r) for r in AUTOBAUD_RATES)

    async def _disconnect(self) -> None:
        port, self._port = self._port, None
        await close_blocking(port, self._pending)


def _close_opened(opening: asyncio.Future[tuple[serial.Serial | None, str]]) -> None:
    """Close a port whose opener finished after its caller was cancelled."""
    if opening.cancelled() or opening.exception() is not None:
        return
    port, _ = opening.result()
    if port is not None:
        port.close()


def _read_some(port: serial.Serial) -> bytes:
    """Whatever is waiting, or one byte within the port timeout (b"" when quiet)."""
    if not port.is_open:
        raise OSError("port closed")
    return bytes(port.read(max(1, port.in_waiting)))


def _speaks_nmea(port: serial.Serial, probe_s: float) -> bool:
    """True once a checksum-valid sentence arrives at the port's current rate.

    Bounded without a clock (this runs in a thread): at most `probe_s` worth
    of bytes at this baud rate (10 bits a byte), or `probe_s` of silent reads.
    """
    probe = NmeaAssembler(SourceKind.SERIAL)
    splitter = LineSplitter()
    byte_budget = int(port.baudrate / 10 * probe_s) + 1
    quiet_reads = int(probe_s / QUIET_FLUSH_S) + 1
    while byte_budget > 0 and quiet_reads > 0:
        try:
            chunk = port.read(max(1, port.in_waiting))
        except OSError:
            return False
        if not chunk:
            quiet_reads -= 1
            continue
        byte_budget -= len(chunk)
        for line in splitter.feed(chunk):
            probe.feed_line(line)
            if sum(probe.stats.sentences.values()) or probe.stats.parse_failures:
                return True
    return False
