"""Transport-wide congestion control (draft-holmer-rmcat-transport-wide-cc-extensions-01):
the header extension, its SDP, and the feedback message, as bytes.

A sender numbers every RTP packet it sends on the transport in one 16-bit
sequence (a one-byte header extension, RFC 8285); the receiver reports, every
50-100 ms, which of them arrived and when (RTCP RTPFB, FMT 15). That is the
per-packet arrival time GCC's delay controller works on, ten times a second
instead of once per receiver report.

aiortc 1.16 reads and writes the extension in its own packets but neither offers
it nor parses the feedback, so both ends are done here, on bytes: the publisher
(`rtcp_tap`) offers it, stamps its packets as they leave and reads the feedback;
the stub's ingest (`stub.ingest.feedback`) answers it and sends the feedback.
Pure functions, no aiortc import.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
RTPFB = 205
TRANSPORT_FEEDBACK_FMT = 15
DELTA_UNIT_US = 250
"""Receive deltas count quarter milliseconds."""
REFERENCE_UNIT_US = 64_000
"""The reference time counts 64 ms."""
MAX_STATUS_COUNT = 0xFFFF
_NOT_RECEIVED, _SMALL_DELTA, _LARGE_DELTA = 0, 1, 2
_RUN_MAX = 0x1FFF
_EXTMAP = re.compile(r"^a=extmap:(\d+)(?:/\w+)?\s+(\S+)")


class FeedbackError(ValueError):
    """A transport-wide feedback message that does not parse."""


# -- SDP -------------------------------------------------------------------------------------


def negotiated_id(sdp: str) -> int | None:
    """The id the first video section of `sdp` gives the transport-wide sequence number
    extension (None: not there)."""
    for line in _video_section(sdp.splitlines()):
        match = _EXTMAP.match(line)
        if match and match.group(2) == TRANSPORT_CC_URI:
            return int(match.group(1))
    return None


def add_transport_cc(sdp: str, extension_id: int | None = None) -> str:
    """`sdp` with the extension (under `extension_id`, or the lowest id the description
    leaves free: with BUNDLE one id space serves all sections) and `transport-cc`
    feedback for every payload type of its first video section; unchanged when it has
    one already or no video section."""
    lines = sdp.splitlines()
    if negotiated_id(sdp) is not None:
        return sdp
    used = {int(m.group(1)) for m in map(_EXTMAP.match, lines) if m}
    ident = extension_id
    if ident is None:
        ident = next((i for i in range(1, 15) if i not in used), None)
        if ident is None:
            return sdp  # every one-byte id taken
    start = next((i for i, line in enumerate(lines) if line.startswith("m=video ")), None)
    if start is None:
        return sdp
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("m=")), len(lines))
    payload_types = lines[start].split()[3:]
    section = lines[start:end]
    extmaps = [i for i, line in enumerate(section) if line.startswith("a=extmap:")]
    at = (extmaps[-1] if extmaps else len(section) - 1) + 1
    section.insert(at, f"a=extmap:{ident} {TRANSPORT_CC_URI}")
    for payload_type in payload_types:
        rtpmap = next(
            (i for i, line in enumerate(section) if line.startswith(f"a=rtpmap:{payload_type} ")),
            None,
        )
        if rtpmap is not None and not section[rtpmap].split()[1].lower().startswith("rtx/"):
            section.insert(rtpmap + 1, f"a=rtcp-fb:{payload_type} transport-cc")
    ending = "\r\n" if "\r\n" in sdp else "\n"
    return ending.join(lines[:start] + section + lines[end:]) + ending


def _video_section(lines: Sequence[str]) -> Iterator[str]:
    inside = False
    for line in lines:
        if line.startswith("m="):
            if inside:
                return
            inside = line.startswith("m=video ")
        elif inside:
            yield line


# -- the header extension --------------------------------------------------------------------


def read_sequence(data: bytes, extension_id: int) -> int | None:
    """The transport-wide sequence number of RTP packet `data` (None: it has none)."""
    found = find_extension(data, extension_id)
    if found is None or found[1] != 2:
        return None
    (value,) = struct.unpack_from("!H", data, found[0])
    return int(value)


def stamp_sequence(data: bytes, extension_id: int, sequence: int) -> bytes:
    """RTP packet `data` carrying transport-wide sequence number `sequence` under
    `extension_id`: set where it has the element, appended to its one-byte header
    extension (grown by a word where its padding has no room), or in a new one. A
    packet with a two-byte header extension (RFC 8285 0x100x) is returned as it is."""
    value = struct.pack("!H", sequence & 0xFFFF)
    found = find_extension(data, extension_id)
    if found is not None and found[1] == 2:
        return data[: found[0]] + value + data[found[0] + 2 :]
    if len(data) < 12:
        return data
    at = 12 + 4 * (data[0] & 0x0F)
    element = bytes([extension_id << 4 | 1]) + value
    if not data[0] & 0x10:
        block = struct.pack("!HH", 0xBEDE, 1) + element + b"\x00"
        return bytes([data[0] | 0x10]) + data[1:at] + block + data[at:]
    if len(data) < at + 4:
        return data
    profile, words = struct.unpack_from("!HH", data, at)
    if profile != 0xBEDE:
        return data
    start, end = at + 4, at + 4 + 4 * words
    used = _elements_end(data, start, end)
    body = data[start:used] + element
    padded = body + bytes(-len(body) % 4)
    header = data[:at] + struct.pack("!HH", 0xBEDE, len(padded) // 4)
    return header + padded + data[end:]


def _elements(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(id, value offset, value length) of each element of a one-byte extension block
    from `start` to `end`, padding skipped, up to an id of 15 (RFC 8285: stop)."""
    index = start
    while index < end:
        element = data[index]
        if element == 0:
            index += 1
            continue
        ident, length = element >> 4, (element & 0x0F) + 1
        if ident == 15:
            return
        yield ident, index + 1, length
        index += 1 + length


