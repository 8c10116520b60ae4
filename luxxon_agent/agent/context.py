"""What a session run is given: the API it calls, the server's facts, the policy.

A `SessionRun` never sees the `WorkspaceLink` that took its session: it gets
a `SessionContext` (docs/architecture.md, "The agent's session core").
`ServerFacts` holds what `GET /config` says (chain id, fee, clock skew),
learned once per link; `ApiHealth` records when the API last answered, for
the status view. Both are written only through their own methods.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from luxxon_agent.agent.config import OnSigterm
from luxxon_agent.agent.statefile import StateFile
from luxxon_agent.clock import Clock
from luxxon_agent.errors import ApiError, LuxxonError, TransportError
from luxxon_agent.models import (
    ProducerToken,
    ServerConfig,
    Session,
    StartResult,
    TelemetryReceipt,
    TelemetrySample,
)

logger = logging.getLogger(__name__)


class ConfigApi(Protocol):
    """`GET /config` (luxxon_agent.api.AsyncLuxxonClient fits)."""

    async def config(self) -> ServerConfig: ...


class SessionApi(ConfigApi, Protocol):
    """The calls a session run makes (luxxon_agent.api.AsyncLuxxonClient fits)."""

    async def get_session(self, session_id: str) -> Session: ...

    async def start(self, session_id: str) -> StartResult: ...

    async def producer_token(self, session_id: str) -> ProducerToken: ...

    async def end(self, session_id: str) -> Session: ...

    async def post_telemetry(
        self, session_id: str, sample: TelemetrySample
    ) -> TelemetryReceipt: ...


class ApiHealth:
    """When the API last answered and its last error, for the status view."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.last_ok: float | None = None
        """`clock.monotonic()` of the last answer, None until the API answered once."""
        self.last_error: str | None = None

    def ok(self) -> None:
        """The API just answered."""
        self.last_ok = self._clock.monotonic()
        self.last_error = None

    def failed(self, exc: LuxxonError) -> None:
        """A call to the API failed with `exc` (shown until it answers again)."""
        self.last_error = str(exc)


class ServerFacts:
    """What `GET /config` says about the server, learned once per link and kept."""

    def __init__(self, client: ConfigApi, health: ApiHealth) -> None:
        self._client = client
        self._health = health
        self.fee_bps: int | None = None
        self.max_clock_offset_s: float | None = None
        """How far a sample may be dated ahead of the server's clock."""
        self._chain_id: int | None = None

    def learn(self, server: ServerConfig) -> None:
        self.fee_bps = server.fee_bps
        self._chain_id = server.chain_id
        self.max_clock_offset_s = server.telemetry_max_future_skew_ms / 1000

    def assume_chain_id(self, chain_id: int | None) -> None:
        """The chain id a state-file record was signed for, until the API says."""
        if self._chain_id is None:
            self._chain_id = chain_id

    @property
    def known_chain_id(self) -> int | None:
        return self._chain_id

    async def chain_id(self) -> int | None:
        """The server's EIP-712 chain id, fetched once and kept.

        None while the API cannot say: the caller takes no sample yet and asks
        again, since a sample signed for any other chain is refused by the server.
        """
        if self._chain_id is None:
            try:
                self.learn(await self._client.config())
            except (ApiError, TransportError) as exc:
                self._health.failed(exc)
                logger.warning("GET /config: %s; telemetry waits for the chain id", exc)
                return None
            self._health.ok()
        return self._chain_id


@dataclass(frozen=True)
class SessionPolicy:
    """How a session run behaves: its poll interval, what SIGTERM does to it."""

    poll_seconds: float
    on_sigterm: OnSigterm


@dataclass(frozen=True)
class SessionContext:
    """Everything a `SessionRun` uses besides its operator and its session."""

    client: SessionApi
    clock: Clock
    state: StateFile
    server: ServerFacts
    api_health: ApiHealth
    policy: SessionPolicy
    workspace_id: str | None
    """The link's workspace, or None while it has not reached the API (offline resume)."""
