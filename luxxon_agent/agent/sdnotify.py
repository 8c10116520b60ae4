"""sd_notify over a plain datagram socket: READY=1, STATUS=, WATCHDOG=1, STOPPING=1.

No libsystemd: the protocol is one datagram of newline-separated `KEY=VALUE`
lines to the AF_UNIX socket named by `$NOTIFY_SOCKET` (a path, or `@name` for
the abstract namespace). Without `$NOTIFY_SOCKET` every call is a no-op, so
the agent runs the same outside systemd.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)


class SdNotifier:
    """Sends sd_notify messages; `watchdog_interval` says how often WATCHDOG=1 is due."""

    def __init__(self, env: Mapping[str, str], pid: int | None = None) -> None:
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_usec = _watchdog_usec(env, os.getpid() if pid is None else pid)
        self._sock: socket.socket | None = None
        self._last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises."""
        if self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2_000_000

    def notify(self, *lines: str) -> bool:
        """Send one datagram; False (and a debug log) when it could not be sent."""
        if self._address is None:
            return False
        payload = "\n".join(lines).encode("utf-8")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(payload, self._address)
        except OSError as exc:
            # systemd gone or the socket full: the watchdog will notice, nothing to do here
            logger.debug("sd_notify failed: %s", exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        self._last_status = status
        return self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        """STATUS=, sent only when the text changed."""
        if status == self._last_status:
            return True
        self._last_status = status
        return self.notify(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str) -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _socket_address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode("utf-8")
    if value.startswith("/"):
        return value
    logger.warning("NOTIFY_SOCKET %r is neither a path nor @abstract: ignored", value)
    return None


def _watchdog_usec(env: Mapping[str, str], pid: int) -> int | None:
    raw = env.get("WATCHDOG_USEC", "")
    if not raw.isdigit() or int(raw) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner.isdigit() and int(owner) != pid:
        return None  # meant for another process (we were forked by the one it names)
    return int(raw)
