"""`LineSplitter`: bytes from a serial port or socket -> whole lines, bounded."""

from __future__ import annotations

MAX_LINE_BYTES = 1024
"""NMEA allows 82 characters; anything this long without a newline is noise."""


class LineSplitter:
    """Buffers partial lines between reads; drops runaway lines instead of growing."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer.extend(chunk)
        *lines, rest = self._buffer.split(b"\n")
        self._buffer = bytearray(rest)
        if len(self._buffer) > MAX_LINE_BYTES:
            self._buffer.clear()
        return [bytes(line) for line in lines]

    def clear(self) -> None:
        """Forget a partial line (the device went away mid-sentence)."""
        self._buffer.clear()