def _elements_end(data: bytes, start: int, end: int) -> int:
    """Where the elements of a one-byte extension block end (its padding after)."""
    ends = [offset + length for _, offset, length in _elements(data, start, end)]
    return min(ends[-1] if ends else start, end)


def find_extension(data: bytes, extension_id: int) -> tuple[int, int] | None:
    """(offset, length) of the value of element `extension_id` in the one-byte header
    extension block (RFC 8285) of RTP packet `data` (None: no such element)."""
    if len(data) < 12 or not data[0] & 0x10:
        return None
    at = 12 + 4 * (data[0] & 0x0F)
    if len(data) < at + 4:
        return None
    profile, words = struct.unpack_from("!HH", data, at)
    if profile != 0xBEDE:
        return None
    end = min(len(data), at + 4 + 4 * words)
    for ident, offset, length in _elements(data, at + 4, end):
        if ident == extension_id:
            return (offset, length) if offset + length <= end else None
    return None


# -- the feedback message --------------------------------------------------------------------


@dataclass(frozen=True)
class TransportFeedback:
    """One feedback message: packets `base_sequence`, `base_sequence + 1`, ... and when
    each arrived (microseconds on the receiver's clock, the origin its own; None: not
    received, or with the reserved status 3, no time given)."""

    sender_ssrc: int
    media_ssrc: int
    base_sequence: int
    feedback_count: int
    arrivals_us: tuple[int | None, ...]

    def received(self) -> Iterator[tuple[int, int | None]]:
        """(16-bit sequence number, arrival in µs or None) for every packet reported."""
        for offset, arrival in enumerate(self.arrivals_us):
            yield (self.base_sequence + offset) & 0xFFFF, arrival


