"""The session page, `/sessions/<id>`: publish from a browser (Operate) or watch (Watch).

Served at the site root like the production console's
`https://console.luxxon.dev/sessions/<sessionId>`, not under /api/v1:

    GET /sessions/{id}                  the page (?mode=operate, the default, or ?mode=watch)
    GET /static/session/{file}          its HTML, CSS and ES modules, shipped in the package
    GET /sessions/{id}/live.json        page data: latest telemetry position, running meter,
                                        ingest figures (stub only, not part of the API contract)

The page itself is public; everything it shows comes from the API with the
`lx_session` cookie its SIWE login set, so the same cookie gates it. The data
endpoint authorises exactly like `GET /api/v1/sessions/:id` (either side).

The app mounts each route module's `router` under /api/v1 and its optional
`root_router` at the app root; everything here is in `root_router`.
"""

from __future__ import annotations

import re
import sqlite3
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from luxxon_agent.meter import earnings, session_seconds
from luxxon_agent.models import ErrorCode, SessionState, format_timestamp
from luxxon_agent.stub.auth import SessionReader
from luxxon_agent.stub.http_error import HttpError
from luxxon_agent.stub.ingest import WhipIngest
from luxxon_agent.stub.metering import meter_session
from luxxon_agent.stub.routes.sessions import visible_session
from luxxon_agent.stub.runtime import LIVE_STATES, StubRuntime, ok, runtime
from luxxon_agent.stub.store import parse_ts

STATIC_PREFIX = "/static/session"
_STATIC_NAME = re.compile(r"^[a-z]+\.(html|css|js)$")
_MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
}
# Scripts and styles only from this origin (nothing from a CDN). fetch() may reach any
# http(s) origin because a production whipUrl lives on the video provider's host.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self' http: https:; media-src 'self' blob: mediastream:;"
    " img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

root_router = APIRouter(tags=["pages"], include_in_schema=False)


def _static_file(name: str) -> bytes:
    return resources.files("luxxon_agent.stub").joinpath("static", name).read_bytes()


def _page_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


@root_router.get("/sessions/{session_id}")
async def session_page(session_id: str) -> Response:
    """The page; the session id is read from the path by the page's script."""
    return Response(
        _static_file("session.html"), media_type=_MEDIA_TYPES["html"], headers=_page_headers()
    )


@root_router.get(STATIC_PREFIX + "/{name}")
async def static_file(name: str) -> Response:
    if not _STATIC_NAME.match(name):
        raise HttpError(404, ErrorCode.NOT_FOUND, "no such file", name)
    try:
        body = _static_file(name)
    except FileNotFoundError:
        raise HttpError(404, ErrorCode.NOT_FOUND, "no such file", name) from None
    return Response(body, media_type=_MEDIA_TYPES[name.rsplit(".", 1)[1]], headers=_page_headers())


def _latest_position(stub: StubRuntime, session_id: str) -> dict[str, Any] | None:
    """The newest accepted telemetry sample of the session (routes/telemetry.py stores them)."""
    row = stub.store.one(
        "SELECT captured_at, lat, lng, accuracy_meters, source FROM telemetry"
        " WHERE session_id = ? ORDER BY captured_at_ms DESC LIMIT 1",
        (session_id,),
    )
    if row is None:
        return None
    return {
        "capturedAt": row["captured_at"],
        "lat": row["lat"],
        "lng": row["lng"],
        "accuracyMeters": row["accuracy_meters"],
        "source": row["source"],
    }


def _meter(stub: StubRuntime, row: sqlite3.Row) -> dict[str, Any]:
    """The meter as `/end` would run it now (LIVE), or as it ran (ENDED)."""
    rate = int(row["rate_per_second_micro_usdc"])
    started = parse_ts(row["started_at"])
    figures: dict[str, Any] = {
        "mode": stub.config.meter.value,
        "startedAt": row["started_at"],
        "ratePerSecondMicroUsdc": str(rate),
        "final": row["state"] == SessionState.ENDED.value,
        "elapsedSeconds": 0,
        "cleanSeconds": 0,
        "failedSeconds": 0,
        "chargedMicroUsdc": "0",
    }
    if started is None:
        return figures
    if figures["final"]:
        clean, failed = row["clean_seconds"] or 0, row["failed_seconds"] or 0
        # the metered seconds, capped at maxDuration like the running figure, not ended - started
        figures.update(
            elapsedSeconds=clean + failed,
            cleanSeconds=clean,
            failedSeconds=failed,
            chargedMicroUsdc=str(row["charged_micro_usdc"] or 0),
        )
        return figures
    if row["state"] not in LIVE_STATES:
        return figures
    # the same meter, with the same maxDuration cap, as /end will run
    reading = meter_session(stub, row, stub.now())
    result = reading.result
    split = earnings(result.clean_seconds, rate, stub.config.fee_bps)
    figures.update(
        elapsedSeconds=session_seconds(started, reading.ended_at),
        cleanSeconds=result.clean_seconds,
        failedSeconds=result.failed_seconds,
        chargedMicroUsdc=str(split.charged_micro_usdc),
    )
    return figures


async def _ingest_figures(stub: StubRuntime, row: sqlite3.Row) -> dict[str, Any] | None:
    if not isinstance(stub.video, WhipIngest) or not row["video_backend_ref"]:
        return None
    stats = await stub.video.stats(row["video_backend_ref"])
    if stats is None:
        return None
    return {
        "frames": stats.frames,
        "bitrateBps": round(stats.bitrate_bps),
        "width": stats.width,
        "height": stats.height,
        "lastFrameAt": format_timestamp(stats.last_frame_at) if stats.last_frame_at else None,
        "publishers": stats.publishers,
    }


@root_router.get("/sessions/{session_id}/live.json")
async def live(session_id: str, request: Request, found: SessionReader) -> JSONResponse:
    """What the Watch side shows beside the video; readable by either side of the session."""
    stub = runtime(request)
    row = visible_session(stub, session_id, found.workspace_id)
    return ok(
        request,
        {
            "sessionId": row["id"],
            "state": row["state"],
            "position": _latest_position(stub, row["id"]),
            "meter": _meter(stub, row),
            "ingest": await _ingest_figures(stub, row),
        },
    )


router = APIRouter()
"""Nothing under /api/v1: the page and its data are not part of the API contract."""
