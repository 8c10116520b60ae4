"""The RTCP tap between two real aiortc peers on loopback.

The receiver is a plain aiortc peer: it sends receiver reports, REMB and
NACKs as it would to any publisher. Loss is made at the receiver's input
(every 10th media packet is dropped before aiortc sees it), so its reports,
NACKs and the sender's retransmissions are all aiortc's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest

from luxxon_agent.clock import FakeClock
from luxxon_agent.video import open_media_source, pin_ice_to_loopback
from luxxon_agent.video.bandwidth import (
    BandwidthEstimator,
    BandwidthSnapshot,
    KeyframeLimiter,
    RetransmissionBudget,
)
from luxxon_agent.video.rtcp_tap import (
    MAX_DRAIN_S,
    SENDER_SEAMS,
    TRANSPORT_SEAMS,
    RtcpTap,
    abs_send_time_id,
    collapse_hold_s,
    media_local_address,
    restamp_abs_send_time,
)

REPORTS = 3


@dataclasses.dataclass
class Loss:
    """What the receiver drops on arrival; the test may change it while media flows."""

    media_every: int | None = 10
    """One media packet in this many (None: none)."""
    rtx_every: int | None = None
    """One RTX packet in this many (None: none)."""
    drop_next_repair: bool = False
    """Drop the next retransmission (not padding), then stop dropping media."""


@contextlib.asynccontextmanager
async def peers(
    drop_every: int = 10,
    *,
    rtx_drop_every: int | None = None,
    h264: bool = False,
    loss: Loss | None = None,
    detail: str = "low",
) -> AsyncIterator[tuple[Any, Any]]:
    """(sender pc, receiver pc), connected, media flowing; the receiver drops one media
    packet in `drop_every` on arrival (and one RTX packet in `rtx_drop_every`), or what
    `loss` says. `h264` negotiates aiortc's H.264 instead of its VP8; `detail="high"` makes
    frames of several packets (a flat picture's fit in one)."""
    loss = loss or Loss(media_every=drop_every, rtx_every=rtx_drop_every)
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
    from aiortc.mediastreams import MediaStreamError

    pin_ice_to_loopback()
    source = await open_media_source(f"testsrc://?size=640x360&fps=30&detail={detail}")
    sender_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    consumers: list[asyncio.Task[None]] = []

    @receiver_pc.on("track")
    def _on_track(track: Any) -> None:
        async def pull() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()

        consumers.append(asyncio.ensure_future(pull()))

    transceiver = sender_pc.addTransceiver(source.video_track(), direction="sendonly")
    if h264:
        codecs = RTCRtpSender.getCapabilities("video").codecs
        transceiver.setCodecPreferences(
            [c for c in codecs if c.mimeType in ("video/H264", "video/rtx")]
        )
    try:
        await sender_pc.setLocalDescription(await sender_pc.createOffer())
        await receiver_pc.setRemoteDescription(sender_pc.localDescription)
        await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
        await sender_pc.setRemoteDescription(receiver_pc.localDescription)
        transport = receiver_pc.getTransceivers()[0].receiver.transport
        media_ssrc = sender_pc.getSenders()[0]._ssrc
        rtx_ssrc = sender_pc.getSenders()[0]._rtx_ssrc
        original = transport._handle_rtp_data

        async def lossy(data: bytes, arrival_time_ms: int) -> None:
            seq, ssrc = int.from_bytes(data[2:4], "big"), int.from_bytes(data[8:12], "big")
            if ssrc == media_ssrc and loss.media_every and seq % loss.media_every == 0:
                return
            if ssrc == rtx_ssrc:
                if loss.rtx_every and seq % loss.rtx_every == 0:
                    return
                if loss.drop_next_repair and not data[0] & 0x20:  # not padding
                    loss.drop_next_repair, loss.media_every = False, None
                    return
            await original(data, arrival_time_ms)

        transport._handle_rtp_data = lossy  # type: ignore[method-assign]
        yield sender_pc, receiver_pc
    finally:
        for task in consumers:
            task.cancel()
        await sender_pc.close()
        await receiver_pc.close()
        await source.close()


async def until_reports(tap: RtcpTap, count: int, timeout: float = 8.0) -> None:
    async with asyncio.timeout(timeout):
        while tap.receiver_reports < count:
            await asyncio.sleep(0.1)


async def test_observe_only_sees_rtt_loss_remb_and_retransmissions() -> None:
    async with peers() as (sender_pc, _):
        sender = sender_pc.getSenders()[0]
        estimator = BandwidthEstimator(max_bps=2_000_000)
        changes: list[BandwidthSnapshot] = []
        async with RtcpTap(sender, estimator, enforce=False, on_change=changes.append) as tap:
            await until_reports(tap, REPORTS)
            async with asyncio.timeout(8):
                # aiortc's receiver sends its first REMB once its estimator has settled
                while estimator.snapshot().remb_bps is None:
                    await asyncio.sleep(0.1)
            snap = tap.snapshot()
            assert media_local_address(sender) == "127.0.0.1"
            # negotiated, where the tap restamps it after pacing
            assert isinstance(abs_send_time_id(sender), int)
    assert snap.rtt_s is not None and 0 <= snap.rtt_s < 0.2, snap
    # every 10th packet: the reports say about 10 %
    assert 0.04 < snap.loss < 0.2, snap
    assert snap.remb_bps is not None and snap.remb_bps > 0
    assert snap.sent_bps > 0 and snap.receive_bps is not None and snap.receive_bps > 0
    assert snap.retransmitted_bytes > 0 and tap.nacks > 0
    assert tap.retransmissions_dropped == 0
    assert changes and (changes[0].reports >= 1 or changes[0].remb_bps is not None)
    # detached: aiortc's own methods are back
    assert sender._handle_rtcp_packet.__self__ is sender
    assert sender.transport._send_rtp.__self__ is sender.transport


async def test_a_nack_for_a_packet_aiortc_no_longer_has_is_a_hole_left() -> None:
    """aiortc resends from its last 128 packets only. A NACK for an older one leaves a hole
    that its receiver's jitter buffer waits for until 512 packets have passed: counted with
    the refused ones, so that the publisher flushes it at a keyframe."""
    from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket

    async with peers() as (sender_pc, _):
        sender = sender_pc.getSenders()[0]
        estimator = BandwidthEstimator(max_bps=2_000_000)
        async with RtcpTap(sender, estimator, enforce=False) as tap:
            async with asyncio.timeout(10):
                # past aiortc's history of 128, and some
                while len(tap._sizes) <= 128 + 16:
                    await asyncio.sleep(0.1)
            sent = list(tap._sizes)  # media sequence numbers as sent, oldest first
            refused = tap.retransmissions_dropped

            def nack(sequence: int) -> RtcpRtpfbPacket:
                return RtcpRtpfbPacket(
                    fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=sender._ssrc, lost=[sequence]
                )

            await sender._handle_rtcp_packet(nack(sent[-1]))
            assert tap.repairs_unavailable == 0
            await sender._handle_rtcp_packet(nack(sent[0]))
            assert tap.repairs_unavailable == 1
            assert tap.holes_left == refused + 1


async def test_enforcing_drops_retransmissions_over_budget_and_extra_keyframe_requests() -> None:
    from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket

    async with peers() as (sender_pc, _):
        sender = sender_pc.getSenders()[0]
        keyframes: list[int] = []
        # as the publisher does for its own encoder
        sender._send_keyframe = lambda: keyframes.append(1)
        estimator = BandwidthEstimator(max_bps=2_000_000)
        tap = RtcpTap(
            sender,
            estimator,
            retransmission_budget=RetransmissionBudget(0.0),
            keyframe_limiter=KeyframeLimiter(60.0),
        )
        iterator = tap.changes()
        tap.attach()
        first = await asyncio.wait_for(anext(iterator), 8)
        await until_reports(tap, REPORTS)
        pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc)
        for _ in range(3):
            # the path RTCDtlsTransport takes for a PLI from the far end
            await sender._handle_rtcp_packet(pli)
        tap.detach()
        assert [s async for s in iterator] == []
    assert first.reports >= 1 or first.remb_bps is not None
    assert tap.nacks > 0 and tap.retransmissions_dropped > 0
    assert estimator.snapshot().retransmitted_bytes == 0
    assert tap.keyframe_requests >= 3 and tap.keyframe_requests_dropped >= 2
    assert len(keyframes) == tap.keyframe_requests - tap.keyframe_requests_dropped == 1
    # what the publisher's stats (and the agent's metrics) count for this connection
    counts = tap.repair_counts()
    assert counts.keyframe_requests == tap.keyframe_requests
    assert counts.keyframe_requests_refused == counts.keyframe_requests - 1
    assert counts.repairs_refused == tap.retransmissions_dropped > 0


