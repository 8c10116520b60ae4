"""The ingest's HTTP endpoints (RFC 9725 WHIP, and WHEP for viewers), at the app root.

    POST   /whip/{token}              publisher offer -> 201 answer, Location …/{resource}
    DELETE /whip/{token}/{resource}   end that publisher connection
    POST   /whep/{token}              viewer offer -> 201 answer
    DELETE /whep/{token}/{resource}   end that viewer

Errors are plain text, one line: 404 unknown endpoint, 415 a Content-Type
other than application/sdp, 400 an offer the ingest cannot use, with the
reason, 503 with Retry-After a viewer beyond the input's `max_viewers`.
An offer over 64 KiB is answered 413 before it gets here, by the app's
`RequestGuard` (stub/limits.py), which bounds every body: mount this router
behind it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response

from luxxon_agent.stub.ingest.inputs import InputState
from luxxon_agent.stub.ingest.sdp import BadOffer

if TYPE_CHECKING:
    from luxxon_agent.stub.ingest.backend import WhipIngest

SDP = "application/sdp"

Negotiate = Callable[[InputState, str], Awaitable[tuple[str, str]]]


def _text(status: int, message: str) -> Response:
    return Response(status_code=status, content=message, media_type="text/plain")


def make_router(ingest: WhipIngest) -> APIRouter:
    from luxxon_agent.stub.ingest.backend import VIEWERS_RETRY_AFTER_S, InputGone, ViewersFull

    router = APIRouter(include_in_schema=False)

    def not_found() -> Response:
        return _text(404, "no such WHIP/WHEP endpoint")

    async def answer_offer(
        entry: InputState | None, request: Request, negotiate: Negotiate
    ) -> Response:
        """WHIP and WHEP alike: 201 with `negotiate`'s SDP answer and its resource."""
        if entry is None:
            return not_found()
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != SDP:
            return _text(415, "Content-Type must be application/sdp")
        try:
            offer = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            return _text(400, "SDP offer is not UTF-8 text")
        try:
            answer, resource = await negotiate(entry, offer)
        except BadOffer as exc:
            return _text(400, str(exc))
        except InputGone:
            return not_found()
        except ViewersFull as exc:
            response = _text(503, str(exc))
            response.headers["Retry-After"] = str(VIEWERS_RETRY_AFTER_S)
            return response
        return Response(
            status_code=201,
            content=answer,
            media_type=SDP,
            headers={"Location": f"{request.url.path}/{resource}"},
        )

    @router.post("/whip/{token}")
    async def whip_post(token: str, request: Request) -> Response:
        return await answer_offer(ingest.by_whip(token), request, ingest.accept_publisher)

    @router.delete("/whip/{token}/{resource}")
    async def whip_delete(token: str, resource: str) -> Response:
        entry = ingest.by_whip(token)
        if entry is None or not await ingest.end_resource(entry, resource):
            return not_found()
        return Response(status_code=200)

    @router.post("/whep/{token}")
    async def whep_post(token: str, request: Request) -> Response:
        return await answer_offer(ingest.by_whep(token), request, ingest.accept_viewer)

    @router.delete("/whep/{token}/{resource}")
    async def whep_delete(token: str, resource: str) -> Response:
        entry = ingest.by_whep(token)
        if entry is None or not await ingest.end_viewer(entry, resource):
            return not_found()
        return Response(status_code=200)

    return router
