"""twcc.py: the transport-wide sequence number extension, its SDP, and the feedback
message, checked against aiortc's own RTP parser and against feedback packets of
another implementation."""

from __future__ import annotations

import asyncio
import struct

import pytest

from luxxon_agent.stub.ingest.feedback import FeedbackSender
from luxxon_agent.video import twcc
from luxxon_agent.video.twcc import (
    TRANSPORT_CC_URI,
    FeedbackError,
    add_transport_cc,
    build_feedback,
    negotiated_id,
    parse_feedback,
    read_sequence,
    stamp_sequence,
)

# Feedback packets from webrtc-rs/webrtc's RTCP tests (rtcp/src/transport_feedbacks/
# transport_layer_cc/transport_layer_cc_test.rs, MIT OR Apache-2.0), with what they decode
# to there: (base sequence, reference time, feedback count, statuses, receive deltas in µs).
# Statuses: 0 not received, 1 small delta, 2 large delta, 3 reserved (no delta).
WEBRTC_RS_VECTORS = [
    (
        "run-length, one packet",
        bytes.fromhex("afcd0005fa17fa1743032fa0009900013de8021720019401"),
        (153, 4057090, 23, [1], [37000]),
    ),
    (
        "two-bit vectors, reserved statuses, padding bit",
        bytes.fromhex("afcd0006fa17fa17193dd8bb0174000e45b15a40d800f0ffd0000003"),
        (372, 4567386, 64, [1, 2, 0, 0, 0, 0, 0, 3, 0, 0, 3, 3, 3, 3], [52000, 0]),
    ),
    (
        "run-length, large deltas",
        bytes.fromhex("8fcd0007fa17fa17193dd8bb0174000645b15a40400220041ffe1f9ad000d000"),
        (372, 4567386, 64, [2, 2, 1, 1, 1, 1], [2047500, 2022500, 52000, 0, 52000, 0]),
    ),
    (
        "run-length, seven small deltas",
        bytes.fromhex("afcd0007fa17fa17193dd8bb0004000710636e0120074c2424100c0c10000003"),
        (4, 1074030, 1, [1] * 7, [19000, 9000, 9000, 4000, 3000, 3000, 4000]),
    ),
    (
        "one-bit vector",
        bytes.fromhex("afcd0006fa17fa17193dd8bb0001000e10636d00ba00100c0c100003"),
        (1, 1074029, 0, [1, 1, 1, 0, 1] + [0] * 9, [4000, 3000, 3000, 4000]),
    ),
    (
        "two-bit vector then a run longer than the count",
        bytes.fromhex("afcd00079b74f61f9371dcbc853c000963f916b3d55200309baa6aaa7b010901"),
        (
            34108,
            6551830,
            179,
            [1, 1, 1, 1, 1, 0, 2, 0, 0],
            [38750, 42500, 26500, 42500, 30750, 66250],
        ),
    ),
]


@pytest.mark.parametrize(("name", "data", "expected"), WEBRTC_RS_VECTORS, ids=lambda v: str(v)[:12])
def test_feedback_of_another_implementation_parses_to_what_it_says(
    name: str, data: bytes, expected: tuple[int, int, int, list[int], list[int]]
) -> None:
    base, reference, count, statuses, deltas = expected
    (feedback,) = parse_feedback(data)
    assert feedback.base_sequence == base and feedback.feedback_count == count
    assert len(feedback.arrivals_us) == len(statuses)
    times, at = iter(deltas), reference * 64_000
    for status, arrival in zip(statuses, feedback.arrivals_us, strict=True):
        if status in (1, 2):
            at += next(times)
            assert arrival == at, name
        else:
            assert arrival is None, name