async def test_a_packet_the_pacer_still_holds_at_detach_is_dropped_quietly() -> None:
    """The publisher detaches the tap as a connection closes, and the pacer may still hold a
    packet then: it went on to the transport's original `_send_rtp`, gone by then, and aiortc
    logged a KeyError traceback for it (seen in bench_link at the end of a run)."""
    async with peers() as (sender_pc, _):
        sender = sender_pc.getSenders()[0]
        tap = RtcpTap(sender, BandwidthEstimator(max_bps=2_000_000))
        tap.attach()
        await until_reports(tap, 1)
        tap.detach()
        # an RTP header with our SSRC, as the pacer hands it on (raised KeyError before)
        await tap._transmit(b"\x80\x60\x00\x01" + bytes(4) + sender._ssrc.to_bytes(4, "big"))


def test_a_collapse_soon_after_another_holds_only_for_what_was_sent_since() -> None:
    """The reports behind a second collapse describe the time before the first one's hold,
    which drained the queue: holding the full time again only stops the picture."""
    assert collapse_hold_s(1_000_000, None) == MAX_DRAIN_S
    # a keyframe's 3 kB in the 0.3 s since: the new estimate carries it, no hold
    assert collapse_hold_s(1_000_000, (0.3, 3_000)) == 0.0
    # 60 kB (the camera's rate) in 0.25 s against 1 Mbit/s: what is over it, to drain
    assert collapse_hold_s(1_000_000, (0.25, 60_000)) == pytest.approx(0.23)
    # far over: never more than a first collapse's hold
    assert collapse_hold_s(500_000, (0.25, 200_000)) == MAX_DRAIN_S


