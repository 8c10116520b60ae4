"""WHIP client, SPS parsing, burned-in clock, the encoder's frame dropper, ingest HTTP rules
and disconnect windows."""

from __future__ import annotations

import asyncio
import time
import types
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from luxxon_agent.clock import FakeClock
from luxxon_agent.errors import MediaError, WhipError
from luxxon_agent.secret import Secret
from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.video import (
    VideoOptions,
    WhipClient,
    open_media_source,
    parse_ice_servers,
    read_burned_clock,
)
from luxxon_agent.video.encoder import (
    DROP_AHEAD_S,
    DROP_ANYWAY_S,
    MAX_TRIM,
    MAX_UNSENT_S,
    H264Encoder,
)
from luxxon_agent.video.h264 import find_profile, parameter_sets
from luxxon_agent.video.stats import PublisherState, RepairCounts, SenderReport, StatsBook
from luxxon_agent.video.testsrc import TestPattern

ANSWER = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"


def test_link_headers_give_ice_servers_and_skip_other_rels() -> None:
    servers = parse_ice_servers(
        [
            '<stun:stun.example.net>; rel="ice-server", <https://x/y>; rel="next"',
            '<turn:turn.example.net?transport=udp>; rel="ice-server"; username="u"; '
            'credential="p"; credential-type="password"',
        ]
    )
    assert [s.urls for s in servers] == [
        "stun:stun.example.net",
        "turn:turn.example.net?transport=udp",
    ]
    assert (servers[1].username, servers[1].credential) == ("u", "p")
    assert "'p'" not in repr(servers[1]) and "'u'" not in repr(servers[1])


async def test_whip_post_follows_307_resolves_relative_location_and_sends_bearer() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/whip/old":
            return httpx.Response(307, headers={"Location": "https://edge.example/whip/new"})
        assert request.headers["content-type"] == "application/sdp"
        assert request.headers["authorization"] == "Bearer tok"
        assert request.content == b"offer-sdp"
        return httpx.Response(
            201,
            text=ANSWER,
            headers=[
                ("Location", "res/1"),
                ("Link", '<stun:s.example>; rel="ice-server"'),
                ("Content-Type", "application/sdp"),
            ],
        )

    async with WhipClient(
        Secret("https://ingest.example/whip/old"),
        token=Secret("tok"),
        transport=httpx.MockTransport(handler),
    ) as client:
        resource = await client.publish("offer-sdp")
    assert [r.method for r in seen] == ["POST", "POST"]
    assert resource.location == "https://edge.example/whip/res/1"
    assert resource.answer_sdp == ANSWER
    assert [s.urls for s in resource.ice_servers] == ["stun:s.example"]
    assert "old" not in repr(client) and "tok" not in repr(client)


@pytest.mark.parametrize(
    ("status", "text"), [(401, "bad token"), (403, "in use"), (500, "boom"), (415, "sdp only")]
)
async def test_whip_errors_name_status_and_server_text(status: int, text: str) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, text=text))
    async with WhipClient(Secret("https://x.example/whip/a"), transport=transport) as client:
        with pytest.raises(WhipError) as info:
            await client.publish("offer")
    assert info.value.status == status
    assert str(info.value) == f"WHIP POST refused: HTTP {status}: {text}"


async def test_whip_201_without_location_and_delete_of_gone_resource() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(404 if request.url.path.endswith("gone") else 500, text="x")
        return httpx.Response(201, text=ANSWER)

    async with WhipClient(
        Secret("https://x.example/whip/a"), transport=httpx.MockTransport(handler)
    ) as client:
        with pytest.raises(WhipError, match="without a Location"):
            await client.publish("offer")
        await client.delete("https://x.example/whip/a/gone")
        with pytest.raises(WhipError, match="DELETE refused: HTTP 500"):
            await client.delete("https://x.example/whip/a/other")


def test_sps_profiles_from_annexb_and_avcc() -> None:
    cb = bytes.fromhex("00000001 6742e01f 8c8d40 00000001 68ce3c80".replace(" ", ""))
    profile = find_profile(parameter_sets(cb))
    assert profile is not None and profile.profile_level_id == "42e01f"
    assert profile.passthrough_refusal() is None
    assert profile.passthrough_refusal(max_level=30) is not None
    avcc = bytes.fromhex("01640028ffe1000467640028" + "01000468ee3c80")
    high = find_profile(parameter_sets(avcc))
    assert high is not None and high.profile_idc == 100
    assert "not Constrained Baseline" in (high.passthrough_refusal() or "")


