"""The one place that reaches into aiortc for congestion control: RTCP in, RTP out.

aiortc has no public hook for what a sender hears or sends, so `RtcpTap`
wraps three attributes on the *instances* it is given (never the classes):

- `RTCRtpSender._handle_rtcp_packet(packet)`: every RTCP packet routed to this
  sender (`RTCDtlsTransport._handle_rtcp_data` calls it). Report blocks about
  our SSRC, REMB, NACK and PLI/FIR are read here; a PLI/FIR beyond the
  keyframe rate limit is not passed on.
- `RTCRtpSender._retransmit(seq)`: one NACKed packet. Beyond the
  retransmission budget it is not called.
- `RTCDtlsTransport._send_rtp(data)`: every plaintext RTP/RTCP packet before
  SRTP, shared by all senders of the transport; packets of our SSRC (media),
  `_rtx_ssrc` (retransmissions) and our sender reports (their NTP time makes
  the RTT) are counted, the rest passed through untouched. Enforcing, our RTP
  is paced, and after a repair a media packet leaves one number ahead, its
  filler behind it (a recheck).

`_ssrc` and `_rtx_ssrc` are read too. `attach()` checks all of them first and
raises `AiortcChangedError` naming the missing one; tests/video/test_rtcp_tap.py
pins them against the installed aiortc.

- `RTCDtlsTransport._handle_rtcp_data(data)`: every decrypted RTCP compound
  packet, before aiortc parses it: transport-wide feedback is read here, as
  bytes (aiortc's `RtcpRtpfbPacket` reads every FCI as a NACK list).

Transport-wide congestion control: aiortc 1.16 neither offers the transport-wide
sequence number extension nor stamps it nor parses its feedback. Where the
server's answer accepts our offer of it (`connection.py` adds it, `twcc.py`),
`use_transport_cc(id)` makes the tap number every packet of ours as it leaves
(after the pacer) and feed each feedback message, matched to our send times, to
the estimator's `on_transport_feedback`.

In observe-only mode (`enforce=False`) nothing is dropped: the estimate is
computed and reported, aiortc behaves as without the tap.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from luxxon_agent.clock import SYSTEM_CLOCK, Clock
from luxxon_agent.video import twcc
from luxxon_agent.video.bandwidth import (
    WIRE_OVERHEAD_BYTES,
    BandwidthEstimator,
    BandwidthSnapshot,
    KeyframeLimiter,
    PacketResult,
    RateState,
    RetransmissionBudget,
)
from luxxon_agent.video.pacer import Pacer
from luxxon_agent.video.stats import RepairCounts

logger = logging.getLogger(__name__)

SENDER_SEAMS = ("_handle_rtcp_packet", "_retransmit", "_ssrc", "_rtx_ssrc", "transport")
TRANSPORT_SEAMS = ("_send_rtp", "_handle_rtcp_data")
MIN_CHANGE = 0.05
"""Estimate changes smaller than this share are not announced (except back-offs)."""
_RTCP_SR = 200
_RTCP_PSFB_APP = 15
_RTCP_PSFB_PLI = 1
_RTCP_PSFB_FIR = 4
_RTCP_RTPFB_NACK = 1
_HISTORY = 4096
_FULL_PACKET = 1200
SEQUENCE_JUMP = 2048
"""Sequence numbers skipped at a keyframe after a hole that will never be repaired.