def test_built_feedback_parses_back_with_losses_reordering_and_long_runs() -> None:
    start = 5_000_123_456
    arrivals: list[int | None] = [start, start + 1_000, None, start + 900]  # reordered: < prior
    arrivals += [None] * 9000  # a run over one chunk's 8191
    arrivals += [start + 70_000, start + 70_250, start + 8_000_000]  # large delta, then > 64 ms
    data = build_feedback(
        sender_ssrc=1, media_ssrc=2, base_sequence=65530, feedback_count=7, arrivals_us=arrivals
    )
    assert len(data) % 4 == 0
    (feedback,) = parse_feedback(data + build_rr())  # in a compound, beside another packet
    assert (feedback.sender_ssrc, feedback.media_ssrc, feedback.feedback_count) == (1, 2, 7)
    received = list(feedback.received())
    assert [sequence for sequence, _ in received[:8]] == [65530 + i & 0xFFFF for i in range(8)]
    assert len(received) == len(arrivals)
    for (_, got), want in zip(received, arrivals, strict=True):
        if want is None:
            assert got is None
        else:
            # quarter milliseconds, rounded, without drift along the message
            assert got is not None and abs(got - want) <= 125


def build_rr() -> bytes:
    """An empty receiver report (RFC 3550 6.4.2) from SSRC 9."""
    return struct.pack("!BBHI", 0x80, 201, 1, 9)


