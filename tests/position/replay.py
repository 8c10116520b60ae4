"""A fake receiver: replays a capture's sentences into a pty master or a socket."""

from __future__ import annotations

import asyncio
import os
import pty
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from tests.position.conftest import CORPUS
from tests.position.nmea_util import sentence


def capture_lines(name: str = "bu353s4.log") -> list[bytes]:
    """The capture's NMEA lines (header comments dropped), CRLF-terminated like a receiver."""
    raw = (CORPUS / name).read_bytes().splitlines()
    return [line.rstrip() + b"\r\n" for line in raw if line.strip() and not line.startswith(b"#")]


async def replay_once(write: Callable[[bytes], object], lines: list[bytes], pause: float) -> None:
    """Write the capture once, `pause` seconds between lines."""
    for line in lines:
        write(line)
        await asyncio.sleep(pause)


class PtyReceiver:
    """A receiver on a pseudo-terminal, reachable through a stable symlink (like by-path).

    `plug()` makes a fresh pty pair, points the symlink at its slave and starts
    replaying; `unplug()` stops, closes both ends and removes the symlink.
    """

    def __init__(self, link: Path, lines: list[bytes], pause: float = 0.002) -> None:
        self.link, self.lines, self.pause = link, lines, pause
        self._fds: tuple[int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def plug(self) -> None:
        master, slave = pty.openpty()
        os.set_blocking(master, False)
        self._fds = (master, slave)
        tmp = self.link.with_suffix(".new")
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self.link)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        # re-reads self.lines each round, so a test can change what the "receiver" says
        while True:
            await replay_once(self._write, self.lines, self.pause)

    def _write(self, line: bytes) -> None:
        assert self._fds is not None
        try:
            os.write(self._fds[0], line)
        except BlockingIOError:
            pass  # nobody reading: a real UART drops bytes too

    async def unplug(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None
        self.link.unlink(missing_ok=True)


def live_cycle(now: datetime, *, fix: bool = True) -> bytes:
    """One 'receiver' cycle stamped with `now` (GGA, GSA, RMC, GST), as a live unit sends it."""
    t = now.strftime("%H%M%S.") + f"{now.microsecond // 10000:02d}"
    d = now.strftime("%d%m%y")
    if fix:
        bodies = [
            f"GPGGA,{t},0442.6600,N,07404.3200,W,1,08,0.9,2600.0,M,4.0,M,,",
            "GPGSA,A,3,01,02,03,04,05,06,07,08,,,,,1.8,0.9,1.3",
            f"GPRMC,{t},A,0442.6600,N,07404.3200,W,0.5,90.0,{d},,,A",
            f"GPGST,{t},1.1,3.0,2.0,45.0,3.0,4.0,5.0",
        ]
    else:  # what receivers send with the antenna covered: empty fields, void status
        bodies = [
            f"GPGGA,{t},,,,,0,00,99.99,,,,,,",
            "GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99",
            f"GPRMC,{t},V,,,,,,,{d},,,N",
        ]
    return "".join(sentence(body) + "\r\n" for body in bodies).encode()