def test_the_aiortc_internals_the_tap_uses_are_there() -> None:
    """Fails when an aiortc upgrade renames what rtcp_tap wraps: fix the tap, then this."""
    from aiortc import RTCRtpSender
    from aiortc.rtcdtlstransport import RTCDtlsTransport

    for name in ("_handle_rtcp_packet", "_retransmit"):
        assert inspect.iscoroutinefunction(getattr(RTCRtpSender, name)), name
    assert set(SENDER_SEAMS) >= {"_ssrc", "_rtx_ssrc"}
    init = inspect.getsource(RTCRtpSender.__init__)
    assert "self._ssrc =" in init and "self._rtx_ssrc =" in init
    for name in TRANSPORT_SEAMS:
        assert inspect.iscoroutinefunction(getattr(RTCDtlsTransport, name)), name
    # RTCP reaches a sender through its instance attribute, which is what the tap replaces
    assert "recipient._handle_rtcp_packet(packet)" in inspect.getsource(
        RTCDtlsTransport._handle_rtcp_data
    )
    # decrypted RTCP reaches the parser through the instance attribute (transport-wide
    # feedback is read there)
    assert "await self._handle_rtcp_data(data)" in inspect.getsource(RTCDtlsTransport)
    # retransmissions and media go out through the transport's instance attribute
    source = inspect.getsource(RTCRtpSender)
    assert source.count("self.transport._send_rtp(") >= 2
    assert "await self._retransmit(seq)" in source