def test_burned_clock_reads_back_after_jpeg_roundtrip() -> None:
    import io

    import av

    now = datetime(2026, 5, 13, 8, 42, 0, 123000, tzinfo=UTC)
    frame = TestPattern(640, 360).frame(777, now)
    assert read_burned_clock(frame) == (now, 777)
    with av.open(io.BytesIO(), "w", format="mjpeg") as out:
        stream = out.add_stream("mjpeg", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuvj420p"
        encoded = b"".join(bytes(p) for p in stream.encode(frame.reformat(format="yuvj420p")))
    with av.open(io.BytesIO(encoded), format="mjpeg") as inp:
        decoded = next(inp.decode(video=0))
    assert read_burned_clock(decoded) == (now, 777)


def test_high_detail_testsrc_costs_the_encoder_many_more_bits_and_keeps_its_clock() -> None:
    from fractions import Fraction

    import av

    def encoded_bytes(detail: str) -> tuple[int, int]:
        pattern = TestPattern(640, 360, detail=detail)
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height, encoder.pix_fmt = 640, 360, "yuv420p"
        encoder.time_base = Fraction(1, 30)
        encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "qp": "30"}
        decoder = av.CodecContext.create("h264", "r")
        size = read = 0
        start = datetime(2026, 5, 13, 8, 42, tzinfo=UTC)
        for counter in range(10):
            frame = pattern.frame(counter, start + timedelta(milliseconds=33 * counter))
            frame.pts = counter
            for packet in encoder.encode(frame):
                size += packet.size
                for decoded in decoder.decode(packet):
                    read += read_burned_clock(decoded) is not None
        return size, read

    low, low_read = encoded_bytes("low")
    high, high_read = encoded_bytes("high")
    assert high > 10 * low
    assert low_read == high_read == 10
    with pytest.raises(ValueError, match="detail"):
        TestPattern(640, 360, detail="extreme")


async def test_unknown_source_schemes_and_bad_options_are_clear() -> None:
    with pytest.raises(MediaError, match="unknown source scheme 'http'"):
        await open_media_source("http://secret-camera/stream")
    with pytest.raises(MediaError, match="bad size"):
        await open_media_source("testsrc://?size=big")
    with pytest.raises(ValueError, match="codec"):
        VideoOptions(codec="h265")


async def test_ingest_http_rules(ingest_server: tuple[WhipIngest, str]) -> None:
    ingest, base = ingest_server
    video_input = ingest.create_input("ses_http")
    async with httpx.AsyncClient() as http:
        unknown = await http.post(
            f"{base}/whip/nope", content=b"v=0", headers={"Content-Type": "application/sdp"}
        )
        assert unknown.status_code == 404
        wrong_type = await http.post(
            video_input.whip_url, content=b"v=0", headers={"Content-Type": "text/plain"}
        )
        assert wrong_type.status_code == 415
        garbage = await http.post(
            video_input.whip_url,
            content=b"v=0\r\nm=video",
            headers={"Content-Type": "application/sdp"},
        )
        assert garbage.status_code == 400
        missing = await http.delete(f"{video_input.whip_url}/no-such-resource")
        assert missing.status_code == 404
        await ingest.close_input(video_input.ref)
        closed = await http.post(
            video_input.whip_url,
            content=b"v=0\r\nm=video",
            headers={"Content-Type": "application/sdp"},
        )
        assert closed.status_code == 404


async def test_disconnect_windows_are_media_gaps() -> None:
    import av

    clock = FakeClock()
    ingest = WhipIngest("http://127.0.0.1:1", clock=clock, gap_threshold=2.0)
    video_input = ingest.create_input("ses_gaps")
    frames: asyncio.Queue[av.VideoFrame] = asyncio.Queue()

    class Track:
        async def recv(self) -> av.VideoFrame:
            return await frames.get()

    ingest.attach_track(video_input.ref, Track())  # type: ignore[arg-type]
    frame = av.VideoFrame(160, 120, "yuv420p")
    start = clock.now()

    async def deliver(after: float) -> None:
        await clock.advance(after)
        await frames.put(frame)
        for _ in range(5):
            await asyncio.sleep(0)

    await deliver(0)
    await deliver(1.0)  # a short gap is not a window
    await deliver(5.0)  # 5 s without media: one window
    assert ingest.disconnect_windows(video_input.ref) == [
        (start + timedelta(seconds=1), start + timedelta(seconds=6))
    ]
    await clock.advance(3.0)  # an open gap counts up to now
    assert ingest.disconnect_windows(video_input.ref)[-1] == (
        start + timedelta(seconds=6),
        start + timedelta(seconds=9),
    )
    await ingest.close_input(video_input.ref)
    await clock.advance(10.0)  # and stops at the close
    assert ingest.disconnect_windows(video_input.ref)[-1][1] == start + timedelta(seconds=9)


