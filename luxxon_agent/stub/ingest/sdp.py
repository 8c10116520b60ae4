"""Checking an SDP offer completely before it may touch a live input.

A WHIP offer must carry everything the ingest needs to receive video from it
(RFC 9725 with RFC 8829/8843): a DTLS fingerprint with a hash aiortc verifies,
`a=setup` actpass/active/passive, ICE credentials, and at least one video
m-line the publisher sends on (`sendonly`/`sendrecv`) with a codec the ingest
decodes (H.264 packetization-mode 1, or VP8). A WHEP offer is checked the same
way, except its video must be something the viewer receives (`recvonly`/`sendrecv`).

aiortc's parser reports malformed input with whatever its code trips over
(KeyError, IndexError, AttributeError, StopIteration, asserts); `check_offer`
turns every one of those into `BadOffer`, with a reason a person can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from aiortc.sdp import MediaDescription, SessionDescription

MAX_MEDIA_LINES = 16
MAX_CANDIDATES_PER_MEDIA = 32
"""Real offers carry 1-3 m-lines and a handful of candidates each; aiortc makes a
transceiver per m-line and aioice pairs every candidate (and logs each one), so an
offer of either up to the body limit (64 KiB, stub/limits.py) would hold the event loop.
Real offers are 2-6 KB."""
SUPPORTED_FINGERPRINT_HASHES = frozenset({"sha-256", "sha-384", "sha-512"})
"""What aiortc's DTLS transport can verify (aiortc.rtcdtlstransport)."""
_FINGERPRINT = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){15,63}$")
PARSE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    LookupError,
    AttributeError,
    AssertionError,
    TypeError,
    StopIteration,
)
"""What aiortc's SDP parser raises on malformed input (it validates with asserts and
dictionary look-ups, not with a parse error of its own)."""

Role = Literal["publisher", "viewer"]
_SENDS = {"publisher": ("sendonly", "sendrecv"), "viewer": ("recvonly", "sendrecv")}


class BadOffer(Exception):
    """The offer cannot be used; the message says why (answered with 400)."""


@dataclass(frozen=True)
class OfferSummary:
    """What a checked offer carries, for the log (never the SDP itself)."""

    size: int
    media: tuple[str, ...]
    """`kind/direction` of each m-line."""
    video_codecs: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"{self.size} bytes, m-lines {', '.join(self.media)},"
            f" video codecs {', '.join(self.video_codecs) or 'none'}"
        )


def check_offer(text: str, role: Role) -> OfferSummary:
    """The offer's summary if the ingest can use it as `role`'s offer; else BadOffer."""
    from aiortc.sdp import SessionDescription

    if not text.lstrip().startswith("v=0"):
        raise BadOffer("not an SDP offer: it must start with v=0")
    try:
        parsed = SessionDescription.parse(text)
    except PARSE_ERRORS as exc:
        raise BadOffer(f"SDP does not parse: {_reason(exc)}") from None
    return _check_parsed(parsed, role, len(text.encode()))


def _check_parsed(parsed: SessionDescription, role: Role, size: int) -> OfferSummary:
    if not parsed.media:
        raise BadOffer("the offer has no m-line")
    if len(parsed.media) > MAX_MEDIA_LINES:
        raise BadOffer(f"the offer has {len(parsed.media)} m-lines; at most {MAX_MEDIA_LINES}")
    wanted = _SENDS[role]
    usable_video = False
    codecs: list[str] = []
    for index, media in enumerate(parsed.media):
        where = f"m-line {index} ({media.kind})"
        if media.kind not in ("audio", "video"):
            continue  # an m=application line is answered as rejected by aiortc
        _check_transport(media, where)
        if len(media.ice_candidates) > MAX_CANDIDATES_PER_MEDIA:
            raise BadOffer(
                f"{where}: {len(media.ice_candidates)} ICE candidates;"
                f" at most {MAX_CANDIDATES_PER_MEDIA}"
            )
        if media.kind != "video":
            continue
        names = _decodable_codecs(media)
        codecs.extend(names)
        # no direction attribute means sendrecv (RFC 8866 6.7)
        if (media.direction or "sendrecv") in wanted and names:
            usable_video = True
    if not usable_video:
        direction = " or ".join(wanted)
        raise BadOffer(
            f"the offer needs a {direction} video m-line with H.264 (packetization-mode=1) or VP8"
        )
    return OfferSummary(
        size=size,
        media=tuple(f"{m.kind}/{m.direction or 'sendrecv'}" for m in parsed.media),
        video_codecs=tuple(dict.fromkeys(codecs)),
    )


def _check_transport(media: MediaDescription, where: str) -> None:
    """DTLS and ICE parameters of one audio/video m-line (session-level ones count too)."""
    if media.dtls is None:
        raise BadOffer(f"{where}: a=setup is missing (actpass, active or passive)")
    if media.dtls.role not in ("auto", "client", "server"):
        raise BadOffer(f"{where}: a=setup must be actpass, active or passive")
    fingerprints = [
        f
        for f in media.dtls.fingerprints
        if f.algorithm.lower() in SUPPORTED_FINGERPRINT_HASHES and _FINGERPRINT.match(f.value)
    ]
    if not fingerprints:
        raise BadOffer(f"{where}: a=fingerprint with sha-256, sha-384 or sha-512 is missing")
    ice = media.ice
    ufrag, pwd = (ice.usernameFragment, ice.password) if ice is not None else (None, None)
    # RFC 8839 5.4: ufrag 4-256 characters, pwd 22-256
    if ufrag is None or not 4 <= len(ufrag) <= 256:
        raise BadOffer(f"{where}: a=ice-ufrag is missing or not 4-256 characters")
    if pwd is None or not 22 <= len(pwd) <= 256:
        raise BadOffer(f"{where}: a=ice-pwd is missing or not 22-256 characters")


def _decodable_codecs(media: MediaDescription) -> list[str]:
    names = []
    for codec in media.rtp.codecs:
        name = codec.mimeType.split("/", 1)[-1].upper()
        if name == "VP8":
            names.append("VP8")
        elif name == "H264" and str(codec.parameters.get("packetization-mode")) == "1":
            names.append("H264")
    return names


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:120]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def first_lines(text: str, count: int = 3, width: int = 80) -> str:
    """The start of an untrusted SDP for a log line: a few lines, each cut to `width`."""
    lines = text.splitlines()[:count]
    return " | ".join(line[:width] for line in lines)
