"""The WHIP ingest checks an offer completely before it touches the live input: junk is
a 4xx with the reason, and the publisher already streaming keeps streaming (issue 12,
items 3, 4 and 5)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from luxxon_agent.backoff import Backoff
from luxxon_agent.stub.ingest import InputView, WhipIngest
from luxxon_agent.video import open_media_source
from tests.support import wait_for
from tests.video.conftest import publishing

SDP = {"Content-Type": "application/sdp"}


async def aiortc_offer(*kinds: str, direction: str = "sendonly") -> str:
    """A real aiortc offer with a transceiver per kind ("video", "audio") or a data channel
    ("application"), ICE gathered."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        for kind in kinds:
            if kind == "application":
                pc.createDataChannel("junk")
            else:
                pc.addTransceiver(kind, direction=direction)
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


def view_of(ingest: WhipIngest, ref: str) -> InputView:
    view = ingest.input_view(ref)
    assert view is not None
    return view


async def frames_advance(ingest: WhipIngest, ref: str, by: int = 5) -> None:
    start = view_of(ingest, ref).frames
    await wait_for(lambda: view_of(ingest, ref).frames >= start + by, 15, "frames advancing")


def drop(pattern: str) -> Callable[[str], str]:
    return lambda sdp: re.sub(pattern, "", sdp, flags=re.MULTILINE)


MALFORMED: dict[str, Callable[[str], str]] = {
    "a=setup:xyzzy": lambda sdp: re.sub(r"a=setup:\w+", "a=setup:xyzzy", sdp),
    "no a=setup": drop(r"^a=setup:.*\r\n"),
    "cut before a=fingerprint": lambda sdp: sdp[: sdp.index("a=fingerprint")],
    "no a=fingerprint": drop(r"^a=fingerprint:.*\r\n"),
    "fingerprint with md5": lambda sdp: re.sub(r"a=fingerprint:\S+", "a=fingerprint:md5", sdp),
    "no a=ice-ufrag": drop(r"^a=ice-ufrag:.*\r\n"),
    "no a=ice-pwd": drop(r"^a=ice-pwd:.*\r\n"),
    "recvonly video": lambda sdp: sdp.replace("a=sendonly", "a=recvonly"),
    "inactive video": lambda sdp: sdp.replace("a=sendonly", "a=inactive"),
    "no decodable codec": lambda sdp: re.sub(r"(a=rtpmap:\d+ )(VP8|H264)/", r"\1XYZ/", sdp),
    "fmtp of an unknown payload type": lambda sdp: sdp + "a=fmtp:250 x=1\r\n",
    "not SDP at all": lambda sdp: "hello",
    "bad m-line": lambda sdp: re.sub(r"m=video \d+", "m=video nine", sdp),
}


@pytest.fixture
async def streaming(
    ingest_server: tuple[WhipIngest, str],
) -> AsyncIterator[tuple[WhipIngest, str, str]]:
    """A real publisher streaming 160x120 into a fresh input: (ingest, ref, whipUrl)."""
    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_offers")
    source = await open_media_source("testsrc://?size=160x120&fps=15")
    async with publishing(video_input.whip_url, source, backoff=Backoff(initial=0.2, maximum=0.5)):
        await wait_for(lambda: view_of(ingest, video_input.ref).frames >= 5, 20, "first frames")
        yield ingest, video_input.ref, video_input.whip_url


async def test_malformed_offers_are_400_with_the_reason_and_the_publisher_keeps_streaming(
    streaming: tuple[WhipIngest, str, str],
) -> None:
    ingest, ref, whip_url = streaming
    base = await aiortc_offer("video")
    refused = {
        "only m=audio": await aiortc_offer("audio"),
        "only m=application": await aiortc_offer("application"),
    } | {name: mutate(base) for name, mutate in MALFORMED.items()}
    async with httpx.AsyncClient(timeout=10) as http:
        for name, offer in refused.items():
            assert offer != base, name
            response = await http.post(whip_url, content=offer.encode(), headers=SDP)
            assert response.status_code == 400, (name, response.status_code, response.text)
            assert response.text and "\n" not in response.text, (name, response.text)
        # the connection they came on is still good, and so is the publisher
        assert (await http.post(whip_url, content=b"v=0", headers={})).status_code == 415
    await frames_advance(ingest, ref)
    view = view_of(ingest, ref)
    assert view.publishers == 1 and view.connected and not view.pending


async def test_offers_over_64_kib_are_413_and_a_wrong_content_type_415(
    streaming: tuple[WhipIngest, str, str],
) -> None:
    ingest, ref, whip_url = streaming
    base = await aiortc_offer("video")
    async with httpx.AsyncClient(timeout=20) as http:
        for size in (1_000_000, 5_000_000):
            padded = base + "a=x:1\r\n" * (size // 7)
            response = await http.post(whip_url, content=padded.encode(), headers=SDP)
            assert response.status_code == 413, response.status_code
            assert "65536" in response.text
        # the limit is on the body: an offer of exactly 64 KiB reaches the SDP check
        at_limit = "v=0\r\n" + "x" * (65536 - 5)
        for body, status in ((at_limit, 400), (at_limit + "x", 413)):
            response = await http.post(whip_url, content=body.encode(), headers=SDP)
            assert response.status_code == status, (len(body), response.text)
        wrong = await http.post(
            whip_url, content=base.encode(), headers={"Content-Type": "application/json"}
        )
        assert wrong.status_code == 415 and "application/sdp" in wrong.text
    await frames_advance(ingest, ref)
    assert view_of(ingest, ref).publishers == 1


async def test_a_valid_offer_that_never_sends_media_does_not_displace_the_publisher(
    streaming: tuple[WhipIngest, str, str],
) -> None:
    ingest, ref, whip_url = streaming
    async with httpx.AsyncClient(timeout=10) as http:
        stray = await http.post(
            whip_url, content=(await aiortc_offer("video")).encode(), headers=SDP
        )
        assert stray.status_code == 201, stray.text
        assert view_of(ingest, ref).pending
        await frames_advance(ingest, ref, by=15)  # a second of media from the live publisher
        view = view_of(ingest, ref)
        assert view.publishers == 1 and view.connected and view.pending
        location = httpx.URL(whip_url).join(stray.headers["Location"])
        assert (await http.delete(location)).status_code == 200
    assert not view_of(ingest, ref).pending
    await frames_advance(ingest, ref)


async def test_a_publisher_coming_back_replaces_the_old_connection_once_it_sends(
    ingest_server: tuple[WhipIngest, str],
) -> None:
    ingest, _ = ingest_server
    video_input = ingest.create_input("ses_back")
    ref = video_input.ref
    first_source = await open_media_source("testsrc://?size=160x120&fps=15")
    async with publishing(video_input.whip_url, first_source):
        await wait_for(lambda: view_of(ingest, ref).frames >= 5, 20, "first publisher")
        second_source = await open_media_source("testsrc://?size=160x120&fps=15")
        # the same whipUrl from a second, working publisher (a restarted agent): it goes
        # live with its first frame, and the first connection is closed
        async with publishing(video_input.whip_url, second_source):
            await wait_for(lambda: view_of(ingest, ref).publishers >= 2, 20, "the takeover")
            await frames_advance(ingest, ref)
