"""`luxxon-agent publish`: one source to one WHIP endpoint, with the agent's reconnect logic.

The whipUrl is a credential: pass it as LUXXON_WHIP_URL (or `--whip-url -`
to read it from stdin) rather than on the command line, where `ps` shows it
to every user. The same goes for LUXXON_WHIP_TOKEN. `--session ID` asks the
API for the session's whipUrl instead (GET /sessions/ID/producer-token).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from luxxon_agent.cli._common import configure_logging, handle_errors, run_async
from luxxon_agent.errors import ConfigError

if TYPE_CHECKING:
    import asyncio

    from luxxon_agent.secret import Secret
    from luxxon_agent.video import PublisherOptions, PublisherStats

WHIP_URL_ENV = "LUXXON_WHIP_URL"
WHIP_TOKEN_ENV = "LUXXON_WHIP_TOKEN"
# same as luxxon_agent.video.LOOPBACK_ENV, repeated so --help does not import the video package
LOOPBACK_ENV = "LUXXON_ICE_LOOPBACK"


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command("publish")(publish_command)


def _read_secret(value: str | None, env: str, what: str) -> Secret | None:
    from luxxon_agent.secret import Secret

    if value == "-":
        value = sys.stdin.readline().strip()
        if not value:
            raise ConfigError(f"{what}: nothing on stdin")
    value = value or os.environ.get(env) or None
    return Secret(value) if value else None


def _require_frames(stats: PublisherStats) -> None:
    """A smoke test that never got a frame out must not exit 0."""
    from luxxon_agent.errors import MediaError

    if stats.frames_sent == 0:
        raise MediaError(f"no frame was published (last error: {stats.last_error or 'none'})")


@dataclass(frozen=True)
class _StatsLines:
    """How `publish` shows its stats: JSON lines or a status line, and how often."""

    as_json: bool
    interval: float


def _render(stats: PublisherStats, as_json: bool) -> None:
    if as_json:
        # one object a line, so a log shipper or `jq` can follow it
        typer.echo(json.dumps(stats.to_dict(), default=str))
        return
    line = (
        f"{stats.state.value:<12} {stats.bitrate_bps / 1000:8.0f} kbit/s {stats.fps:5.1f} fps "
        f"frames {stats.frames_sent:<7} lost {stats.packets_lost:<5} "
        f"reconnects {stats.reconnects:<3} encoder {stats.encoder or '-'}"
    )
    if stats.estimate_bps is not None:
        target = "-" if stats.target_bps is None else f"{stats.target_bps / 1000:.0f}"
        rtt = "-" if stats.rtt_ms is None else f"{stats.rtt_ms:.0f}"
        line += (
            f" | link {stats.estimate_bps / 1000:.0f} target {target} sent"
            f" {stats.sent_bps / 1000:.0f} kbit/s loss {stats.loss * 100:.1f} % rtt {rtt} ms"
            f" rtx {stats.retransmitted_bytes // 1000} kB pad {stats.padding_bytes // 1000} kB"
            f" freezes {stats.freezes}"
            f" keyframe requests {stats.keyframe_requests} ({stats.keyframe_requests_refused}"
            f" refused) holes {stats.repairs_refused + stats.repairs_unavailable}"
            f" feedback {'transport-cc' if stats.transport_cc else 'reports'}"
        )
    if stats.rung is not None:
        line += f" rung {stats.rung}"
    if stats.mode is not None:
        line += f" mode {stats.mode} ({stats.mode_switches} switches)"
    typer.echo(line, err=True)


@handle_errors
def publish_command(
    source: Annotated[
        str,
        typer.Option(
            "--source",
            help="testsrc://?size=1280x720&fps=30 | file://clip.mp4?loop=1 | "
            "v4l2:///dev/video0?size=1280x720&fps=30&format=mjpeg|h264 | rtsp://camera/stream",
        ),
    ] = "testsrc://?size=1280x720&fps=30",
    whip_url: Annotated[
        str | None,
        typer.Option(
            "--whip-url",
            help=f"WHIP endpoint; `-` reads it from stdin. Prefer ${WHIP_URL_ENV}: argv is "
            "visible to every user",
            show_default=False,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help=f"Bearer token for the WHIP server; `-` reads stdin. Prefer ${WHIP_TOKEN_ENV}",
            show_default=False,
        ),
    ] = None,
    session: Annotated[
        str | None,
        typer.Option("--session", help="Get the whipUrl of this LIVE session from the API"),
    ] = None,
    seconds: Annotated[
        float | None, typer.Option("--seconds", help="Stop after this long [default: never]")
    ] = None,
    codec: Annotated[str, typer.Option("--codec", help="h264 or vp8")] = "h264",
    bitrate: Annotated[int, typer.Option("--bitrate", help="Bitrate cap, bit/s")] = 2_000_000,
    keyframe_interval: Annotated[
        float, typer.Option("--keyframe-interval", help="Seconds between keyframes")
    ] = 2.0,
    encoder: Annotated[
        str, typer.Option("--encoder", help="auto, libx264 or h264_v4l2m2m")
    ] = "auto",
    max_level: Annotated[
        int | None,
        typer.Option("--max-level", help="Transcode H.264 above this level_idc (31 = 3.1)"),
    ] = None,
    audio: Annotated[str | None, typer.Option("--audio", help="alsa://default, or none")] = None,
    loopback: Annotated[
        bool,
        typer.Option(
            "--loopback", envvar=LOOPBACK_ENV, help="Only 127.0.0.1 ICE candidates (local tests)"
        ),
    ] = False,
    state_file: Annotated[
        str | None,
        typer.Option("--state-file", help="Where the last WHIP Location is kept [per whipUrl]"),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", envvar="LUXXON_BASE_URL", help="API base URL")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="LUXXON_API_KEY", help="API key (prefer the env var)"),
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", envvar="LUXXON_PROFILE", help="Profile name")
    ] = None,
    adapt: Annotated[
        bool,
        typer.Option(
            "--adapt/--no-adapt",
            help="Follow the link's estimated bandwidth (--no-adapt: always send at --bitrate)",
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines of stats on stdout")] = False,
    stats_interval: Annotated[
        float,
        typer.Option("--stats-interval", help="Seconds between stats lines (0.1 to 60)"),
    ] = 1.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Publish one source to one WHIP endpoint, reconnecting by itself; shows bitrate and fps."""
    from luxxon_agent.video import PublisherOptions, VideoOptions

    configure_logging(verbose, json_lines=as_json)
    if not 0.1 <= stats_interval <= 60:
        raise ConfigError(f"--stats-interval must be 0.1 to 60 seconds, got {stats_interval:g}")
    url = _read_secret(whip_url, WHIP_URL_ENV, "--whip-url")
    bearer = _read_secret(token, WHIP_TOKEN_ENV, "--token")
    if (url is None) == (session is None):
        raise ConfigError(
            f"give exactly one of --session ID or a whipUrl (${WHIP_URL_ENV} or --whip-url)"
        )
    try:
        video = VideoOptions(
            codec=codec,
            bitrate=bitrate,
            keyframe_interval=keyframe_interval,
            encoder=encoder,
            max_level=max_level,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    options = PublisherOptions(video=video, token=bearer, adaptive=adapt)
    if audio in ("none", ""):
        audio = None
    run_async(
        _publish(
            url,
            session,
            source,
            seconds,
            options,
            audio,
            loopback,
            Path(state_file) if state_file else None,
            (base_url, api_key, profile),
            _StatsLines(as_json, stats_interval),
        )
    )


async def _publish(
    url: Secret | None,
    session: str | None,
    source: str,
    seconds: float | None,
    options: PublisherOptions,
    audio: str | None,
    loopback: bool,
    state_path: Path | None,
    api: tuple[str | None, str | None, str | None],
    lines: _StatsLines,
) -> None:
    import asyncio

    from luxxon_agent.signals import stop_on_signals
    from luxxon_agent.video import pin_ice_to_loopback

    if loopback:
        pin_ice_to_loopback()
    stop = asyncio.Event()
    with stop_on_signals(stop):
        if session is not None:
            await _publish_session(
                session, source, seconds, options, audio, state_path, api, lines, stop
            )
            return
        assert url is not None
        await _publish_checked(url, source, seconds, options, audio, state_path, lines, stop)


async def _publish_checked(
    url: Secret,
    source: str,
    seconds: float | None,
    options: PublisherOptions,
    audio: str | None,
    state_path: Path | None,
    lines: _StatsLines,
    stop: asyncio.Event,
) -> None:
    """`publish()` with the CLI's state file and rendering; fails if no frame was sent."""
    from luxxon_agent.video import default_state_path, publish

    options = replace(options, state_path=state_path or default_state_path(url))
    _require_frames(
        await publish(
            url,
            source,
            options,
            seconds=seconds,
            audio=audio,
            on_stats=lambda s: _render(s, lines.as_json),
            stats_interval=lines.interval,
            stop=stop,
        )
    )


async def _publish_session(
    session: str,
    source: str,
    seconds: float | None,
    options: PublisherOptions,
    audio: str | None,
    state_path: Path | None,
    api: tuple[str | None, str | None, str | None],
    lines: _StatsLines,
    stop: asyncio.Event,
) -> None:
    from luxxon_agent.api import AsyncLuxxonClient
    from luxxon_agent.errors import ApiError
    from luxxon_agent.identity import Profile, resolve_api_key
    from luxxon_agent.models import SessionState
    from luxxon_agent.secret import Secret

    base_url, explicit_key, profile_name = api
    profile = Profile.open(profile_name)
    base = (base_url or profile.base_url() or "").rstrip("/")
    if not base:
        raise ConfigError("--session needs the API: set --base-url or LUXXON_BASE_URL")
    key, _ = resolve_api_key(
        profile,
        explicit=explicit_key,
        credentials_directory=os.environ.get("CREDENTIALS_DIRECTORY"),
    )
    async with AsyncLuxxonClient(base, api_key=key) as client:
        token = await client.producer_token(session)
        url = Secret(token.whip_url)

        async def refetch() -> Secret | None:
            try:
                return Secret((await client.producer_token(session)).whip_url)
            except ApiError:
                return None

        async def is_live() -> bool:
            # PAUSED is still the session's life: keep the endpoint
            state = (await client.get_session(session)).state
            return state in (SessionState.LIVE, SessionState.PAUSED)

        options = replace(options, refetch=refetch, is_live=is_live)
        await _publish_checked(url, source, seconds, options, audio, state_path, lines, stop)
