"""A synthetic source with a burned-in wall clock, drawn without numpy.

Each frame carries colour bars, a moving block (so motion is visible), the
time as text `HH:MM:SS.mmm #frame` for a human, and a 64-bit strip for a
machine: 41 bits of Unix milliseconds, 20 bits of frame counter and a 3-bit
check. `read_burned_clock()` reads the strip back from a decoded frame, which
is how glass-to-glass latency is measured. Drawing is bytes slicing on a
cached background: about a third of a millisecond a frame at 720p.

`detail="high"` replaces the flat luma of the bars with noise that jumps to
an unrelated position every frame: nothing for motion search to find, so the
encoder needs every bit it is given (a 720p30 stream fills a 2 Mbit/s cap,
where the flat pattern needs about 260 kbit/s). The noise is drawn once and
each frame is one slice of it, so drawing stays as cheap.
"""

from __future__ import annotations

import collections
import fractions
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from luxxon_agent.clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    import av

VIDEO_CLOCK_RATE = 90000
TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)

# 3x5 bitmap font, rows top to bottom, bit 2 = left column
_FONT: dict[str, tuple[int, ...]] = {
    "0": (7, 5, 5, 5, 7),
    "1": (2, 6, 2, 2, 7),
    "2": (7, 1, 7, 4, 7),
    "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1),
    "5": (7, 4, 7, 1, 7),
    "6": (7, 4, 7, 5, 7),
    "7": (7, 1, 1, 1, 1),
    "8": (7, 5, 7, 5, 7),
    "9": (7, 5, 7, 1, 7),
    ":": (0, 2, 0, 2, 0),
    ".": (0, 0, 0, 0, 2),
    "#": (5, 7, 5, 7, 5),
    " ": (0, 0, 0, 0, 0),
}
# BT.601 limited-range Y, U, V of white, yellow, cyan, green, magenta, red, blue, black
_BARS = (
    (235, 128, 128),
    (210, 16, 146),
    (170, 166, 16),
    (145, 54, 34),
    (106, 202, 222),
    (81, 90, 240),
    (41, 240, 110),
    (16, 128, 128),
)
_BITS = 64
_MS_BITS = 41
_COUNTER_BITS = 20
_Y_ONE, _Y_ZERO = 235, 16
DETAILS = ("low", "high")
_NOISE_LOW, _NOISE_HIGH = 48, 208
"""Noise luma range: wide enough to cost bits at any QP, clear of the strip's 16/235."""
_NOISE_SEED = 11
_LADDER_SCALES = (0.75, 0.5, 0.25)
"""The picture sizes the publisher's ladder scales to (video/ladder.py RUNGS)."""