A receiver that waits for every packet (aiortc's video jitter buffer holds 512)
freezes until that many packets have passed a hole: 20 s and more at the packet
rate of a narrow link. A jump of more than twice that flushes it at once; any
receiver sees a burst loss just before a keyframe, which it needs no repair for.
"""
_NAL_IDR, _NAL_SPS, _NAL_STAP_A, _NAL_FU_A = 5, 7, 24, 28
RTX_PAYLOAD_TYPE_SEAM = "_RTCRtpSender__rtx_payload_type"
"""aiortc keeps the negotiated RTX payload type in a name-mangled private (None: no RTX)."""
EXTENSIONS_MAP_SEAMS = ("_RTCRtpSender__rtp_header_extensions_map", "_HeaderExtensionsMap__ids")
"""Where aiortc keeps the negotiated header extension ids (name-mangled privates)."""
MAX_DRAIN_S = 0.3
"""How long media is held after a collapse for the bottleneck's queue to drain (a tbf
queue of 200 ms; deeper queues keep some of the old packets)."""
REPAIR_LOSS_WINDOW_S = 4.0
"""RTX loss this soon after a retransmission may be that retransmission: the receiver
counts a lost RTX packet only when a later one (another repair, padding) arrives, and
says so in its next report, up to 1.5 s later. Measured: a drop phase's last repairs went
out at 90.3 s, the padding that revealed their loss from 91.0 s, no repair in between,
and the picture froze 5.1 s (a window of one report interval missed it)."""
PADDING_BYTES = 255
"""RTP padding is counted in one octet: a padding-only packet carries at most 255."""
RECHECK_WAIT_S = 0.2
"""A repair with no recheck after it for this long (no new media packet to make one) is
flushed when the receiver reports RTX loss: the next media packet normally comes within a
frame interval (67 ms at 15 fps)."""
FILLER_HISTORY = 64
"""Fillers (see `_send_rtp`) kept to send again when a receiver asks for one."""


class AiortcChangedError(RuntimeError):
    """The installed aiortc lacks an internal attribute the tap relies on."""


def abs_send_time_id(sender: Any) -> int | None:
    """The abs-send-time extension id negotiated for this sender (None: not negotiated)."""
    ids: Any = sender
    for name in EXTENSIONS_MAP_SEAMS:
        ids = getattr(ids, name, None)
    value = getattr(ids, "abs_send_time", None)
    return value if isinstance(value, int) and 0 < value < 15 else None


def restamp_abs_send_time(data: bytes, extension_id: int, now_s: float) -> bytes:
    """The RTP packet `data` with its abs-send-time (one-byte header extension
    `extension_id`, 6.18 fixed-point seconds) set to `now_s`; unchanged without one. As
    libwebrtc's pacer does: the stamp says when the packet left, not when it was made."""
    found = twcc.find_extension(data, extension_id)
    if found is None or found[1] != 3:
        return data
    stamp = (int(now_s * (1 << 18)) & 0xFFFFFF).to_bytes(3, "big")
    return data[: found[0]] + stamp + data[found[0] + 3 :]


def media_local_address(sender: Any) -> str | None:
    """The local IP address of the ICE pair this sender's media uses, or None before one
    is nominated (aioice `Connection._nominated`: private, read only here)."""
    connection = getattr(sender.transport.transport, "_connection", None)
    nominated = getattr(connection, "_nominated", None)
    if not nominated:
        return None
    pair = next(iter(nominated.values()))
    return str(pair.local_candidate.host)