def build_feedback(
    *,
    sender_ssrc: int,
    media_ssrc: int,
    base_sequence: int,
    feedback_count: int,
    arrivals_us: Sequence[int | None],
) -> bytes:
    """The RTCP packet reporting `arrivals_us` (µs, non-negative; None: not received)
    for packets from `base_sequence` on, at least one of them received. Each arrival may
    come before the one reported before it by up to 8 s (reordering), and after it by
    up to 8 s: ValueError past that (the caller starts a new message)."""
    first = next((arrival for arrival in arrivals_us if arrival is not None), None)
    if first is None:
        raise ValueError("a feedback message reports at least one received packet")
    if len(arrivals_us) > MAX_STATUS_COUNT:
        raise ValueError(f"at most {MAX_STATUS_COUNT} packets per feedback message")
    reference = first // REFERENCE_UNIT_US
    previous = reference * REFERENCE_UNIT_US
    symbols: list[int] = []
    deltas = bytearray()
    for arrival in arrivals_us:
        if arrival is None:
            symbols.append(_NOT_RECEIVED)
            continue
        delta = round((arrival - previous) / DELTA_UNIT_US)
        previous += delta * DELTA_UNIT_US
        if 0 <= delta <= 0xFF:
            symbols.append(_SMALL_DELTA)
            deltas.append(delta)
        elif -0x8000 <= delta <= 0x7FFF:
            symbols.append(_LARGE_DELTA)
            deltas += struct.pack("!h", delta)
        else:
            raise ValueError("an arrival more than 8 s from the one before it")
    body = struct.pack(
        "!IIHHI",
        sender_ssrc,
        media_ssrc,
        base_sequence & 0xFFFF,
        len(symbols),
        (reference & 0xFFFFFF) << 8 | feedback_count & 0xFF,
    )
    body += b"".join(struct.pack("!H", chunk) for chunk in _run_length_chunks(symbols))
    body += bytes(deltas)
    body += bytes(-len(body) % 4)
    header = struct.pack("!BBH", 0x80 | TRANSPORT_FEEDBACK_FMT, RTPFB, len(body) // 4)
    return header + body


def _run_length_chunks(symbols: Sequence[int]) -> Iterator[int]:
    """Run-length chunks (T = 0): two bytes per run of one status, any receiver parses it."""
    index = 0
    while index < len(symbols):
        symbol, run = symbols[index], 1
        while index + run < len(symbols) and symbols[index + run] == symbol and run < _RUN_MAX:
            run += 1
        yield symbol << 13 | run
        index += run


def parse_feedback(compound: bytes) -> list[TransportFeedback]:
    """The transport-wide feedback messages in an RTCP compound packet (the others are
    skipped). Raises FeedbackError for a feedback message that does not parse."""
    found: list[TransportFeedback] = []
    at = 0
    while at + 4 <= len(compound):
        first, packet_type, words = struct.unpack_from("!BBH", compound, at)
        end = at + 4 * (words + 1)
        if end > len(compound) or first >> 6 != 2:
            break  # not RTCP past here: aiortc's own parser says so
        if packet_type == RTPFB and first & 0x1F == TRANSPORT_FEEDBACK_FMT:
            # padding (P bit or not) follows the last delta and is never read: some
            # senders count it wrong (one in tests/video/test_twcc.py claims 3 octets, 1 is)
            found.append(_parse_body(compound[at + 4 : end]))
        at = end
    return found


def _parse_body(body: bytes) -> TransportFeedback:
    if len(body) < 16:
        raise FeedbackError(f"a transport-wide feedback of {len(body)} bytes, under 16")
    sender_ssrc, media_ssrc, base, count, reference_word = struct.unpack_from("!IIHHI", body)
    reference = reference_word >> 8
    if reference & 0x800000:
        reference -= 1 << 24
    symbols: list[int] = []
    at = 16
    while len(symbols) < count:
        if at + 2 > len(body):
            raise FeedbackError(f"packet chunks end after {len(symbols)} of {count} packets")
        (chunk,) = struct.unpack_from("!H", body, at)
        at += 2
        if not chunk & 0x8000:
            symbols += [chunk >> 13 & 0x3] * (chunk & _RUN_MAX)
        elif chunk & 0x4000:
            symbols += [chunk >> shift & 0x3 for shift in range(12, -1, -2)]
        else:
            symbols += [chunk >> shift & 0x1 for shift in range(13, -1, -1)]
    del symbols[count:]
    arrivals: list[int | None] = []
    time_us = reference * REFERENCE_UNIT_US
    for symbol in symbols:
        if symbol == _NOT_RECEIVED:
            arrivals.append(None)
            continue
        if symbol == _SMALL_DELTA:
            if at + 1 > len(body):
                raise FeedbackError("receive deltas end early")
            delta = body[at]
            at += 1
        elif symbol == _LARGE_DELTA:
            if at + 2 > len(body):
                raise FeedbackError("receive deltas end early")
            (delta,) = struct.unpack_from("!h", body, at)
            at += 2
        else:
            # reserved; some senders of it mean "received, no delta": no time either way
            arrivals.append(None)
            continue
        time_us += delta * DELTA_UNIT_US
        arrivals.append(time_us)
    return TransportFeedback(
        sender_ssrc=sender_ssrc,
        media_ssrc=media_ssrc,
        base_sequence=base,
        feedback_count=reference_word & 0xFF,
        arrivals_us=tuple(arrivals),
    )
