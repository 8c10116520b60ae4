"""The stub's /sessions/<id> page in a real Chromium: publish the fake camera, watch a publisher.

Screenshots go to test-artifacts/browser/ (kept by CI as artifacts).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from luxxon_agent.api import AsyncLuxxonClient
from luxxon_agent.models import Role
from tests.support import wait_frames

from .conftest import (
    ARTIFACTS,
    LAT,
    LNG,
    LiveSession,
    Stub,
    create_workspace,
    launch_chromium,
    live_session,
)
from .injected_wallet import InjectedWallet

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, Playwright

JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass
class PageRun:
    context: BrowserContext
    page: Page
    requested: list[str] = field(default_factory=list)
    """Every URL the page requested."""
    errors: list[str] = field(default_factory=list)
    """Uncaught exceptions in the page's scripts."""

    async def finish(self, base: str) -> None:
        """No script error, no error notice, nothing fetched but from the stub (no CDN)."""
        assert self.errors == []
        notice = self.page.locator("#notice")
        assert not await notice.evaluate("e => e.classList.contains('error')"), (
            await notice.text_content()
        )
        assert [url for url in self.requested if not url.startswith(base + "/")] == []
        await self.context.close()


async def open_page(browser: Browser, wallet: InjectedWallet, url: str) -> PageRun:
    """A fresh context (no cookies) with the wallet injected, at `url`."""
    context = await browser.new_context(viewport={"width": 1100, "height": 700})
    await wallet.install(context)
    run = PageRun(context, await context.new_page())
    run.page.on("request", lambda request: run.requested.append(request.url))
    run.page.on("pageerror", lambda error: run.errors.append(str(error)))
    await run.page.goto(url)
    return run


async def text_of(page: Page, test_id: str) -> str:
    return (await page.get_by_test_id(test_id).text_content() or "").strip()


async def shows(page: Page, test_id: str, text: str, timeout_ms: int) -> None:
    """Wait until the element with `data-testid=test_id` contains `text`."""
    await page.get_by_test_id(test_id).filter(has_text=text).wait_for(timeout=timeout_ms)


async def test_operate_publishes_the_fake_camera_into_the_stub(
    stub: Stub, browser: Browser
) -> None:
    session = await live_session(stub.base)
    wallet = InjectedWallet(session.operator)
    run = await open_page(browser, wallet, f"{stub.base}/sessions/{session.id}?mode=operate")
    page = run.page
    deletes: list[int] = []
    page.on(
        "response",
        lambda r: deletes.append(r.status) if r.request.method == "DELETE" else None,
    )
    assert await text_of(page, "publish-state") == "idle"

    # click one: SIWE with the injected wallet, producer-token, getUserMedia, WHIP
    await page.get_by_role("button", name="Start publishing").click()
    await shows(page, "publish-state", "publishing", 20_000)

    # the page signed the stub's own SIWE message and holds the lx_session cookie
    assert len(wallet.signed) == 1
    assert wallet.signed[0].startswith(
        f"{stub.base.removeprefix('http://')} wants you to sign in with your Ethereum account:\n"
        f"{wallet.address}\n"
    )
    cookies = {c["name"]: c for c in await run.context.cookies(stub.base)}
    assert cookies["lx_session"]["httpOnly"]
    assert await text_of(page, "wallet") == wallet.address

    # the stub decodes what Chromium sends: frames counted, and the frame endpoint has a JPEG
    await wait_frames(stub.ingest, session.video_ref, 30, 20)
    stats = await stub.ingest.stats(session.video_ref)
    assert stats is not None and (stats.width or 0) >= 320
    async with AsyncLuxxonClient(
        f"{stub.base}/api/v1", session_cookie=session.operator_cookie
    ) as client:
        jpeg = await client.frame(session.id)
    assert jpeg.startswith(JPEG_MAGIC) and len(jpeg) > 2_000
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "operate-ingest-frame.jpg").write_bytes(jpeg)

    # the page shows a bitrate from getStats and the session's state
    await shows(page, "bitrate", "kbit/s", 10_000)
    kbps = int((await text_of(page, "bitrate")).split()[0])
    assert kbps > 50
    await shows(page, "session-state", "LIVE", 10_000)
    await page.screenshot(path=str(ARTIFACTS / "operate-publishing.png"))

    # click two: stop, which DELETEs the WHIP resource
    await page.get_by_role("button", name="Stop").click()
    await shows(page, "publish-state", "idle", 10_000)
    assert deletes == [200]
    # nothing came from anywhere but the stub (no CDN), fake media aside
    await run.finish(stub.base)


async def test_camera_picker_appears_with_two_cameras(stub: Stub, playwright: Playwright) -> None:
    session = await live_session(stub.base)
    # a second workspace of the same wallet: the login selects none, the page picks the operator
    await create_workspace(stub.base, session.operator, "operator-also-consumes", Role.CONSUMER)
    wallet = InjectedWallet(session.operator)
    # Chromium's fake device layer offers two cameras with this spec
    browser = await launch_chromium(playwright, "--use-fake-device-for-media-stream=device-count=2")
    try:
        run = await open_page(browser, wallet, f"{stub.base}/sessions/{session.id}")
        page = run.page
        assert await page.locator("#camera-picker").is_hidden()
        await page.get_by_role("button", name="Start publishing").click()
        await shows(page, "publish-state", "publishing", 20_000)
        await page.locator("#camera-picker").wait_for(state="visible", timeout=5_000)
        assert await page.locator("#camera option").count() == 2
        # switching cameras mid-publish swaps the sender's track; the publish carries on
        second = await page.locator("#camera option").nth(1).get_attribute("value")
        await page.locator("#camera").select_option(second)
        await page.wait_for_function(
            "(id) => document.getElementById('video').srcObject"
            "?.getVideoTracks()[0]?.getSettings().deviceId === id",
            arg=second,
            timeout=5_000,
        )
        assert await text_of(page, "publish-state") == "publishing"
        await page.get_by_role("button", name="Stop").click()
        await shows(page, "publish-state", "idle", 10_000)
        await run.finish(stub.base)
    finally:
        await browser.close()