class RtcpTap:
    """Feeds a `BandwidthEstimator` from one aiortc `RTCRtpSender` and reports changes.

    Call `attach()` once the sender exists (before or after it starts), `detach()`
    when done; `async with` does both. One estimator may serve the taps of
    successive connections: the estimate carries over a reconnect.
    """

    def __init__(
        self,
        sender: Any,
        estimator: BandwidthEstimator,
        *,
        enforce: bool = True,
        retransmission_budget: RetransmissionBudget | None = None,
        keyframe_limiter: KeyframeLimiter | None = None,
        on_change: Callable[[BandwidthSnapshot], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.sender = sender
        self.estimator = estimator
        self.enforce = enforce
        self.budget = retransmission_budget or RetransmissionBudget(clock=clock)
        self.keyframes = keyframe_limiter or KeyframeLimiter(clock=clock)
        self._listeners: list[Callable[[BandwidthSnapshot], None]] = []
        if on_change is not None:
            self._listeners.append(on_change)
        self._transport: Any = None
        self._originals: dict[str, Any] = {}
        self._sizes: dict[int, int] = {}
        self._retransmitting = False
        self._announced: BandwidthSnapshot | None = None
        self._changed = asyncio.Event()
        self.receiver_reports = 0
        self.nacks = 0
        self.keyframe_requests = 0
        self.keyframe_requests_dropped = 0
        self.retransmissions_dropped = 0
        self._held_until: float | None = None
        """When the last collapse's hold of our media ended (monotonic)."""
        self.repairs_unavailable = 0
        """NACKed packets aiortc no longer had to send again."""
        self._repairs_sent = 0
        self.sequence_jumps = 0
        self._rtx_lost: int | None = None
        """The receiver's cumulative loss on our RTX stream at its last report."""
        self._last_repair_at: float | None = None
        """When the last retransmission went out (monotonic)."""
        self._recheck_due_at: float | None = None
        """When the first repair since the last recheck went out (see `_send_rtp`)."""
        self._fillers: dict[int, bytes] = {}
        """Recheck fillers by wire sequence number, the last FILLER_HISTORY."""
        self.rechecks = 0
        self._clock = clock
        self._offset = 0
        self._jump_pending = False
        self._holes_dealt_with = 0
        """`holes_left` when a keyframe was last asked for or seen (`keyframe_for_holes`)."""
        self._out_of: dict[int, int] = {}
        """Sequence number as aiortc numbered a packet -> as it went on the wire."""
        self._in_of: dict[int, int] = {}
        self._rtx_sequence = random.getrandbits(16)
        """The RTX stream is numbered here, so padding and retransmissions share it."""
        self._last_timestamp = 0
        self.wanted_bps: Callable[[], float] = lambda: 0.0
        """Set by the publisher: what its sender would send (wire bit/s) if the link
        allowed, 0 when it is not held back; only then is the link probed with padding."""
        self.pacer = Pacer(self._transmit, make_padding=self._padding_packet, clock=clock)
        self._collapse_listeners: list[Callable[[BandwidthSnapshot], None]] = []
        self._transport_cc_id: int | None = None
        """The negotiated transport-wide sequence number extension id (None: not in use)."""
        self._transport_sequence = 0
        self._transport_sent: dict[int, tuple[float, int]] = {}
        """Transport-wide sequence number -> (when it left, wire bytes), until reported."""
        self.transport_feedbacks = 0
        self.transport_feedback_errors = 0

    # -- lifecycle -------------------------------------------------------------------------

    def attach(self) -> None:
        if self._originals:
            return
        for name in SENDER_SEAMS:
            if not hasattr(self.sender, name):
                raise AiortcChangedError(f"aiortc's RTCRtpSender has no {name} any more")
        transport = self.sender.transport
        for name in TRANSPORT_SEAMS:
            if not hasattr(transport, name):
                raise AiortcChangedError(f"aiortc's RTCDtlsTransport has no {name} any more")
        self._transport = transport
        self.estimator.restart_stream()
        self._originals = {
            "_handle_rtcp_packet": self.sender._handle_rtcp_packet,
            "_retransmit": self.sender._retransmit,
            "_send_rtp": transport._send_rtp,
            "_handle_rtcp_data": transport._handle_rtcp_data,
        }
        self.sender._handle_rtcp_packet = self._handle_rtcp_packet
        self.sender._retransmit = self._retransmit
        transport._send_rtp = self._send_rtp
        transport._handle_rtcp_data = self._handle_rtcp_data
        if self.enforce:
            self.pacer.set_estimate(self.estimator.estimate_bps)
            self.pacer.start()

    def detach(self) -> None:
        """Put aiortc's own methods back (where they are still ours to replace)."""
        self.pacer.padding_bps = 0.0
        self._close_pacer()
        originals, self._originals = self._originals, {}
        if not originals:
            return
        if self.sender._handle_rtcp_packet == self._handle_rtcp_packet:
            self.sender._handle_rtcp_packet = originals["_handle_rtcp_packet"]
        if self.sender._retransmit == self._retransmit:
            self.sender._retransmit = originals["_retransmit"]
        if self._transport._send_rtp == self._send_rtp:
            self._transport._send_rtp = originals["_send_rtp"]
        if self._transport._handle_rtcp_data == self._handle_rtcp_data:
            self._transport._handle_rtcp_data = originals["_handle_rtcp_data"]
        self._changed.set()

    def _close_pacer(self) -> None:
        task = self.pacer.close()
        try:
            asyncio.get_running_loop().create_task(task)
        except RuntimeError:
            task.close()  # no loop left: the padding task went with it

    async def __aenter__(self) -> RtcpTap:
        self.attach()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.detach()

    # -- what the publisher reads ----------------------------------------------------------

    def snapshot(self) -> BandwidthSnapshot:
        return self.estimator.snapshot()

    def use_transport_cc(self, extension_id: int | None) -> None:
        """Number our packets with the transport-wide sequence number extension under
        `extension_id` (what the answer accepted; None: it did not) and read its feedback."""
        self._transport_cc_id = extension_id

    @property
    def transport_cc(self) -> bool:
        """Whether transport-wide congestion control is in use on this connection."""
        return self._transport_cc_id is not None

    def request_jump(self) -> None:
        """Skip SEQUENCE_JUMP sequence numbers at the next H.264 keyframe (see there)."""
        self._jump_pending = True

    def on_change(self, listener: Callable[[BandwidthSnapshot], None]) -> None:
        """Call `listener(snapshot)` when the estimate moves by MIN_CHANGE or backs off."""
        self._listeners.append(listener)

    async def changes(self) -> AsyncIterator[BandwidthSnapshot]:
        """The estimate as it changes, latest first (a slow reader skips stale ones);
        ends after `detach()`."""
        while self._originals:
            await self._changed.wait()
            self._changed.clear()
            if self._announced is not None and self._originals:
                yield self._announced

    # -- the seams -------------------------------------------------------------------------

    async def _handle_rtcp_data(self, data: bytes) -> None:
        if self._transport_cc_id is not None:
            try:
                feedbacks = twcc.parse_feedback(data)
            except twcc.FeedbackError as exc:
                self.transport_feedback_errors += 1
                logger.debug("transport-wide feedback ignored: %s", exc)
                feedbacks = []
            for feedback in feedbacks:
                self._take_transport_feedback(feedback)
            if feedbacks:
                self._announce_if_changed()
                self._steer_pacer()
        await self._originals["_handle_rtcp_data"](data)

    def _take_transport_feedback(self, feedback: twcc.TransportFeedback) -> None:
        """Match one feedback message to our send times and hand it to the estimator."""
        results: list[PacketResult] = []
        for sequence, arrival_us in feedback.received():
            sent = self._transport_sent.pop(sequence, None)
            if sent is None:
                continue  # not ours, or reported already
            received_at = None if arrival_us is None else arrival_us / 1_000_000
            results.append(PacketResult(sent_at=sent[0], size=sent[1], received_at=received_at))
        self.transport_feedbacks += 1
        self.estimator.on_transport_feedback(results)

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        forward = self._observe_rtcp(packet)
        self._announce_if_changed()
        self._steer_pacer()
        if forward:
            await self._originals["_handle_rtcp_packet"](packet)

    def _observe_rtcp(self, packet: Any) -> bool:
        """Feed the estimator from one RTCP packet; False when it must not reach aiortc."""
        from aiortc.rtp import (
            RtcpPsfbPacket,
            RtcpRrPacket,
            RtcpRtpfbPacket,
            RtcpSrPacket,
            unpack_remb_fci,
        )

        ssrc, rtx_ssrc = self.sender._ssrc, self.sender._rtx_ssrc
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            # the RTX block first: the media block updates the estimate with both
            for report in sorted(packet.reports, key=lambda block: block.ssrc != rtx_ssrc):
                if report.ssrc == rtx_ssrc:
                    self._check_repairs(report.packets_lost)
                    self.estimator.on_rtx_report(
                        packets_lost=report.packets_lost,
                        highest_sequence=report.highest_sequence,
                    )
                elif report.ssrc == ssrc:
                    self.receiver_reports += 1
                    self.estimator.on_receiver_report(
                        fraction_lost=report.fraction_lost,
                        packets_lost=report.packets_lost,
                        highest_sequence=report.highest_sequence,
                        jitter=report.jitter,
                        lsr=report.lsr,
                        dlsr=report.dlsr,
                    )
        elif isinstance(packet, RtcpPsfbPacket):
            if packet.fmt == _RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    return True
                if ssrc in ssrcs:
                    self.estimator.on_remb(bitrate)
            elif packet.fmt in (_RTCP_PSFB_PLI, _RTCP_PSFB_FIR):
                self.keyframe_requests += 1
                if not self.keyframes.allow() and self.enforce:
                    self.keyframe_requests_dropped += 1
                    return False
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == _RTCP_RTPFB_NACK:
            self.nacks += len(packet.lost)
        return True

    async def _retransmit(self, sequence_number: int) -> None:
        key = sequence_number & 0xFFFF
        filler = self._fillers.get(key)
        if filler is not None:
            # asked for before it arrived, most of the time; a few bytes, and a lost one is
            # a hole the receiver's jitter buffer waits at
            await self.pacer.send(filler)
            return
        # before any jump, a packet we did not see (sent before attach) kept its number
        original_number = self._in_of.get(key, None if self.sequence_jumps else key)
        if original_number is None:
            return  # from before a sequence jump: the receiver flushed it
        if self.enforce:
            # a packet sent before attach() is not in our sizes: count a full one
            size = self._sizes.get(key, _FULL_PACKET)
            # what arrived bounds the budget too: right after a step down the estimate is stale
            snapshot = self.estimator.snapshot()
            basis = min(snapshot.estimate_bps, snapshot.receive_bps or snapshot.estimate_bps)
            if not self.budget.allow(size, basis, delay_flat=snapshot.delay_flat, seq=key):
                self.retransmissions_dropped += 1
                # the next keyframe flushes the hole (a ladder step's, often within the
                # second: the publisher's loop, which also asks for one, runs once a second)
                self.request_jump()
                return
        original: Callable[[int], Awaitable[None]] = self._originals["_retransmit"]
        self._retransmitting = True
        sent_before = self._repairs_sent
        try:
            await original(original_number)
        finally:
            self._retransmitting = False
        if self._repairs_sent == sent_before:
            # aiortc keeps the last 128 packets only: this hole stays
            self.repairs_unavailable += 1
            self.request_jump()
        else:
            self._last_repair_at = self._clock.monotonic()
            if self._recheck_due_at is None:
                self._recheck_due_at = self._last_repair_at

    def repair_counts(self) -> RepairCounts:
        """This connection's keyframe requests and repairs, as the publisher's stats count
        them."""
        return RepairCounts(
            keyframe_requests=self.keyframe_requests,
            keyframe_requests_refused=self.keyframe_requests_dropped,
            repairs_refused=self.retransmissions_dropped,
            repairs_unavailable=self.repairs_unavailable,
        )

    @property
    def holes_left(self) -> int:
        """NACKed packets not repaired, in all: refused by the budget, or gone from aiortc's
        history. aiortc's receiver stops asking for a hole 128 packets later, and its video
        jitter buffer waits for it until 512 have passed (17 s at 180p15 on a 300 kbit/s
        link): only a sequence jump at a keyframe flushes it sooner. The jump is requested
        where the hole is left (`_retransmit`)."""
        return self.retransmissions_dropped + self.repairs_unavailable

    def keyframe_for_holes(self) -> bool:
        """Whether the publisher should ask its encoder for a keyframe now: holes were left
        (`holes_left`) that no keyframe has flushed yet, and the PLI rate limit allows one.
        Asked once a second: a request the limit refused is owed, and made on a later call,
        until a keyframe (this one, or any other the encoder sends) has flushed them. Once
        refused, the holes used to wait for the encoder's next periodic keyframe."""
        if not self._jump_pending:
            # a keyframe took the jump (or none was needed): the receiver flushed them
            self._holes_dealt_with = self.holes_left
            return False
        if self.holes_left == self._holes_dealt_with or not self.keyframes.allow():
            return False
        self._holes_dealt_with = self.holes_left
        return True

    def _check_repairs(self, rtx_lost: int) -> None:
        """Loss on the RTX stream soon after repairs went out may be a repair that never
        arrived. A receiver that waits for every packet (aiortc) NACKs it again only at its
        next new gap; on a link that has stopped losing there is none, and it waits until
        its buffer's 512 packets have passed: 5-7 s frozen at 600-900 kbit/s, measured after
        the 5 % drop phase. A recheck after the repair (`_send_rtp`, the next media packet)
        makes that gap: the receiver asks again. Where none has followed for RECHECK_WAIT_S
        (no media since, or a jump pending), the next keyframe starts past a sequence jump
        (no keyframe is asked for: the next one, at most a keyframe interval away, costs
        nothing extra)."""
        now = self._clock.monotonic()
        last = self._last_repair_at
        recent = last is not None and now - last < REPAIR_LOSS_WINDOW_S
        lost = self._rtx_lost is not None and rtx_lost > self._rtx_lost
        due = self._recheck_due_at
        if self.enforce and recent and lost and due is not None and now - due > RECHECK_WAIT_S:
            self.request_jump()
        self._rtx_lost = rtx_lost

    def _steer_pacer(self) -> None:
        if not self.enforce:
            return
        self.pacer.set_estimate(self.estimator.estimate_bps)
        self.pacer.padding_bps = self.estimator.padding_bps(self.wanted_bps())

    async def _send_rtp(self, data: bytes) -> None:
        """RTP is paced, RTCP goes at once. After a repair, the next new media packet leaves
        one sequence number ahead, and a filler (a padding-only packet of the same frame)
        with the number it skipped right behind it: aiortc's receiver asks again for a lost
        packet only when it sees a new gap, and a lost repair on a link that loses 5 %
        waited 0.2-0.5 s for one, the picture frozen (bench_link: most of the 5 % drop
        phase's frozen time). The packet ahead is that gap, after the repair on the same
        path: the NACK it brings names the repair again if the repair was lost, and the
        filler, which arrives a moment later and adds nothing to the frame."""
        filler = self._recheck_filler(data) if self.enforce else None
        data = self._renumber(data)
        if not self.enforce or len(data) < 12 or _is_rtcp(data):
            await self._transmit(data)
            return
        await self.pacer.send(data)
        if filler is not None:
            await self.pacer.send(filler)

    def _recheck_filler(self, data: bytes) -> bytes | None:
        """The filler for a recheck before this packet, its number skipped (None: no
        recheck due, or not a new media packet). Not across a pending sequence jump: the
        filler would land behind it."""
        if self._recheck_due_at is None or self._jump_pending or self._retransmitting:
            return None
        if len(data) < 12 or _is_rtcp(data):
            return None
        sequence, timestamp, ssrc = struct.unpack_from("!HII", data, 2)
        if ssrc != self.sender._ssrc or sequence in self._out_of:
            return None  # not ours, or ours again (a retransmission without RTX)
        self._recheck_due_at = None
        self.rechecks += 1
        number = (sequence + self._offset) & 0xFFFF
        self._offset = (self._offset + 1) & 0xFFFF
        # the media's payload type, no marker; one octet of padding, its own count
        filler = self._padding_only(data[1] & 0x7F, number, timestamp, ssrc, 1)
        self._fillers[number] = filler
        if len(self._fillers) > FILLER_HISTORY:
            self._fillers.pop(next(iter(self._fillers)))
        return filler

    async def _transmit(self, data: bytes) -> None:
        if self.enforce:
            # aiortc stamps abs-send-time when it packetizes; the receiver's delay detector
            # (the REMB it sends) must see the network's queue, not the pacer's
            extension_id = abs_send_time_id(self.sender)
            if extension_id is not None:
                data = restamp_abs_send_time(data, extension_id, self._clock.monotonic())
        send = self._originals.get("_send_rtp")
        if send is None:
            return  # detached while the pacer held it: the connection is closing
        if self._transport_cc_id is not None:
            data = self._number(data, self._transport_cc_id)
        self._observe_outgoing(data)
        await send(data)

    def _number(self, data: bytes, extension_id: int) -> bytes:
        """Our RTP packet `data` with the next transport-wide sequence number, noted."""
        if len(data) < 12 or _is_rtcp(data):
            return data
        (ssrc,) = struct.unpack_from("!I", data, 8)
        if ssrc not in (self.sender._ssrc, self.sender._rtx_ssrc):
            return data
        sequence = self._transport_sequence
        self._transport_sequence = (sequence + 1) & 0xFFFF
        data = twcc.stamp_sequence(data, extension_id, sequence)
        self._transport_sent[sequence] = (
            self._clock.monotonic(),
            len(data) + WIRE_OVERHEAD_BYTES,
        )
        if len(self._transport_sent) > _HISTORY:
            self._transport_sent.pop(next(iter(self._transport_sent)))
        return data

    def _padding_packet(self) -> bytes | None:
        """A padding-only RTP packet on our RTX stream (None without RTX): the receiver
        counts it in its report on that stream and drops it (no payload to repair). It
        carries abs-send-time where negotiated (stamped as it leaves): a receiver's REMB
        then counts the padding with the media, as it must for a fall to mean the link."""
        payload_type = getattr(self.sender, RTX_PAYLOAD_TYPE_SEAM, None)
        if not self._originals or not isinstance(payload_type, int):
            return None
        return self._padding_only(
            payload_type & 0x7F,
            self._next_rtx_sequence(),
            self._last_timestamp,
            self.sender._rtx_ssrc,
            PADDING_BYTES,
        )

    def _padding_only(
        self, payload_type: int, sequence: int, timestamp: int, ssrc: int, padding: int
    ) -> bytes:
        """A padding-only RTP packet (RFC 3550 5.1: the last octet counts the padding,
        itself included), with abs-send-time where negotiated (stamped as it leaves)."""
        extension_id = abs_send_time_id(self.sender)
        header = struct.pack(
            "!BBHII",
            0xA0 if extension_id is None else 0xB0,  # version 2, padding (, extension)
            payload_type,
            sequence,
            timestamp,
            ssrc,
        )
        if extension_id is not None:
            # one-byte header extension (RFC 8285), one word: the id and 3 bytes of time
            header += struct.pack("!HHB3x", 0xBEDE, 1, extension_id << 4 | 2)
        return header + bytes(padding - 1) + bytes([padding])

    def _next_rtx_sequence(self) -> int:
        sequence = self._rtx_sequence
        self._rtx_sequence = (sequence + 1) & 0xFFFF
        return sequence

    def _renumber(self, data: bytes) -> bytes:
        """Our media packets with the sequence offset applied; RTX packets numbered in our
        RTX sequence, their original number with the offset."""
        if len(data) < 12 or _is_rtcp(data):
            return data
        seq, ssrc = struct.unpack_from("!H4xI", data, 2)
        if ssrc == self.sender._ssrc:
            (self._last_timestamp,) = struct.unpack_from("!I", data, 4)
            # aiortc numbers each new packet afresh: a known number is a retransmission
            known = self._out_of.get(seq)
            if known is not None:
                out = known
            else:
                if self._jump_pending and _starts_keyframe(data):
                    self._jump_pending = False
                    self._offset = (self._offset + SEQUENCE_JUMP) & 0xFFFF
                    self.sequence_jumps += 1
                    self.estimator.on_sequence_jump(seq + self._offset, SEQUENCE_JUMP)
                    # the receiver flushed what came before: repairing it would undo that
                    self._out_of.clear()
                    self._in_of.clear()
                    self._fillers.clear()
                out = (seq + self._offset) & 0xFFFF
                self._out_of[seq], self._in_of[out] = out, seq
                if len(self._out_of) > _HISTORY:
                    self._in_of.pop(self._out_of.pop(next(iter(self._out_of))), None)
            return data if out == seq else data[:2] + struct.pack("!H", out) + data[4:]
        if ssrc == self.sender._rtx_ssrc:
            renumbered = data[:2] + struct.pack("!H", self._next_rtx_sequence()) + data[4:]
            at = _header_length(data)
            if self._offset and len(data) >= at + 2:
                (original,) = struct.unpack_from("!H", data, at)
                out = self._out_of.get(original, original)
                return renumbered[:at] + struct.pack("!H", out) + renumbered[at + 2 :]
            return renumbered
        return data

    def _observe_outgoing(self, data: bytes) -> None:
        if len(data) < 12:
            return
        if _is_rtcp(data):
            # compound RTCP starts with our SR when it is ours: V/P/RC, PT, length, SSRC, NTP
            if data[1] == _RTCP_SR and len(data) >= 16:
                ssrc, ntp = struct.unpack_from("!IQ", data, 4)
                if ssrc == self.sender._ssrc:
                    self.estimator.on_sender_report_sent(ntp)
            return
        seq, ssrc = struct.unpack_from("!H4xI", data, 2)
        # what a receiver's REMB counts: all after the header, padding included
        payload = len(data) - _header_length(data)
        if ssrc == self.sender._rtx_ssrc:
            padding = bool(data[0] & 0x20)  # aiortc never pads: padding is ours
            self._repairs_sent += not padding
            self.estimator.on_packet_sent(
                seq,
                len(data),
                rtx=True,
                retransmission=not padding,
                padding=padding,
                payload=payload,
            )
        elif ssrc == self.sender._ssrc:
            if self._retransmitting:
                # without RTX a retransmission goes out as itself, from inside _retransmit
                self._retransmitting = False
                self._repairs_sent += 1
                self.estimator.on_packet_sent(seq, len(data), retransmission=True, payload=payload)
                return
            self._sizes[seq] = len(data)
            if len(self._sizes) > _HISTORY:
                self._sizes.pop(next(iter(self._sizes)))
            self.estimator.on_packet_sent(seq, len(data), payload=payload)

    def _announce_if_changed(self) -> None:
        snap = self.estimator.snapshot()
        if self.estimator.take_collapse():
            self._collapsed(snap)
        last = self._announced
        if last is None:
            if snap.reports == 0 and snap.remb_bps is None:
                return  # nothing heard yet: the start value is no news
        else:
            moved = abs(snap.estimate_bps - last.estimate_bps) / last.estimate_bps
            backed_off = snap.state is RateState.DECREASE and snap.estimate_bps < last.estimate_bps
            if moved < MIN_CHANGE and not backed_off:
                return
        self._announced = snap
        self._changed.set()
        for listener in list(self._listeners):
            listener(snap)

    def on_collapse(self, listener: Callable[[BandwidthSnapshot], None]) -> None:
        """Call `listener(snapshot)` when the estimate collapses (bandwidth.COLLAPSE_SHARE),
        after the tap has scheduled the receiver's flush: the listener asks for the keyframe."""
        self._collapse_listeners.append(listener)

    def _collapsed(self, snap: BandwidthSnapshot) -> None:
        """The link narrowed under us: what the bottleneck dropped before the report said so
        is more than any retransmission budget repairs. Flush the receiver at the next
        keyframe, and hold our media until the bottleneck's queue has drained, so that the
        keyframe is not dropped behind the old queue."""
        if not self.enforce:
            return
        self.request_jump()
        self.pacer.hold(self._drain_s(snap.estimate_bps))
        for listener in list(self._collapse_listeners):
            listener(snap)

    def _drain_s(self, estimate_bps: float) -> float:
        """collapse_hold_s for a collapse now, from when the last hold ended."""
        now = self._clock.monotonic()
        since = self._held_until
        sent = self.estimator.wire_sent_since(since) if since is not None else None
        after_hold = None if since is None or sent is None else (max(0.0, now - since), sent)
        hold = collapse_hold_s(estimate_bps, after_hold)
        self._held_until = max(now + hold, since or 0.0)
        return hold


def collapse_hold_s(estimate_bps: float, after_hold: tuple[float, int] | None) -> float:
    """How long to hold our media after a collapse. A first collapse (`after_hold` None):
    MAX_DRAIN_S, for the bottleneck's queue to drain (the loss says it overflowed, whatever
    the RTT samples, a second behind, say of its depth: measured 20 ms then, and the
    keyframe lost its tail in it). Soon after another collapse's hold, `after_hold` is
    (seconds since that hold ended, wire bytes sent since): hold only for what was sent
    beyond what the new estimate carries, since the reports that cut the estimate again
    describe the time before that hold, whose queue it drained. Measured in bench_link:
    three collapses within a second of a step from the 2.5 Mbit/s camera to 1 Mbit/s held
    0.28, 0.30 and 0.30 s, with a few kilobytes sent between them, and the picture froze
    1.0-2.1 s."""
    if after_hold is None:
        return MAX_DRAIN_S
    elapsed_s, sent_bytes = after_hold
    excess_bits = sent_bytes * 8 - estimate_bps * elapsed_s
    return min(MAX_DRAIN_S, max(0.0, excess_bits / estimate_bps))


def _is_rtcp(data: bytes) -> bool:
    """Whether a packet on the shared transport is RTCP (RFC 5761: its second byte, the
    RTCP packet type, is 192-208), read as aiortc's own `aiortc.rtp.is_rtcp` does, without
    importing aiortc here on every packet."""
    return 192 <= data[1] <= 208


def _header_length(data: bytes) -> int:
    """Bytes of an RTP packet's fixed header, CSRCs and header extension."""
    length = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10 and len(data) >= length + 4:
        (words,) = struct.unpack_from("!H", data, length + 2)
        length += 4 + 4 * words
    return length


def _starts_keyframe(data: bytes) -> bool:
    """Whether this H.264 RTP packet begins an IDR access unit (SPS or IDR first)."""
    at = _header_length(data)
    if len(data) < at + 2:
        return False
    nal = data[at] & 0x1F
    if nal in (_NAL_IDR, _NAL_SPS):
        return True
    if nal == _NAL_STAP_A and len(data) >= at + 4:
        return data[at + 3] & 0x1F in (_NAL_IDR, _NAL_SPS)
    if nal == _NAL_FU_A:
        return bool(data[at + 1] & 0x80) and data[at + 1] & 0x1F in (_NAL_IDR, _NAL_SPS)
    return False