def test_abs_send_time_is_restamped_in_place_and_nothing_else_changes() -> None:
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
    from aiortc.rtp import HeaderExtensionsMap, RtpPacket

    uri = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
                RTCRtpHeaderExtensionParameters(id=3, uri=uri),
            ]
        )
    )
    packet = RtpPacket(payload_type=96, sequence_number=7, timestamp=90, ssrc=1234)
    packet.extensions.mid = "0"
    packet.extensions.abs_send_time = 0x123456
    packet.payload = b"\x65" + bytes(100)
    data = packet.serialize(extensions)
    restamped = restamp_abs_send_time(data, 3, 12.5)
    parsed = RtpPacket.parse(restamped, extensions)
    assert parsed.extensions.abs_send_time == int(12.5 * (1 << 18)) & 0xFFFFFF
    assert parsed.extensions.mid == "0"
    assert (parsed.sequence_number, parsed.payload) == (7, packet.payload)
    assert len(restamped) == len(data)
    # another id, or a packet with no extension (our padding): unchanged
    assert restamp_abs_send_time(data, 2, 12.5) == data
    bare = RtpPacket(payload_type=96, sequence_number=8, ssrc=1234, payload=b"x").serialize()
    assert restamp_abs_send_time(bare, 3, 12.5) == bare


async def test_padding_probes_reach_the_receivers_reports_and_lift_a_pinned_estimate() -> None:
    """An app-limited sender (a flat picture) that wants more: padding on the RTX stream
    is counted in the receiver's own report on that stream, so what arrived (and with it
    the estimate) grows past what the media alone could prove; the picture keeps coming."""
    async with peers(drop_every=1 << 20) as (sender_pc, receiver_pc):
        sender = sender_pc.getSenders()[0]
        estimator = BandwidthEstimator(max_bps=6_000_000, start_bps=1_500_000)
        async with RtcpTap(sender, estimator) as tap:
            tap.wanted_bps = lambda: 6_000_000.0
            stats_before = await receiver_pc.getStats()
            await until_reports(tap, 6, timeout=15)
            snap = tap.snapshot()
            padding_bps = estimator.padding_sent_bps()
            media_bps = snap.sent_bps - padding_bps
            stats_after = await receiver_pc.getStats()
    assert snap.padding_bytes > 0 and padding_bps > 0, snap
    # the receiver reported on the RTX stream: arrivals include the padding
    assert snap.receive_bps is not None and snap.receive_bps > 1.2 * media_bps, snap
    assert snap.estimate_bps > 1.5 * media_bps, snap
    assert snap.loss < 0.02, snap
    # the padding carries abs-send-time: the receiver's REMB counts it with the media
    # (without: 1.3 x the media, measured; with: 5.5 x)
    assert snap.remb_bps is not None and snap.remb_bps > 2 * media_bps, snap

    def received(stats: Any) -> int:
        return sum(
            s.packetsReceived
            for s in stats.values()
            if s.type == "inbound-rtp" and s.kind == "video"
        )

    assert received(stats_after) > received(stats_before)


@contextlib.asynccontextmanager
async def repairing_tap(sender_pc: Any) -> AsyncIterator[RtcpTap]:
    """An enforcing tap on the sender, once retransmissions have gone out; keyframes
    allowed twice a second."""
    sender = sender_pc.getSenders()[0]
    estimator = BandwidthEstimator(max_bps=2_000_000)
    limiter = KeyframeLimiter(0.5)
    async with RtcpTap(sender, estimator, keyframe_limiter=limiter) as tap:
        await until_reports(tap, REPORTS)
        assert estimator.snapshot().retransmitted_bytes > 0
        yield tap


async def test_repairs_lost_on_the_rtx_stream_are_asked_for_again_not_flushed() -> None:
    """aiortc's receiver NACKs a missing packet again only at its next new gap: a lost
    retransmission on a link that stops losing left it waiting 7 s. Half the RTX stream
    lost, frames of one packet: each lost repair is asked for again at the recheck that
    follows it, no hole outlives a second, and nothing is flushed."""
    from aiortc import RTCRtpReceiver

    # 2 % media loss: no collapse, so only the lost repairs could cause a jump
    async with peers(drop_every=50, rtx_drop_every=2, h264=True) as (sender_pc, receiver_pc):
        receiver = receiver_pc.getTransceivers()[0].receiver
        assert isinstance(receiver, RTCRtpReceiver)
        missing: set[int] = receiver._RTCRtpReceiver__nack_generator.missing
        async with repairing_tap(sender_pc) as tap:
            loop = asyncio.get_running_loop()
            since: dict[int, float] = {}
            oldest = 0.0
            end = loop.time() + 6
            while loop.time() < end:
                now = loop.time()
                since = {seq: since.get(seq, now) for seq in missing}
                oldest = max([oldest, *(now - at for at in since.values())])
                await asyncio.sleep(0.02)
            assert tap.rechecks > 3 and tap.snapshot().retransmitted_bytes > 0
            assert oldest < 1.0, oldest
            assert tap.sequence_jumps == 0 and tap.snapshot().loss < 0.1