async def test_watch_plays_what_luxxon_agent_publishes(
    stub: Stub, browser: Browser, tmp_path: Path
) -> None:
    session = await live_session(stub.base)
    publisher = start_publisher(session, tmp_path)
    try:
        await wait_for_ingest_frames(stub, session, 10, publisher, tmp_path / "publish.log")

        # the consumer's wallet watches: same page, ?mode=watch, its own SIWE login
        wallet = InjectedWallet(session.consumer)
        run = await open_page(browser, wallet, f"{stub.base}/sessions/{session.id}?mode=watch")
        page = run.page
        await page.get_by_role("button", name="Sign in with wallet").click()
        await shows(page, "play-state", "playing", 20_000)
        assert len(wallet.signed) == 1

        # the video element plays: its time advances and its picture is not black
        await page.wait_for_function(
            "() => { const v = document.getElementById('video');"
            " return v.readyState >= 2 && v.currentTime > 0.5 && v.videoWidth > 0; }",
            timeout=20_000,
        )
        first = await page.evaluate("document.getElementById('video').currentTime")
        await page.wait_for_function(
            f"() => document.getElementById('video').currentTime > {first} + 1.0",
            timeout=10_000,
        )
        brightness = await page.evaluate(MEAN_LUMA_JS)
        assert brightness["width"] >= 320, brightness
        assert brightness["mean"] > 30, brightness
        assert brightness["distinct"] > 8, brightness

        # beside the video: state, meter running, ingest figures
        assert await text_of(page, "session-state") == "LIVE"
        await shows(page, "meter", "clean of", 10_000)
        assert await text_of(page, "position") == "no telemetry yet"
        await post_position(stub, session)
        await shows(page, "position", "4.711000, -74.072000", 10_000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "watch-playing.png"))

        # the consumer ends the session: the page stops playing and shows the final meter
        async with AsyncLuxxonClient(
            f"{stub.base}/api/v1", session_cookie=session.consumer_cookie
        ) as client:
            ended = await client.end(session.id)
        await shows(page, "play-state", "session ENDED", 10_000)
        assert ended.clean_seconds is not None and ended.clean_seconds >= 1
        clean = f"{ended.clean_seconds // 60:02d}:{ended.clean_seconds % 60:02d} clean of"
        await shows(page, "meter", clean, 10_000)
        assert await page.evaluate("document.getElementById('video').srcObject") is None
        await run.finish(stub.base)
    finally:
        stop_publisher(publisher)


async def post_position(stub: Stub, session: LiveSession) -> None:
    """One telemetry sample signed (EIP-712) by the operator's wallet, as the agent sends."""
    from luxxon_agent.eip712 import KeySigner
    from luxxon_agent.telemetry import TelemetryPayload, sign_sample

    payload = TelemetryPayload.from_reading(session.id, datetime.now(UTC), LAT, LNG, 4.0, "gps")
    async with AsyncLuxxonClient(
        f"{stub.base}/api/v1", session_cookie=session.operator_cookie
    ) as client:
        chain_id = (await client.config()).chain_id
        signer = KeySigner(bytes(session.operator.key))
        await client.post_telemetry(session.id, sign_sample(signer, payload, chain_id))


MEAN_LUMA_JS = """() => {
  const video = document.getElementById('video');
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(video, 0, 0);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0;
  const seen = new Set();
  for (let i = 0; i < data.length; i += 4 * 97) {
    const luma = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
    sum += luma;
    seen.add(Math.round(luma / 8));
  }
  return { width: canvas.width, mean: sum / (data.length / (4 * 97)), distinct: seen.size };
}"""


def start_publisher(session: LiveSession, tmp_path: Path) -> subprocess.Popen[bytes]:
    """`luxxon-agent publish` with testsrc://, the whipUrl in the environment (never argv)."""
    env = {
        **os.environ,
        "LUXXON_WHIP_URL": session.whip_url.reveal(),
        "LUXXON_ICE_LOOPBACK": "1",
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    with (tmp_path / "publish.log").open("wb") as log:
        return subprocess.Popen(
            [
                str(Path(sys.executable).with_name("luxxon-agent")),
                "publish",
                "--source",
                "testsrc://?size=640x360&fps=15",
                "--seconds",
                "90",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


async def wait_for_ingest_frames(
    stub: Stub,
    session: LiveSession,
    count: int,
    publisher: subprocess.Popen[bytes],
    log: Path,
) -> None:
    def running() -> None:
        # the publisher's own last lines say why it stopped (its log redacts the whipUrl)
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        assert publisher.poll() is None, (
            f"luxxon-agent publish exited with {publisher.returncode}:\n{tail}"
        )

    await wait_frames(stub.ingest, session.video_ref, count, 30, alive=running)


def stop_publisher(publisher: subprocess.Popen[bytes]) -> None:
    if publisher.poll() is None:
        publisher.send_signal(signal.SIGINT)
        try:
            publisher.wait(10)
        except subprocess.TimeoutExpired:
            publisher.kill()
            publisher.wait(5)
