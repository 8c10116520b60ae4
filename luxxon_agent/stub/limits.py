"""Request limits enforced before any route runs: body size and finite JSON numbers.

`RequestGuard` is plain ASGI, outermost in the app. It reads each request body
up to `MAX_BODY_BYTES` (64 KiB, JSON and SDP alike) and answers 413 as soon as
it knows a body is larger: from Content-Length before reading anything, or
from the running count while reading, so nothing past the limit is buffered.
A JSON body under /api/v1 is parsed once here to refuse NaN, Infinity and
numbers that overflow a float (`1e999`) with 400 INVALID_INPUT: Python's JSON
parser accepts all three, and no field of the API can hold one. The body is
then handed to the route unchanged.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from luxxon_agent.models import API_PREFIX, ErrorCode
from luxxon_agent.stub.http_error import error_response

MAX_BODY_BYTES = 64 * 1024
"""Largest request body on any route (JSON or SDP)."""


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(f"{name} is not a number the API accepts")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(f"{text[:40]} overflows a 64-bit float")
    return value


def non_finite_number(body: bytes) -> str | None:
    """Why a JSON body holds a non-finite number, or None (also for malformed JSON, which
    the route's own parser reports)."""
    try:
        json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NonFinite as exc:
        return str(exc)
    except ValueError:
        return None
    return None


class RequestGuard:
    """Bounded bodies and finite JSON numbers, for every HTTP route of the app."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                # the client went away before sending its body
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        is_api = scope["path"].startswith(API_PREFIX)
        if body and is_api and "json" in headers.get("content-type", ""):
            problem = non_finite_number(body)
            if problem is not None:
                response = error_response(
                    400, ErrorCode.INVALID_INPUT, f"body: {problem}", "NaN and Infinity are refused"
                )
                await response(scope, receive, send)
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body larger than the {self.limit}-byte limit"
        if scope["path"].startswith(API_PREFIX):
            response = error_response(413, ErrorCode.INVALID_INPUT, message)
        else:
            from starlette.responses import PlainTextResponse

            response = PlainTextResponse(message, status_code=413)
        # the rest of the body is not read: close the connection rather than drain it
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