@pytest.mark.parametrize("detail", ["high", "low"])
async def test_a_lost_last_repair_is_asked_for_again_at_the_recheck(detail: str) -> None:
    """aiortc's receiver asks again for a lost repair only at its next new gap, and a link
    that stopped losing makes none. After a repair the next packet leaves a number ahead,
    its filler behind it: that gap has it ask again, the repair goes again, and nothing is
    left for a flush. In frames of several packets (`high`) and of one (`low`, as at
    180p15, where a recheck used to wait for a frame of two)."""
    from aiortc import RTCRtpReceiver

    loss = Loss(media_every=50)
    async with peers(h264=True, loss=loss, detail=detail) as (sender_pc, receiver_pc):
        receiver = receiver_pc.getTransceivers()[0].receiver
        assert isinstance(receiver, RTCRtpReceiver)
        missing: set[int] = receiver._RTCRtpReceiver__nack_generator.missing
        async with repairing_tap(sender_pc) as tap:
            rechecks = tap.rechecks
            loss.drop_next_repair = True
            async with asyncio.timeout(8):
                while loss.drop_next_repair:
                    await asyncio.sleep(0.01)
            # repaired again long before the receiver's NACK list drops it (128 packets on,
            # over a second at this rate) and its jitter buffer gives up (512)
            async with asyncio.timeout(0.6):
                while missing:
                    await asyncio.sleep(0.01)
            assert tap.rechecks > rechecks
            # the receiver's report on the RTX stream counts the lost repair: no flush
            reports = tap.receiver_reports
            async with asyncio.timeout(4):
                while tap.receiver_reports < reports + 2:
                    await asyncio.sleep(0.05)
            assert tap.sequence_jumps == 0 and not tap._jump_pending
            assert not missing


async def test_a_keyframe_for_holes_that_the_pli_limit_refused_is_asked_for_later() -> None:
    """Holes left (repairs the budget refused) are flushed at the next keyframe, which the
    tap has the publisher ask its encoder for, within the PLI rate limit. One the limit
    refused is owed and asked for on a later call, once; holes that a keyframe of the
    encoder's own has flushed are owed nothing."""
    from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket

    clock = FakeClock()
    async with peers(loss=Loss(media_every=None), h264=True) as (sender_pc, _):
        sender = sender_pc.getSenders()[0]
        limiter = KeyframeLimiter(2.0, clock=clock)
        tap = RtcpTap(
            sender,
            BandwidthEstimator(max_bps=2_000_000),
            retransmission_budget=RetransmissionBudget(0.0),
            keyframe_limiter=limiter,
        )
        async with tap:
            async with asyncio.timeout(8):
                while not tap._sizes:
                    await asyncio.sleep(0.05)

            async def leave_a_hole() -> None:
                newest = list(tap._sizes)[-1]
                nack = RtcpRtpfbPacket(
                    fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=sender._ssrc, lost=[newest]
                )
                holes = tap.holes_left
                await sender._handle_rtcp_packet(nack)
                assert tap.holes_left == holes + 1

            assert not tap.keyframe_for_holes()  # no holes yet
            assert limiter.allow()  # a keyframe a PLI asked for: the limit's for 2 s
            await leave_a_hole()
            assert not tap.keyframe_for_holes()
            assert limiter.denied == 1
            await clock.advance(2.5)
            assert tap.keyframe_for_holes()  # owed, and the limit allows it now
            await clock.advance(2.5)
            assert not tap.keyframe_for_holes()  # asked for once
            await leave_a_hole()
            jumps = tap.sequence_jumps
            sender._send_keyframe()  # the encoder's own, before the publisher's next call
            async with asyncio.timeout(5):
                while tap.sequence_jumps == jumps:
                    await asyncio.sleep(0.02)
            assert not tap.keyframe_for_holes()
            assert limiter.denied == 1
