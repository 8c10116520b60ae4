"""HttpError and the handlers that turn every failure into the contract's error body."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from luxxon_agent.models import ErrorCode, format_timestamp
from luxxon_agent.secret import redact

logger = logging.getLogger(__name__)


class HttpError(Exception):
    """An error the API answers with: `{code, message, detail}` and `status`."""

    def __init__(
        self, status: int, code: ErrorCode | str, message: str, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = str(code)
        self.message = message
        self.detail = detail

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message, self.detail)


METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
"""The code of a 405 (a route exists at the path, not with this method)."""


def error_response(
    status: int,
    code: str,
    message: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"code": code, "message": message, "detail": detail},
        headers=headers,
    )


def envelope(data: Any, now: datetime, *, status: int = 200, message: str = "OK") -> JSONResponse:
    """The success body: `{statusCode, message, data, timestamp}`."""
    return JSONResponse(
        status_code=status,
        content={
            "statusCode": status,
            "message": message,
            "data": data,
            "timestamp": format_timestamp(now),
        },
    )


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """One line naming the first offending field, and the rest as detail."""
    errors = list(exc.errors())
    if not errors:
        return "invalid request", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "malformed JSON body", str(first.get("ctx", {}).get("error", "")) or None
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(loc) or "body"
    problem = " ".join(str(first.get("msg", "invalid")).split())
    text = f"{field}: {problem}"
    more = len(errors) - 1
    detail = f"{more} more problem(s)" if more else None
    return text, detail


_STATUS_CODES: dict[int, str] = {
    401: ErrorCode.NOT_AUTHENTICATED,
    403: ErrorCode.NOT_AUTHORIZED,
    404: ErrorCode.NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
}


def _allowed_methods(app: FastAPI, path: str) -> str:
    """Every method the API documents for `path` ("GET, POST"), or "" off the API."""
    paths: dict[str, dict[str, object]] = app.openapi().get("paths", {})
    if path in paths:
        # a literal path (/sessions/cancel-all-assignments) is its own resource, even
        # where a template (/sessions/{session_id}) would match it too
        return ", ".join(sorted(method.upper() for method in paths[path]))
    methods: set[str] = set()
    for template, operations in paths.items():
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            methods.update(method.upper() for method in operations)
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as `{code, message, detail}` with a matching status."""

    @app.exception_handler(HttpError)
    async def _http_error(request: Request, exc: HttpError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, detail = validation_message(exc)
        return error_response(400, ErrorCode.INVALID_INPUT, message, detail)

    @app.exception_handler(StarletteHTTPException)
    async def _starlette(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, ErrorCode.INVALID_INPUT)
        if exc.status_code == 404:
            # the path may be a whip/whep URL, whose token is the credential
            message = f"no such endpoint: {request.method} {redact(request.url.path)}"
        elif exc.status_code == 405:
            # Starlette names the methods of the first route matching the path only
            allowed = _allowed_methods(app, request.url.path) or (exc.headers or {}).get(
                "Allow", ""
            )
            message = f"{request.method} is not allowed here; use {allowed or 'another method'}"
            return error_response(405, code, message, headers={"Allow": allowed})
        else:
            message = str(exc.detail)
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, message, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, redact(request.url.path))
        return error_response(
            500, ErrorCode.INTERNAL_SERVER_ERROR, "internal server error", type(exc).__name__
        )
