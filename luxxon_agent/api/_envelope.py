"""Pure functions over response bodies: envelope unwrap and error parsing (no I/O)."""

from __future__ import annotations

from typing import Any

import httpx

from luxxon_agent.backoff import parse_retry_after
from luxxon_agent.errors import ApiError

_ENVELOPE_KEYS = frozenset({"statusCode", "data"})


def unwrap(body: Any) -> Any:
    """The payload of a success body: `data` of an envelope, or the bare body itself."""
    if isinstance(body, dict) and _ENVELOPE_KEYS <= body.keys():
        return body["data"]
    return body


def error_from_response(response: httpx.Response, method: str, path: str) -> ApiError:
    """An ApiError from an error response; codes are kept verbatim, known or not.

    A body that is not the contract's error shape (a proxy's HTML page, an
    envelope-wrapped error) still gives a one-line error with the HTTP status.
    """
    code, message, detail = _error_fields(response)
    return ApiError(
        response.status_code,
        code,
        message,
        detail,
        method=method,
        path=path,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


def _error_fields(response: httpx.Response) -> tuple[str, str, str | None]:
    fallback_code = "HTTP_ERROR" if response.status_code < 500 else "INTERNAL_SERVER_ERROR"
    try:
        body = response.json()
    except ValueError:
        text = " ".join(response.text.split())[:200]
        return fallback_code, text or response.reason_phrase or "no body", None
    if isinstance(body, dict) and isinstance(body.get("data"), dict) and "code" in body["data"]:
        body = body["data"]
    if not isinstance(body, dict):
        return fallback_code, _one_line(body), None
    code = body.get("code") or body.get("error") or fallback_code
    message = body.get("message") or response.reason_phrase or "error"
    detail = body.get("detail")
    return (
        _one_line(code),
        _one_line(message),
        None if detail is None else _one_line(detail),
    )


def _one_line(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return " ".join(text.split())[:500]
