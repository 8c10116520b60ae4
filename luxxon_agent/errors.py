"""One exception tree for everything luxxon_agent raises.

    LuxxonError                    root: `except LuxxonError` catches all of ours
    ├── ConfigError                bad or missing configuration (names the key)
    ├── AuthError                  missing, bad or revoked credentials
    ├── ApiError                   the API answered with an error body (status, code;
    │                              callers switch on .code)
    ├── TransportError             the API could not be reached
    │   ├── RequestTimeout         a phase of the request timed out
    │   └── NetworkError           connection refused, reset, DNS, TLS
    ├── MediaError                 video source, encoder or WebRTC failure
    │   └── WhipError              a WHIP server refused (status, server text)
    ├── PositionSourceError        GPS source unusable (open failed, bad URL)
    └── TelemetryError             signing, spooling or uploading failed
        └── SignatureError         a malformed, non-canonical or unrecoverable signature

Packages add a few leaves of their own under `LuxxonError` (the agent's
`StartupError`, `StatusEndpointError`, …); the tree above is this module's
exactly (tests/test_errors.py checks it against the classes).
Each error's `str()` is one line fit for a user; the CLI prints it as is.
Errors never carry secrets: callers pass redacted forms (see `secret.Secret`).
"""

from __future__ import annotations

# Process exit codes, the same for `luxxon` and `luxxon-agent` (docs/cli.md).
EXIT_OK = 0
EXIT_FAILURE = 1
"""The command failed: an API error, the network, media, position or telemetry."""
EXIT_USAGE = 2
"""Bad usage or invalid configuration; systemd does not restart on it."""
EXIT_STARTUP_FAILURE = 3
"""The agent could not start (e.g. its status port is taken)."""
EXIT_AUTH = 4
"""Credentials missing or refused; systemd does not restart on it."""
EXIT_INTERRUPTED = 130
"""Interrupted (Ctrl-C), as a shell reports SIGINT."""


class LuxxonError(Exception):
    """Root of every error luxxon_agent raises on purpose."""

    exit_code = EXIT_FAILURE


class ConfigError(LuxxonError):
    """Configuration is missing or invalid; the message names the key."""

    exit_code = EXIT_USAGE


class AuthError(LuxxonError):
    """Credentials are missing, malformed or refused."""

    # its own code, so systemd can stop restarting on it (RestartPreventExitStatus)
    exit_code = EXIT_AUTH


class ApiError(LuxxonError):
    """The API answered with an error envelope.

    `code` is the server's code (an unknown one is kept verbatim),
    `status` the HTTP status, `detail` the optional extra text,
    `retry_after` the server's Retry-After in seconds when it sent one.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: str | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        self.code = code
        self.message = message
        self.detail = detail
        self.method = method
        self.path = path
        super().__init__(self._one_line())

    def _one_line(self) -> str:
        where = f" ({self.method} {self.path})" if self.method and self.path else ""
        text = f"{self.code}: {self.message}"
        if self.detail:
            text += f" — {self.detail}"
        return f"{text} [HTTP {self.status}]{where}"


class TransportError(LuxxonError):
    """The request did not get an answer from the server."""


class RequestTimeout(TransportError):
    """A phase of the request (connect, read, write, pool) timed out."""


class NetworkError(TransportError):
    """The connection failed: refused, reset, DNS or TLS."""


class MediaError(LuxxonError):
    """A video source, codec or WebRTC step failed."""


class WhipError(MediaError):
    """A WHIP server answered with an error status."""

    def __init__(self, status: int, text: str, *, method: str = "POST") -> None:
        self.status = status
        self.text = text
        self.method = method
        super().__init__(f"WHIP {method} refused: HTTP {status}: {text.strip()[:200]}")


class PositionSourceError(LuxxonError):
    """A position source cannot be used (bad URL, cannot open)."""


class TelemetryError(LuxxonError):
    """Signing, spooling or uploading telemetry failed."""


class SignatureError(TelemetryError):
    """A signature or key is malformed, non-canonical or recovers to no key."""