def test_encoder_skips_frames_rather_than_run_ahead_of_its_target() -> None:
    """Frames handed over faster than the target can pay for (a burst after a stall, or
    libx264 over its target) are skipped: what comes out stays within the target over
    the wall clock plus DROP_AHEAD_S of it; a keyframe asked for is never skipped."""
    from fractions import Fraction

    import av

    pattern = TestPattern(320, 180, detail="high")
    encoder = H264Encoder(30, VideoOptions(), adaptive=True)
    encoder.set_target(200_000, 0.0)
    start = datetime(2026, 5, 13, 8, 42, tzinfo=UTC)

    def frame(counter: int) -> av.VideoFrame:
        picture = pattern.frame(counter, start + timedelta(milliseconds=33 * counter))
        picture.pts, picture.time_base = counter * 3000, Fraction(1, 90000)
        return picture

    began = time.monotonic()
    bits = largest = 0
    for counter in range(90):  # three seconds of video, handed over at once
        produced = sum(p.size for p in encoder.encode(frame(counter))) * 8
        bits, largest = bits + produced, max(largest, produced)
    elapsed = time.monotonic() - began
    assert encoder.frames_dropped > 0
    assert bits <= encoder.target_bps * (elapsed + DROP_AHEAD_S) + largest
    encoder.request_keyframe()
    packets = encoder.encode(frame(90))
    assert packets and packets[0].is_keyframe


@pytest.fixture
def one_x264_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """libx264 on one thread: on several its output differs from run to run (the same
    frames, the same clock), and a test that counts skipped frames after a reopen saw 0, 1
    or 2 under load. On one thread each run encodes the same stream."""
    import av

    create = av.CodecContext.create

    def single_threaded(name: str, mode: str | None = None) -> Any:
        codec = create(name, mode)
        codec.thread_count = 1
        return codec

    monkeypatch.setattr(av.CodecContext, "create", single_threaded)


class EncoderRun:
    """An adaptive 640x360 encoder fed the noisy test pattern at 30 fps, on its own clock
    (with `one_x264_thread`, the same stream every run)."""

    def __init__(self, target_bps: int) -> None:
        self.now = 0.0
        self.counter = 0
        self.pattern = TestPattern(640, 360, detail="high")
        self.steps_heard = 0
        self.encoder = H264Encoder(
            30, VideoOptions(), adaptive=True, on_ladder_step=self._heard, clock=lambda: self.now
        )
        self.encoder.set_target(target_bps, 0.0)
        self.start = datetime(2026, 5, 13, 8, 42, tzinfo=UTC)

    def _heard(self) -> None:
        self.steps_heard += 1

    def set_target(self, target_bps: int) -> None:
        self.encoder.set_target(target_bps, self.now)

    def encode(self) -> list[Any]:
        """The next frame's packets (none: the frame dropper skipped it)."""
        from fractions import Fraction

        counter = self.counter
        frame = self.pattern.frame(counter, self.start + timedelta(milliseconds=33 * counter))
        frame.pts, frame.time_base = counter * 3000, Fraction(1, 90000)
        self.counter += 1
        packets = self.encoder.encode(frame)
        self.now += 1 / 30
        return packets


@pytest.mark.usefixtures("one_x264_thread")
def test_encoder_opened_low_follows_a_higher_target() -> None:
    """An ABR context keeps the rate it was opened at when `bit_rate` goes up (340-350
    kbit/s asked for 1 Mbit/s); a CBR one follows as far as its VBV buffer, sized for the
    rate it opened at, lets it, and is reopened (one IDR) where that is not far enough."""
    run = EncoderRun(400_000)
    per_frame: list[int] = []
    for counter in range(240):
        if counter == 90:
            run.set_target(1_200_000)
        per_frame.append(sum(p.size for p in run.encode()) * 8)
    before, after = sum(per_frame[30:90]) / 2, sum(per_frame[180:240]) / 2
    assert before < 600_000 and after > 900_000, (before, after)
    assert run.encoder.reopens <= 1


