"""Request limits enforced before any route runs: body size and finite JSON numbers.

`RequestGuard` is plain ASGI, outermost in the app. It reads each request body
up to `MAX_BODY_BYTES` (64 KiB, JSON and SDP alike) and answers 413 once it
knows a body is larger, from Content-Length or from the running count; nothing
past the limit is buffered. The rest of a too-large body is read and dropped
(up to `DISCARD_BYTES`) so the client, which is still writing it, receives the
413 instead of a connection reset; a larger one is answered at once and the
connection closed.
A JSON body under /api/v1 is parsed once here to refuse NaN, Infinity and
numbers that overflow a float (`1e999`) with 400 INVALID_INPUT: Python's JSON
parser accepts all three, and no field of the API can hold one. Nesting deeper
than the parser's recursion limit (~1000 levels) is refused the same way,
instead of a RecursionError in the route. The body is then handed to the route
unchanged.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from luxxon_agent.models import ErrorCode
from luxxon_agent.stub.http_error import error_response
from luxxon_agent.wire import API_PREFIX

MAX_BODY_BYTES = 64 * 1024
"""Largest request body on any route (JSON or SDP)."""
DISCARD_BYTES = 8 * 1024 * 1024
"""How much of a too-large body is read and dropped before the 413 (see above)."""


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(f"{name} is not a number the API accepts")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(f"{text[:40]} overflows a 64-bit float")
    return value


def json_problem(body: bytes) -> tuple[str, str | None] | None:
    """(message, detail) when a JSON body holds a non-finite number or nests too deeply;
    None otherwise (also for malformed JSON, which the route's own parser reports)."""
    try:
        json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NonFinite as exc:
        return f"body: {exc}", "NaN and Infinity are refused"
    except RecursionError:
        return "body: JSON nested too deeply", None
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
        if declared.isdigit() and int(declared) > self.limit + DISCARD_BYTES:
            await self._too_large(scope, receive, send, drained=False)
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
            more = message.get("more_body", False)
            if size > self.limit:
                chunks.clear()
                drained = not more or await _discard(receive, DISCARD_BYTES)
                await self._too_large(scope, receive, send, drained=drained)
                return
            chunks.append(chunk)
        body = b"".join(chunks)
        is_api = scope["path"].startswith(API_PREFIX)
        content_type = headers.get("content-type", "")
        # FastAPI parses a body without a Content-Type as JSON too
        if body and is_api and (not content_type or "json" in content_type):
            problem = json_problem(body)
            if problem is not None:
                response = error_response(400, ErrorCode.INVALID_INPUT, *problem)
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

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, drained: bool) -> None:
        message = f"request body larger than the {self.limit}-byte limit"
        response: Response
        if scope["path"].startswith(API_PREFIX):
            response = error_response(413, ErrorCode.INVALID_INPUT, message)
        else:
            response = PlainTextResponse(message, status_code=413)
        if not drained:
            # the rest of the body is still coming: the connection cannot be reused
            response.headers["Connection"] = "close"
        await response(scope, receive, send)


async def _discard(receive: Receive, budget: int) -> bool:
    """Read and drop the rest of a body; False when it is longer than `budget` bytes."""
    while budget >= 0:
        message = await receive()
        if message["type"] != "http.request":
            return False
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return budget >= 0
    return False


MAX_LOG_MESSAGE_CHARS = 2000
"""Longest log message a handler formats; longer ones are cut (an SDP, a body)."""
CHATTY_LIBRARIES = ("aiortc", "aioice")
"""Their DEBUG logs carry whole SDP offers and every STUN packet: untrusted input of
any size, which rich's highlighter would spend minutes on."""


class BoundedMessages(logging.Filter):
    """Cuts a record's message to `MAX_LOG_MESSAGE_CHARS` before any formatter sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if len(message) > MAX_LOG_MESSAGE_CHARS:
            record.msg = f"{message[:MAX_LOG_MESSAGE_CHARS]}… ({len(message)} characters, cut)"
            record.args = None
        return True


def bound_logging() -> None:
    """For a served stub: every root handler formats bounded messages only, and the
    chatty media libraries log from INFO up, even with -v."""
    bounded = BoundedMessages()
    for handler in logging.getLogger().handlers:
        handler.addFilter(bounded)
    for name in CHATTY_LIBRARIES:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))
