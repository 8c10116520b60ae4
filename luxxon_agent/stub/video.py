"""The stub's video seam: VideoBackend, and MintOnlyVideoBackend which only mints URLs.

The real WHIP ingest (stub/ingest/) implements the same protocol. A backend
may carry a FastAPI `router` for its own endpoints (WHIP/WHEP resources); the
app mounts it at the root, outside /api/v1, because whipUrls are whole URLs.
A backend that holds connections may also have `async aclose()`: the stub's
shutdown (StubRuntime.stop) awaits it when present.

When the stub starts, StubRuntime calls `restore(store, open_inputs)` once,
before any request, with every input whose session is not torn down: a stub
restarted on the same database must serve the whipUrls it already handed out.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from luxxon_agent.models import ApiModel, Session, Timestamp

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fastapi import APIRouter

    from luxxon_agent.stub.store import Store


@dataclass(frozen=True)
class VideoInput:
    """One session's video input: the backend's id for it and its two URLs."""

    ref: str
    """Opaque id (the session's videoBackendRef)."""
    whip_url: str = field(repr=False)
    """Publish URL; it is the credential, so it is never shown in a repr or log."""
    whep_url: str
    """Playback URL for the consumer."""


@dataclass(frozen=True)
class OpenInput:
    """An input the store says is still open (its session is ASSIGNED, LIVE or PAUSED)."""

    session_id: str
    video: VideoInput
    created_at: datetime
    """When the input was minted (the session's assignedAt)."""


@dataclass(frozen=True)
class MediaStatus:
    """Whether media is arriving at an input: the stub's `video` extension of a session."""

    connected: bool
    """A publisher connection is live on the input."""
    last_frame_at: datetime | None
    """Arrival of the newest decoded frame (None before the first)."""
    frames_received: int


class SessionVideo(ApiModel):
    """The stub's `video` extension of a Session (not in the production contract):
    whether media reaches the ingest, so a consumer can tell a live picture from a
    frozen one."""

    connected: bool
    last_frame_at: Timestamp | None = None
    frames_received: int


class StubSession(Session):
    """A Session as the stub answers it: the contract's fields, and `video` when the
    video backend can tell (the WHIP ingest; a mint-only backend cannot)."""

    video: SessionVideo | None = None


@runtime_checkable
class VideoBackend(Protocol):
    """What the API needs from a video service (Cloudflare Stream in production)."""

    router: APIRouter | None

    def create_input(self, session_id: str) -> VideoInput:
        """Mint an input for `session_id`; must not block (it runs inside a request)."""

    async def close_input(self, ref: str) -> None:
        """Tear the input down; unknown or already closed refs are not an error."""

    def disconnect_windows(self, ref: str) -> list[tuple[datetime, datetime]]:
        """Periods the publisher was away while the input existed, for the wall-clock meter."""

    def latest_frame_jpeg(self, ref: str) -> bytes | None:
        """The latest decoded frame, or None before the first keyframe."""

    def media_status(self, ref: str) -> MediaStatus | None:
        """Whether media arrives at the input; None when the backend cannot tell."""

    def restore(self, store: Store, open_inputs: Sequence[OpenInput]) -> None:
        """Serve `open_inputs` again (same refs and URLs) after a stub restart; called once,
        before any request. The backend may keep its own tables in `store`."""


class MintOnlyVideoBackend:
    """Mints unguessable URLs and nothing else: no media, never a frame, no disconnects."""

    router: APIRouter | None = None

    def __init__(self, public_base_url: str) -> None:
        self._base = public_base_url.rstrip("/")
        self._open: set[str] = set()
        self.closed: list[str] = []
        """Refs closed so far, in order (tests read it)."""

    def create_input(self, session_id: str) -> VideoInput:
        ref = f"vin_{secrets.token_hex(8)}"
        token = secrets.token_urlsafe(24)
        self._open.add(ref)
        return VideoInput(
            ref=ref,
            whip_url=f"{self._base}/whip/{token}",
            whep_url=f"{self._base}/whep/{secrets.token_urlsafe(24)}",
        )

    async def close_input(self, ref: str) -> None:
        if ref in self._open:
            self._open.discard(ref)
            self.closed.append(ref)

    def disconnect_windows(self, ref: str) -> list[tuple[datetime, datetime]]:
        return []

    def latest_frame_jpeg(self, ref: str) -> bytes | None:
        return None

    def media_status(self, ref: str) -> MediaStatus | None:
        return None

    def restore(self, store: Store, open_inputs: Sequence[OpenInput]) -> None:
        self._open.update(item.video.ref for item in open_inputs)