@pytest.mark.usefixtures("one_x264_thread")
def test_encoder_follows_a_lower_then_a_higher_target_on_the_same_context() -> None:
    """An ABR context keeps the rate it was opened at whatever `bit_rate` says (opened at
    1.2 Mbit/s under a 2 Mbit/s VBV rate it stayed there, held to a lower target only by the
    frame dropper's skips); opened as CBR at the rung's ceiling it follows `bit_rate` both
    ways up to that ceiling: no new context (an IDR each), no skipping to hold it."""
    run = EncoderRun(1_200_000)
    per_frame: list[int] = []
    dropped: list[int] = []
    for counter in range(270):
        if counter == 90:
            run.set_target(600_000)
        if counter == 180:
            run.set_target(1_000_000)
        before = run.encoder.frames_dropped
        per_frame.append(sum(p.size for p in run.encode()) * 8)
        dropped.append(run.encoder.frames_dropped - before)
    lower, higher = sum(per_frame[120:180]) / 2, sum(per_frame[210:270]) / 2
    assert 400_000 < lower < 700_000, lower
    assert 800_000 < higher < 1_150_000, higher
    assert run.encoder.reopens == 0
    assert sum(dropped[120:]) <= 2, dropped


@pytest.mark.usefixtures("one_x264_thread")
@pytest.mark.parametrize(
    ("detail", "keep_headroom"), [("high", False), ("low", False), ("high", True)]
)
def test_encoder_makes_up_what_libx264_falls_short_of_its_target(
    detail: str, keep_headroom: bool
) -> None:
    """Under a VBV buffer of a few frames libx264 spends 0.86-0.93 of what it is told (270p30
    here: 0.88); told its aim x its shortfall it spends the aim. An easy picture (the flat
    test pattern, a low QP) falls short because it needs no more: not made up. Nor is it
    near the last congestion point, where the link was full."""
    # the flat pattern needs about 160 kbit/s at 360p30: at 400 it is easy (QP 4)
    target = 400_000 if detail == "low" else 200_000
    run = EncoderRun(target)
    run.pattern = TestPattern(640, 360, detail=detail)
    produced: list[int] = []
    for _ in range(240):
        run.encoder.set_target(target, run.now, keep_headroom=keep_headroom)
        produced.append(sum(p.size for p in run.encode()) * 8)
    rate = sum(produced[90:]) / 5  # seconds 3-8
    assert run.encoder.frames_dropped == 0 and run.encoder.reopens == 0
    if detail == "low":
        assert run.encoder.trim == 1.0 and rate < 0.6 * target, rate
    elif keep_headroom:
        # the shortfall is still measured, for when the estimate leaves the band
        assert run.encoder.trim > 1.05 and rate < 0.93 * target, rate
    else:
        assert 1.0 < run.encoder.trim <= MAX_TRIM
        assert 0.95 * target < rate < 1.05 * target, rate


@pytest.mark.usefixtures("one_x264_thread")
def test_a_frame_rate_step_up_keeps_the_rate_at_the_target() -> None:
    """libx264 spends its rate per frame at the frame rate its context was opened at: fed
    twice the frames after the ladder's step from 15 to 30 fps (no new context) it sent
    twice the target (bench_link: 939 kbit/s for a 651 kbit/s target, until a reopen a
    second later, into the 1 Mbit/s link). It is told half the rate instead."""
    run = EncoderRun(90_000)  # 180p15 for this 640x360 source, 130 kbit/s ceiling
    for _ in range(60):
        run.encode()
    assert run.encoder.rung_label == "180p15"
    per_frame: list[tuple[str, int]] = []
    told: list[int] = []  # the rate libx264 was told, frame by frame
    for _ in range(150):
        run.set_target(140_000)  # held over 1.3 x 180p30's floor: the ladder steps up
        per_frame.append((run.encoder.rung_label or "", sum(p.size for p in run.encode()) * 8))
        told.append(run.encoder._codec.bit_rate if run.encoder._codec is not None else 0)
    stepped = next(i for i, (rung, _) in enumerate(per_frame) if rung == "180p30")
    # each step told (the publisher's count across encoders): down to 180p15, up to 180p30
    assert run.encoder.ladder is not None
    assert run.steps_heard == run.encoder.ladder.steps >= 2, run.steps_heard
    # the first second at 30 fps: a reopen (NOT_FOLLOWING_S) could not have mended it yet
    after = per_frame[stepped : stepped + 30]
    assert len(after) == 30
    # the frame before the step was told the aim itself (the same context, at 15 fps)
    assert told[stepped] == pytest.approx(told[stepped - 1] / 2, rel=0.1), told
    sent_bps = sum(bits for _, bits in after)
    assert 0.6 * 140_000 < sent_bps < 1.2 * 140_000, sent_bps


