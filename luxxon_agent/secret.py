"""A wrapper for secrets so that logs, reprs and tracebacks cannot leak them."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping


class Secret:
    """Holds a secret string; `str()` and `repr()` show only a redacted hint.

    Call `reveal()` at the one place the plaintext is really needed
    (an Authorization header, a WHIP POST, a keystore write).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError("a secret must be a non-empty string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secret is not picklable")


def redact_url(url: str) -> str:
    """Keep scheme and host of a URL whose path is a credential (a whipUrl)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***"
    host = rest.split("/", 1)[0].rpartition("@")[2]
    return f"{scheme}://{host}/***"


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@")


def strip_userinfo(text: str) -> str:
    """`text` (a URL, or a message quoting one) with every `user:password@` shown as `***@`.

    Camera URLs carry credentials (rtsp://admin:secret@camera/stream), and
    FFmpeg quotes the URL it failed to open in its error text.
    """
    return _USERINFO.sub(r"\1***@", text)


# ---- redaction of secrets inside free text (log lines, error messages) ----

_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    # a whipUrl/whepUrl path segment is the credential itself
    (re.compile(r"(/wh[ie]p/)[^/\s?#\"'<>]+"), r"\1***"),
    (re.compile(r"\b(lxxn_(?:live|test)_)[A-Za-z0-9]+"), r"\1***"),
    (re.compile(r"(lx_session=)[^;,&\s\"']+"), r"\1***"),
    # 32 bytes of hex is a private key (a tx hash looks the same; hiding one costs nothing)
    (re.compile(r"(?<![0-9A-Za-z])0x[0-9a-fA-F]{64}(?![0-9a-fA-F])"), "0x***"),
    # the user and password in scheme://user:password@host
    (_USERINFO, r"\1***@"),
)


def redact(text: str) -> str:
    """`text` with every secret this project handles replaced by `***`: WHIP/WHEP tokens,
    API keys, lx_session cookie values, hex private keys and URL passwords."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def _redact_arg(value: object) -> object:
    # numbers stay numbers so %d placeholders still format; anything else is judged by its text
    if value is None or isinstance(value, int | float):
        return value
    text = str(value)
    cleaned = redact(text)
    return value if cleaned == text else cleaned


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites each record so no secret reaches a handler.

    Each argument is redacted in place (so formatters that unpack `record.args`,
    like uvicorn's access formatter, keep working); if the formatted message
    still holds a secret (in the template, or split across template and
    arguments), the record is flattened to its redacted text. Exception text
    is redacted too. It never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping):
            record.args = {key: _redact_arg(value) for key, value in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(value) for value in record.args)
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            # a malformed record fails in the handler anyway; still scrub its template
            if isinstance(record.msg, str):
                record.msg = redact(record.msg)
        else:
            if redact(message) != message:
                record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FORMATTER = logging.Formatter()


def install_redaction(target: logging.Logger | logging.Handler) -> None:
    """Add one RedactingFilter to `target` (a handler, or a logger that logs directly)."""
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(RedactingFilter())