def _strip_block(width: int, height: int) -> int:
    """Side of one strip bit: 32 bits a row, two rows, in the top-left corner."""
    return max(4, (min(width // 40, height // 24)) & ~1)


def _pack(ms: int, counter: int) -> int:
    value = ((ms & ((1 << _MS_BITS) - 1)) << _COUNTER_BITS) | (counter % (1 << _COUNTER_BITS))
    check = bin(value).count("1") % 8
    return (value << 3) | check


def _unpack(word: int) -> tuple[int, int] | None:
    value, check = word >> 3, word & 7
    if bin(value).count("1") % 8 != check:
        return None
    return value >> _COUNTER_BITS, value & ((1 << _COUNTER_BITS) - 1)


@dataclass
class _Canvas:
    """Cached background planes for one size and stride."""

    width: int
    height: int
    strides: tuple[int, int, int]
    planes: tuple[bytes, bytes, bytes] = field(repr=False)


def _background(width: int, height: int, strides: tuple[int, int, int]) -> _Canvas:
    planes: list[bytes] = []
    for index, stride in enumerate(strides):
        w = width if index == 0 else width // 2
        h = height if index == 0 else height // 2
        row = bytearray()
        for bar, colour in enumerate(_BARS):
            start = bar * w // len(_BARS)
            end = (bar + 1) * w // len(_BARS)
            row += bytes([colour[index]]) * (end - start)
        row += bytes(stride - len(row))
        plane = bytearray(row * h)
        if index:
            # the strip's chroma is neutral grey whatever the frame shows, so draw it once
            block = _strip_block(width, height)
            _fill(plane, stride, 0, 0, block * 16, block, 128)
        planes.append(bytes(plane))
    return _Canvas(width, height, strides, (planes[0], planes[1], planes[2]))


def _fill(plane: bytearray, stride: int, x: int, y: int, w: int, h: int, value: int) -> None:
    run = bytes([value]) * w
    for row in range(y, y + h):
        offset = row * stride + x
        plane[offset : offset + w] = run


class TestPattern:
    """Draws numbered frames: `frame(counter, now)` returns an `av.VideoFrame` (yuv420p)."""

    __test__ = False  # not a pytest class

    def __init__(self, width: int, height: int, *, detail: str = "low") -> None:
        if width % 2 or height % 2 or width < 160 or height < 120:
            raise ValueError("testsrc size must be even and at least 160x120")
        if detail not in DETAILS:
            raise ValueError(f"testsrc detail must be one of {', '.join(DETAILS)}, got {detail!r}")
        self.width = width
        self.height = height
        self.detail = detail
        self._block = _strip_block(width, height)
        self._canvas: _Canvas | None = None
        self._noise = b""
        self._jumps = random.Random(_NOISE_SEED)

    def frame(self, counter: int, now: datetime) -> av.VideoFrame:
        import av

        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        strides = (
            frame.planes[0].line_size,
            frame.planes[1].line_size,
            frame.planes[2].line_size,
        )
        if self._canvas is None or self._canvas.strides != strides:
            self._canvas = _background(self.width, self.height, strides)
        y_plane = bytearray(self._luma(self._canvas.planes[0]))
        u_plane = bytearray(self._canvas.planes[1])
        v_plane = bytearray(self._canvas.planes[2])
        ys, cs = strides[0], strides[1]

        # a block sweeping left to right, one pass every 4 seconds at 30 fps
        side = (self.height // 6) & ~1
        x = ((counter * 8) % max(2, self.width - side)) & ~1
        y = (self.height // 2) & ~1
        _fill(y_plane, ys, x, y, side, side, 235)
        _fill(u_plane, cs, x // 2, y // 2, side // 2, side // 2, 128)
        _fill(v_plane, cs, x // 2, y // 2, side // 2, side // 2, 128)

        ms = int(now.timestamp() * 1000)
        self._draw_strip(y_plane, ys, _pack(ms, counter))
        text = now.astimezone(UTC).strftime("%H:%M:%S.") + f"{now.microsecond // 1000:03d}"
        self._draw_text(y_plane, u_plane, v_plane, ys, cs, f"{text} #{counter}")

        # PyAV takes any buffer; its stub says bytes, and a copy would cost a frame's worth
        frame.planes[0].update(y_plane)  # type: ignore[arg-type]
        frame.planes[1].update(u_plane)  # type: ignore[arg-type]
        frame.planes[2].update(v_plane)  # type: ignore[arg-type]
        return frame

    def _luma(self, background: bytes) -> bytes:
        """The background's luma, or with detail="high" a fresh slice of noise."""
        if self.detail == "low":
            return background
        size = len(background)
        if len(self._noise) != size + size // 2:
            # half a plane of slack: each frame starts at a random offset within it
            table = bytes(
                _NOISE_LOW + value * (_NOISE_HIGH - _NOISE_LOW) // 255 for value in range(256)
            )
            self._noise = random.Random(_NOISE_SEED).randbytes(size + size // 2).translate(table)
        offset = self._jumps.randrange(len(self._noise) - size)
        return self._noise[offset : offset + size]

    def _draw_strip(self, yp: bytearray, ys: int, word: int) -> None:
        block = self._block
        one, zero = bytes([_Y_ONE]) * block, bytes([_Y_ZERO]) * block
        for strip_row in range(2):
            bits = range(strip_row * 32, strip_row * 32 + 32)
            row = b"".join(one if (word >> (_BITS - 1 - b)) & 1 else zero for b in bits)
            for y in range(strip_row * block, (strip_row + 1) * block):
                yp[y * ys : y * ys + len(row)] = row

    def _draw_text(
        self, yp: bytearray, up: bytearray, vp: bytearray, ys: int, cs: int, text: str
    ) -> None:
        scale = max(2, (self.height // 90) & ~1)
        top = 2 * self._block + scale
        chars = text[: max(0, self.width // (4 * scale) - 1)]
        box_w = ((len(chars) + 1) * 4 * scale) & ~1
        box_h = 7 * scale
        _fill(up, cs, 0, top // 2, box_w // 2, box_h // 2, 128)
        _fill(vp, cs, 0, top // 2, box_w // 2, box_h // 2, 128)
        on, off = bytes([235]) * scale, bytes([16]) * scale
        blank = bytes([16]) * box_w
        for y in range(top, top + scale):
            yp[y * ys : y * ys + box_w] = blank
        for font_row in range(5):
            cells = [off]
            for char in chars:
                bits = _FONT.get(char, _FONT[" "])[font_row]
                cells += [
                    on if bits & 4 else off,
                    on if bits & 2 else off,
                    on if bits & 1 else off,
                    off,
                ]
            row = b"".join(cells).ljust(box_w, b"\x10")[:box_w]
            y0 = top + scale + font_row * scale
            for y in range(y0, y0 + scale):
                yp[y * ys : y * ys + box_w] = row
        for y in range(top + 6 * scale, top + box_h):
            yp[y * ys : y * ys + box_w] = blank


def read_burned_clock(frame: av.VideoFrame) -> tuple[datetime, int] | None:
    """(capture time, frame counter) from a testsrc frame's strip, or None if unreadable.

    The frame may be the pattern scaled down by the publisher's ladder (3/4, 1/2,
    1/4): when the strip does not read at the frame's own size, those scales are
    tried too.
    """
    if frame.format.name not in ("yuv420p", "yuvj420p"):
        frame = frame.reformat(format="yuv420p")
    plane = frame.planes[0]
    data = bytes(plane)
    stride = plane.line_size

    def read(block: float) -> tuple[int, int] | None:
        if 64 * block > frame.width * 2 or 2 * block > frame.height:
            return None
        word = 0
        for bit in range(_BITS):
            cx = int((bit % 32) * block + block / 2)
            cy = int((bit // 32) * block + block / 2)
            word = (word << 1) | (1 if data[cy * stride + cx] > 125 else 0)
        return _unpack(word)

    own = read(_strip_block(frame.width, frame.height))
    # the 3-bit check passes a misread one time in eight: the reading most sizes agree on
    # wins, the frame's own size on a tie
    votes = collections.Counter(
        reading
        for scale in _LADDER_SCALES
        if (
            reading := read(
                _strip_block(int(frame.width / scale), int(frame.height / scale)) * scale
            )
        )
        is not None
    )
    if own is not None:
        votes[own] += 1
    if not votes:
        return None
    best, count = votes.most_common(1)[0]
    unpacked = own if own is not None and votes[own] >= count else best
    ms, counter = unpacked
    return datetime.fromtimestamp(ms / 1000, UTC), counter


class TestSource:
    """The `testsrc://` source: frames paced at `fps` by the injected clock."""

    __test__ = False

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        clock: Clock = SYSTEM_CLOCK,
        *,
        detail: str = "low",
    ) -> None:
        if fps <= 0 or fps > 120:
            raise ValueError("testsrc fps must be in (0, 120]")
        self.pattern = TestPattern(width, height, detail=detail)
        self.fps = fps
        self.clock = clock
        self.counter = 0
        self._origin: float | None = None

    async def next_frame(self) -> av.VideoFrame:
        """The next frame, not before its due time; late callers get it at once."""
        if self._origin is None:
            self._origin = self.clock.monotonic()
        due = self._origin + self.counter / self.fps
        wait = due - self.clock.monotonic()
        if wait > 0:
            await self.clock.sleep(wait)
        elif wait < -1.0:
            # far behind (a slow encoder, a suspended process): skip ahead, keep cadence
            self._origin = self.clock.monotonic() - self.counter / self.fps
        frame = self.pattern.frame(self.counter, self.clock.now())
        frame.pts = int(self.counter * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = TIME_BASE
        self.counter += 1
        return frame