@pytest.mark.usefixtures("one_x264_thread")
def test_ahead_of_its_target_the_dropper_spreads_its_skips_and_the_picture_keeps_moving() -> None:
    """An encoder ahead of its target when the target falls (frames handed over faster than
    real time, a source catching up after a stall) owes those bits at the lower rate: the
    dropper skips, but spread (a frame goes whenever none has for MAX_UNSENT_S), not one
    after another for a fraction of a second, the picture frozen (bench_link: no frame for
    0.5 s after the estimate fell from 1087 to 319 kbit/s, bits made for the higher target
    paid at the lower one). What goes stays within the target, plus DROP_ANYWAY_S of it."""
    run = EncoderRun(800_000)
    for _ in range(90):
        run.encode()
    for _ in range(30):  # a second of video in a third of one: ahead up to the bar
        run.encode()
        run.now -= 1 / 30 - 1 / 90
    run.set_target(450_000)
    began = run.now
    kept_at: list[float] = []
    bits = largest = 0.0
    for _ in range(45):
        at = run.now
        dropped = run.encoder.frames_dropped
        produced = sum(p.size for p in run.encode()) * 8
        if run.encoder.frames_dropped == dropped:
            kept_at.append(at)
        bits, largest = bits + produced, max(largest, produced)
    assert len(kept_at) < 45  # it skipped
    gaps = [b - a for a, b in zip([began, *kept_at], kept_at, strict=False)]
    assert max(gaps) <= MAX_UNSENT_S + 1 / 30 + 1e-9, gaps
    allowed = 450_000 * (run.now - began + DROP_ANYWAY_S)
    assert bits <= allowed + largest, (bits, allowed)


@pytest.mark.usefixtures("one_x264_thread")
def test_keyframe_asked_for_after_the_target_fell_is_sized_for_the_target() -> None:
    """A keyframe weighs up to the VBV buffer set when the context opened (0.15 s of the
    rate then): asked for after a fall to a quarter of that, it comes from a new context
    sized for the new target, or it would not fit the narrow link's queue."""
    run = EncoderRun(1_200_000)
    for _ in range(30):
        run.encode()
    run.set_target(300_000)
    run.encoder.request_keyframe()
    packets = run.encode()
    assert packets and packets[0].is_keyframe
    assert sum(p.size for p in packets) * 8 <= 0.5 * 300_000


@pytest.mark.usefixtures("one_x264_thread")
@pytest.mark.parametrize(
    ("opened_bps", "rung"),
    [(1_000_000, "360p30"), (800_000, "360p30"), (200_000, "180p30"), (120_000, "180p15")],
)
def test_a_keyframe_reaches_the_receiver_before_the_picture_counts_as_frozen(
    opened_bps: int, rung: str
) -> None:
    """A keyframe takes longer than a frame to cross the link, and the frame before it
    stays on screen meanwhile: one frame interval plus what the keyframe weighs over an
    average frame, at the link's rate, must stay within the 200 ms that count as a freeze.
    The link is the one the target was set for (target = ENCODER_SHARE x the estimate),
    and the target may have fallen since the context opened, short of the reopen's 1.3.
    Measured in bench_link with a buffer of 0.25 s of the target: every periodic keyframe
    at 180p15 on the 300 kbit/s link, from a context opened a little above the target,
    left a 0.26-0.28 s gap, 0.2-0.9 s frozen in that phase."""
    from luxxon_agent.video.bandwidth import ENCODER_SHARE

    run = EncoderRun(opened_bps)
    run.encode()
    target = opened_bps / 1.25
    run.set_target(int(target))
    keyframes: list[int] = []
    frames: list[int] = []
    for _ in range(240):  # eight seconds: a keyframe every two
        packets = run.encode()
        if packets:
            size = sum(p.size for p in packets) * 8
            (keyframes if packets[0].is_keyframe else frames).append(size)
    assert run.encoder.rung_label == rung and run.encoder.reopens == 0
    assert len(keyframes) >= 2, keyframes
    link_bps = target / ENCODER_SHARE
    interval = 1 / (30 if rung.endswith("p30") else 15)
    average = sum(frames) / len(frames)
    waits = [interval + (size - average) / link_bps for size in keyframes]
    assert max(waits) <= 0.2, (waits, keyframes, average)


