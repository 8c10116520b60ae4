"""Transport-wide congestion control feedback from the ingest to a publisher.

When a publisher offers the transport-wide sequence number extension
(`luxxon_agent.video.twcc`), the ingest answers it, notes when each numbered
packet arrives, and every FEEDBACK_INTERVAL_S reports those arrivals (RTCP
RTPFB, FMT 15), as libwebrtc's receivers do. aiortc does neither, so this wraps
one instance method of the connection's DTLS transport, `_handle_rtp_data`
(every decrypted RTP packet, before aiortc parses it), and sends through its
`_send_rtp` (SRTCP-protected there).
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from typing import Any

from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.video import twcc

logger = logging.getLogger(__name__)

FEEDBACK_INTERVAL_S = 0.1
"""libwebrtc's default: ten reports a second, each about 100 ms of packets."""
MAX_PENDING = 4096
"""Arrivals held between reports; past this (a report that could not go out) the oldest
are dropped: the sender counts unreported packets as neither arrived nor lost."""


class FeedbackSender:
    """Reports the arrivals of one publisher connection's transport-wide numbered packets.

    `attach()` once the connection's transport exists (after the offer is set), then run
    `run()` as one of the connection's tasks; it ends when cancelled.
    """

    def __init__(self, transport: Any, extension_id: int, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._transport = transport
        self._extension_id = extension_id
        self._clock = clock
        self._original: Any = None
        self._ssrc = random.getrandbits(32)
        self._media_ssrc: int | None = None
        self._arrivals: dict[int, int] = {}
        """Unwrapped sequence number -> arrival (µs, monotonic), not yet reported."""
        self._highest: int | None = None
        self._next_base: int | None = None
        self._count = 0
        self.reports_sent = 0

    def attach(self) -> None:
        if self._original is not None:
            return
        self._original = self._transport._handle_rtp_data
        self._transport._handle_rtp_data = self._handle_rtp_data

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        self._note(data)
        await self._original(data, arrival_time_ms)

    def _note(self, data: bytes) -> None:
        sequence = twcc.read_sequence(data, self._extension_id)
        if sequence is None:
            return
        if self._media_ssrc is None:
            (self._media_ssrc,) = struct.unpack_from("!I", data, 8)
        unwrapped = self._unwrap(sequence)
        if self._next_base is not None and unwrapped < self._next_base:
            return  # arrived after its report said lost: too late to count
        self._arrivals[unwrapped] = int(self._clock.monotonic() * 1_000_000)
        if len(self._arrivals) > MAX_PENDING:
            self._arrivals.pop(min(self._arrivals))

    def _unwrap(self, sequence: int) -> int:
        if self._highest is None:
            self._highest = sequence
            return sequence
        delta = (sequence - self._highest) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000
        unwrapped = self._highest + delta
        self._highest = max(self._highest, unwrapped)
        return unwrapped

    async def run(self) -> None:
        """Send a report every FEEDBACK_INTERVAL_S while there are arrivals to report."""
        while True:
            await asyncio.sleep(FEEDBACK_INTERVAL_S)
            report = self.take_report()
            if report is None or getattr(self._transport, "state", None) != "connected":
                continue
            try:
                await self._transport._send_rtp(report)
            except ConnectionError as exc:
                logger.debug("transport-wide feedback not sent: %s", exc)
                continue
            self.reports_sent += 1

    def take_report(self) -> bytes | None:
        """The next feedback message, for the arrivals since the last one (None: none)."""
        if not self._arrivals or self._media_ssrc is None:
            return None
        base = min(self._arrivals) if self._next_base is None else self._next_base
        end = min(max(self._arrivals), base + twcc.MAX_STATUS_COUNT - 1)
        arrivals = [self._arrivals.pop(sequence, None) for sequence in range(base, end + 1)]
        self._next_base = end + 1
        try:
            report = twcc.build_feedback(
                sender_ssrc=self._ssrc,
                media_ssrc=self._media_ssrc,
                base_sequence=base,
                feedback_count=self._count,
                arrivals_us=arrivals,
            )
        except ValueError as exc:
            # a packet held for over 8 s between two arrivals: report from the next one on
            logger.debug("transport-wide feedback skipped: %s", exc)
            return None
        self._count = (self._count + 1) & 0xFF
        return report
