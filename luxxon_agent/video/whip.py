"""A WHIP client (RFC 9725): POST an SDP offer, get an answer and a resource, DELETE it.

aiortc has no trickle ICE, so the offer is POSTed once gathering is complete.
ICE servers a server announces in `Link: <...>; rel="ice-server"` headers
can only serve the *next* offer (the current one has already gathered); the
publisher passes them on when it reconnects.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import httpx

from luxxon_agent.errors import MediaError, WhipError
from luxxon_agent.secret import Secret, redact_url

if TYPE_CHECKING:
    from aiortc import RTCIceServer

logger = logging.getLogger(__name__)

SDP_CONTENT_TYPE = "application/sdp"
DEFAULT_TIMEOUT = 10.0
CONNECT_TIMEOUT = 2.0
"""Seconds to open a connection (TCP and TLS): room for one lost SYN (sent again after 1 s)
and a TLS handshake over a slow uplink. Longer only keeps a publisher whose path died
from trying again when it comes back (a dead link answers nothing)."""
_MAX_REDIRECTS = 5


class WhipUnreachable(MediaError):
    """The WHIP server could not be reached (connection refused or timed out, no route,
    no answer): the request says nothing about the server, only about the path."""


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server from a `Link` header."""

    urls: str
    username: str | None = field(default=None, repr=False)
    credential: str | None = field(default=None, repr=False)

    def to_rtc(self) -> RTCIceServer:
        from aiortc import RTCIceServer

        return RTCIceServer(urls=self.urls, username=self.username, credential=self.credential)


@dataclass(frozen=True)
class WhipResource:
    """What a successful POST returns."""

    answer_sdp: str = field(repr=False)
    location: str = field(repr=False)
    """Absolute URL of the WHIP resource (a relative Location is resolved)."""
    etag: str | None = None
    ice_servers: tuple[IceServer, ...] = ()


_LINK_PART = re.compile(r'\s*<([^>]*)>\s*((?:;\s*[^;,]+=?(?:"[^"]*"|[^;,]*))*)')
_PARAM = re.compile(r';\s*([A-Za-z0-9_-]+)\s*=\s*(?:"([^"]*)"|([^;,\s]*))')


def parse_ice_servers(link_headers: list[str]) -> tuple[IceServer, ...]:
    """ICE servers from any number of `Link` header values (each may hold several links)."""
    servers: list[IceServer] = []
    for value in link_headers:
        for match in _LINK_PART.finditer(value):
            url, params_text = match.group(1), match.group(2) or ""
            params = {
                m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
                for m in _PARAM.finditer(params_text)
            }
            if params.get("rel", "").lower() != "ice-server":
                continue
            servers.append(IceServer(url, params.get("username"), params.get("credential")))
    return tuple(servers)


class WhipClient:
    """Talks WHIP to one endpoint. The whipUrl and token are secrets and never logged."""

    def __init__(
        self,
        whip_url: Secret,
        *,
        token: Secret | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.whip_url = whip_url
        self._token = token
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT))
        self._transport = transport
        # made once (loading the CA bundle takes about 40 ms), shared by the clients
        # `drop_connections` makes
        self._tls = httpx.create_ssl_context()
        self._http = self._client()

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self._timeout,
            transport=self._transport,
            verify=self._tls,
            follow_redirects=False,
        )

    async def drop_connections(self) -> None:
        """Forget kept-alive connections: after the path was lost, a request on one would
        wait for an answer that went nowhere instead of connecting afresh."""
        if self._transport is not None:
            return  # a test's transport is the client's to keep
        old, self._http = self._http, self._client()
        await old.aclose()

    def __repr__(self) -> str:
        return f"WhipClient({redact_url(self.whip_url.reveal())})"

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if content_type:
            headers["Content-Type"] = content_type
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.reveal()}"
        return headers

    async def publish(self, offer_sdp: str) -> WhipResource:
        """POST the offer; 201 gives the answer and the resource. Errors raise WhipError."""
        url = self.whip_url.reveal()
        headers = self._headers(SDP_CONTENT_TYPE) | {"Accept": SDP_CONTENT_TYPE}
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                response = await self._http.post(url, content=offer_sdp.encode(), headers=headers)
            except httpx.HTTPError as exc:
                raise _request_error("POST", exc) from exc
            if response.status_code not in (307, 308) or "Location" not in response.headers:
                break
            # followed by hand: httpx drops Authorization on a cross-origin redirect, and
            # WHIP load balancers redirect to another host; only a downgrade to http loses it
            target = urljoin(url, response.headers["Location"])
            if url.startswith("https:") and not target.startswith("https:"):
                headers.pop("Authorization", None)
            url = target
        else:
            raise MediaError("WHIP POST: too many redirects")
        if response.status_code >= 400:
            raise WhipError(response.status_code, response.text or response.reason_phrase)
        if response.status_code != 201:
            raise WhipError(
                response.status_code, f"expected 201 Created, got {response.reason_phrase}"
            )
        location = response.headers.get("Location")
        if not location:
            raise WhipError(response.status_code, "201 without a Location header")
        # relative to the URL that answered (after any 307/308)
        absolute = urljoin(str(response.url), location)
        return WhipResource(
            answer_sdp=response.text,
            location=absolute,
            etag=response.headers.get("ETag"),
            ice_servers=parse_ice_servers(response.headers.get_list("Link")),
        )

    async def delete(self, location: str) -> None:
        """DELETE a WHIP resource; 404/410 count as already gone."""
        try:
            response = await self._http.delete(location, headers=self._headers())
        except httpx.HTTPError as exc:
            raise _request_error("DELETE", exc) from exc
        if response.status_code >= 400 and response.status_code not in (404, 410):
            raise WhipError(response.status_code, response.text, method="DELETE")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> WhipClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _request_error(method: str, exc: httpx.HTTPError) -> MediaError:
    """`WhipUnreachable` when the request never got an answer, `MediaError` otherwise."""
    if isinstance(exc, httpx.NetworkError | httpx.TimeoutException):
        return WhipUnreachable(f"WHIP {method} failed: {type(exc).__name__}")
    return MediaError(f"WHIP {method} failed: {type(exc).__name__}")