def test_feedback_that_does_not_parse_is_an_error_and_an_unreported_one_needs_a_packet() -> None:
    good = build_feedback(
        sender_ssrc=1, media_ssrc=2, base_sequence=0, feedback_count=0, arrivals_us=[0, 250]
    )
    cut = bytearray(good[:20])
    cut[2:4] = struct.pack("!H", len(cut) // 4 - 1)
    with pytest.raises(FeedbackError, match="chunks end"):
        parse_feedback(bytes(cut))
    with pytest.raises(ValueError, match="at least one received"):
        build_feedback(
            sender_ssrc=1, media_ssrc=2, base_sequence=0, feedback_count=0, arrivals_us=[None]
        )
    # not a feedback message: nothing found
    assert parse_feedback(build_rr()) == []


def _extensions(transport_cc_id: int | None) -> object:
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
    from aiortc.rtp import HeaderExtensionsMap

    parameters = [
        RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
        RTCRtpHeaderExtensionParameters(
            id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
        ),
    ]
    if transport_cc_id is not None:
        parameters.append(RTCRtpHeaderExtensionParameters(id=transport_cc_id, uri=TRANSPORT_CC_URI))
    extensions = HeaderExtensionsMap()
    extensions.configure(RTCRtpParameters(headerExtensions=parameters))
    return extensions


def test_stamped_numbers_read_back_in_aiortcs_parser_and_nothing_else_changes() -> None:
    from aiortc.rtp import RtpPacket

    without, with_it = _extensions(None), _extensions(5)
    packet = RtpPacket(payload_type=96, sequence_number=7, timestamp=90, ssrc=1234)
    packet.extensions.mid = "0"
    packet.extensions.abs_send_time = 0x123456
    packet.payload = b"\x65" + bytes(100)
    cases = {
        "mid and abs-send-time": packet.serialize(without),
        "no extension": RtpPacket(
            payload_type=96, sequence_number=8, ssrc=1, payload=b"x"
        ).serialize(),
    }
    padded = RtpPacket(payload_type=97, sequence_number=9, ssrc=1)
    padded.padding_size = 40
    cases["padding only"] = padded.serialize()
    packet.extensions.transport_sequence_number = 1
    cases["already numbered"] = packet.serialize(with_it)
    for name, data in cases.items():
        stamped = stamp_sequence(data, 5, 0x1_0203)  # 16 bits of it
        parsed, original = RtpPacket.parse(stamped, with_it), RtpPacket.parse(data, with_it)
        assert parsed.extensions.transport_sequence_number == 0x0203, name
        assert read_sequence(stamped, 5) == 0x0203, name
        assert parsed.extensions.mid == original.extensions.mid, name
        assert parsed.extensions.abs_send_time == original.extensions.abs_send_time, name
        assert (parsed.sequence_number, parsed.payload) == (
            original.sequence_number,
            original.payload,
        )
        assert parsed.padding_size == original.padding_size, name
        assert len(stamped) - len(data) in (0, 4, 8), name
    assert read_sequence(cases["no extension"], 5) is None


async def test_the_offer_carries_it_and_aiortc_still_takes_the_description() -> None:
    from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

    from luxxon_agent.video import open_media_source, pin_ice_to_loopback

    pin_ice_to_loopback()
    source = await open_media_source("testsrc://?size=320x240&fps=15")
    publisher, ingest = RTCPeerConnection(), RTCPeerConnection()
    try:
        transceiver = publisher.addTransceiver(source.video_track(), direction="sendonly")
        codecs = RTCRtpSender.getCapabilities("video").codecs
        transceiver.setCodecPreferences(
            [c for c in codecs if c.mimeType in ("video/H264", "video/rtx")]
        )
        await publisher.setLocalDescription(await publisher.createOffer())
        plain = publisher.localDescription.sdp
        assert negotiated_id(plain) is None
        offer = add_transport_cc(plain)
        ident = negotiated_id(offer)
        # a free id: aiortc's own extensions keep theirs
        assert ident is not None and f"a=extmap:{ident} " not in plain
        assert add_transport_cc(offer) == offer
        h264 = [line.split()[0].split(":")[1] for line in offer.splitlines() if " H264/" in line]
        for payload_type in h264:
            assert f"a=rtcp-fb:{payload_type} transport-cc" in offer
        assert " transport-cc" not in "".join(line for line in offer.splitlines() if "rtx/" in line)
        await ingest.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await ingest.setLocalDescription(await ingest.createAnswer())
        answer = add_transport_cc(ingest.localDescription.sdp, ident)
        assert negotiated_id(answer) == ident
        await publisher.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    finally:
        await publisher.close()
        await ingest.close()
        await source.close()


def test_aiortc_neither_offers_nor_stamps_it_itself() -> None:
    """When this fails, aiortc numbers its own packets in the transport-wide sequence:
    `add_transport_cc` and the tap's numbering would then collide with it."""
    from aiortc.codecs import HEADER_EXTENSIONS

    assert all(ext.uri != TRANSPORT_CC_URI for ext in HEADER_EXTENSIONS["video"])


class _Transport:
    """What FeedbackSender needs of aiortc's RTCDtlsTransport, recording what it sends."""

    state = "connected"

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.handled: list[bytes] = []

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        self.handled.append(data)

    async def _send_rtp(self, data: bytes) -> None:
        self.sent.append(data)


async def test_the_ingest_reports_what_arrived_once_and_late_arrivals_not_at_all() -> None:
    """The stub's feedback from packets our tap numbered: losses reported as not
    received, numbers wrapping past 65535, each packet reported once."""
    transport = _Transport()
    feedback = FeedbackSender(transport, 5)
    feedback.attach()

    def packet(sequence: int) -> bytes:
        bare = struct.pack("!BBHII", 0x80, 96, sequence, 0, 0xABCDEF) + b"payload"
        return stamp_sequence(bare, 5, sequence)

    for sequence in (65533, 65534, 0, 1):  # 65535 lost
        await transport._handle_rtp_data(packet(sequence), 0)
    assert len(transport.handled) == 4  # passed on to aiortc
    first = feedback.take_report()
    assert first is not None
    (report,) = twcc.parse_feedback(first)
    first_count = report.feedback_count
    assert report.media_ssrc == 0xABCDEF and report.base_sequence == 65533
    assert [arrival is not None for _, arrival in report.received()] == [
        True,
        True,
        False,
        True,
        True,
    ]
    assert feedback.take_report() is None  # nothing new
    await transport._handle_rtp_data(packet(65535), 0)  # too late: reported lost already
    await transport._handle_rtp_data(packet(3), 0)
    second = feedback.take_report()
    assert second is not None
    (report,) = twcc.parse_feedback(second)
    assert report.base_sequence == 2 and report.feedback_count == first_count + 1
    assert [arrival is not None for _, arrival in report.received()] == [False, True]
    run = asyncio.ensure_future(feedback.run())
    await transport._handle_rtp_data(packet(4), 0)
    try:
        async with asyncio.timeout(2):
            while not transport.sent:
                await asyncio.sleep(0.02)
    finally:
        run.cancel()
    assert twcc.parse_feedback(transport.sent[0])[0].base_sequence == 4
    assert feedback.reports_sent == 1
