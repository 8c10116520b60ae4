"""The ingest's HTTP endpoints (RFC 9725 WHIP, and WHEP for viewers), at the app root.

    POST   /whip/{token}              publisher offer -> 201 answer, Location …/{resource}
    DELETE /whip/{token}/{resource}   end that publisher connection
    POST   /whep/{token}              viewer offer -> 201 answer
    DELETE /whep/{token}/{resource}   end that viewer

Errors are plain text, one line: 404 unknown endpoint, 415 a Content-Type
other than application/sdp, 413 an offer over 64 KiB (read no further than
that), 400 an offer the ingest cannot use, with the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response

from luxxon_agent.stub.ingest.inputs import InputState
from luxxon_agent.stub.ingest.sdp import MAX_OFFER_BYTES, BadOffer

if TYPE_CHECKING:
    from luxxon_agent.stub.ingest.backend import WhipIngest

SDP = "application/sdp"

Negotiate = Callable[[InputState, str], Awaitable[tuple[str, str]]]


def _text(status: int, message: str) -> Response:
    return Response(status_code=status, content=message, media_type="text/plain")


class _TooLarge(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it is known to pass `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


def make_router(ingest: WhipIngest) -> APIRouter:
    from luxxon_agent.stub.ingest.backend import InputGone

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
            raw = await read_limited(request, MAX_OFFER_BYTES)
        except _TooLarge:
            return _text(413, f"SDP offer larger than the {MAX_OFFER_BYTES}-byte limit")
        try:
            offer = raw.decode("utf-8")
        except UnicodeDecodeError:
            return _text(400, "SDP offer is not UTF-8 text")
        try:
            answer, resource = await negotiate(entry, offer)
        except BadOffer as exc:
            return _text(400, str(exc))
        except InputGone:
            return not_found()
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
        pc = entry.viewers.pop(resource, None) if entry is not None else None
        if pc is None:
            return not_found()
        await pc.close()
        return Response(status_code=200)

    return router