def test_repair_counts_add_up_over_the_publishers_connections() -> None:
    book = StatsBook(time.monotonic)
    first = RepairCounts(keyframe_requests=5, keyframe_requests_refused=3, repairs_refused=7)
    second = RepairCounts(keyframe_requests=2, repairs_unavailable=4)
    book.new_connection()
    book.add_repairs(first)
    book.connection_closed(SenderReport(1000, 0, None))
    book.new_connection()
    book.add_repairs(second)
    book.connection_closed(None)
    book.new_connection()
    # the open connection's counts on top of the closed ones', as `Publisher.stats()` shows
    live = book.snapshot(PublisherState.PUBLISHING, RepairCounts(keyframe_requests=1))
    assert (live.keyframe_requests, live.keyframe_requests_refused) == (8, 3)
    assert (live.repairs_refused, live.repairs_unavailable) == (7, 4)
    assert live.bytes_sent == 1000
    assert book.snapshot(PublisherState.STOPPED).keyframe_requests == 7


def test_public_surface_matches_all() -> None:
    import luxxon_agent.video as video

    assert video.__all__ == sorted(video.__all__)
    for name in video.__all__:
        assert hasattr(video, name), name
    public = {n for n in dir(video) if not n.startswith("_")}
    # submodules show up as attributes once imported; `publish` is a function and a module
    modules = {n for n in public if isinstance(getattr(video, n), types.ModuleType)}
    assert public - modules - {"annotations"} == set(video.__all__)


def test_publish_refuses_a_stats_interval_out_of_range() -> None:
    from typer.testing import CliRunner

    from luxxon_agent.cli.agent import app

    result = CliRunner().invoke(app, ["publish", "--source", "testsrc://", "--stats-interval", "0"])
    assert result.exit_code != 0
    assert "--stats-interval must be 0.1 to 60 seconds, got 0" in result.output


@pytest.mark.usefixtures("one_x264_thread")
def test_keyframe_asked_for_while_the_ladder_waits_to_step_down_comes_with_the_step() -> None:
    """While the target falls, a step down waits (ladder.DOWN_SETTLE_S), and so does a
    keyframe asked for meanwhile: it would be spent on a size about to go. The step, when
    it comes, is the keyframe: one, not two."""
    run = EncoderRun(400_000)
    for _ in range(30):
        run.encode()
    run.set_target(250_000)  # under 360p30's floor for this source: 270p30 fits
    run.encoder.request_keyframe()
    keyframes: list[str] = []
    for _ in range(30):
        packets = run.encode()
        if any(p.is_keyframe for p in packets):
            keyframes.append(run.encoder.rung_label or "")
    assert keyframes == ["270p30"], keyframes


@pytest.mark.usefixtures("one_x264_thread")
def test_a_step_down_sends_the_new_rungs_frames_whatever_the_old_context_ran_ahead() -> None:
    """The frame dropper skips frames while the encoder has run ahead of its target; bits
    the old context made at the old rate are sent, queued or dropped by the time the ladder
    steps down, and skipping the new rung's frames for all of them froze the picture
    (bench_link: no frame sent for 1.3 s after a step from 845 to 170 kbit/s, to 180p15).
    The new rung's keyframe goes at once, and the dropper skips no more after it than
    after any keyframe."""
    run = EncoderRun(800_000)
    for _ in range(90):
        run.encode()
    frames: list[tuple[str, bool]] = []  # (rung, skipped)
    for counter in range(60):
        if counter % 5 == 0:
            run.set_target(500_000 if counter == 0 else 170_000)
        dropped = run.encoder.frames_dropped
        run.encode()
        frames.append((run.encoder.rung_label or "", run.encoder.frames_dropped > dropped))
    stepped = next(i for i, (rung, _) in enumerate(frames) if rung != "360p30")
    assert not frames[stepped][1], frames
    assert sum(skipped for _, skipped in frames[stepped : stepped + 30]) <= 3, frames
