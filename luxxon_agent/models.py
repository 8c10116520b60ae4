"""API objects of the Luxxon API, one definition shared by client, stub and CLI.

Wire conventions (docs/api.md): camelCase JSON, money as integer micro-USDC
carried as decimal strings, timestamps ISO-8601 UTC with milliseconds
("2026-05-13T08:42:00.123Z"). Python attributes are snake_case; use
`model_dump(mode="json", by_alias=True)` (or `to_wire()`) for the wire form.
"""

from __future__ import annotations

import types
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel


def format_timestamp(value: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a Z, as the API writes every time."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: timestamps must be timezone-aware")
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a timezone (use Z for UTC)")
    return value.astimezone(UTC)


def _require_non_negative(value: int) -> int:
    if value < 0:
        raise ValueError("amount must not be negative")
    return value


Timestamp = Annotated[
    datetime,
    AfterValidator(_require_utc),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
]
"""A timezone-aware UTC datetime, serialised with milliseconds and Z."""

MicroUsdc = Annotated[
    int,
    AfterValidator(_require_non_negative),
    PlainSerializer(str, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": "^[0-9]+$"}),
]
"""Integer micro-USDC; a decimal string on the wire, never a float."""


def _require_rate(value: int) -> int:
    if not 0 <= value < 10**12:
        raise ValueError("a rate is 0 to 999999999999 micro-USDC per second")
    return value


RatePerSecondMicroUsdc = Annotated[
    int,
    AfterValidator(_require_rate),
    PlainSerializer(str, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": "^[0-9]{1,12}$"}),
]
"""A requested rate: at most 12 digits, so rate x maxDurationSeconds fits 64 bits."""

WalletAddress = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{40}$")]
HexSignature = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]+$")]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]


def _wire_kind(annotation: Any, metadata: list[Any]) -> str | None:
    """What JSON a field takes: "number", "string-number" (money), "time", or None (any)."""
    options = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else ()
    kinds = set()
    for option in options or (annotation,):
        if get_origin(option) is Annotated:
            option, *extra = get_args(option)
            metadata = [*metadata, *extra]
        kinds.add(option)
    kinds.discard(type(None))
    if any(isinstance(item, WithJsonSchema) for item in metadata):
        return "string-number"
    if kinds and kinds <= {int, float}:
        return "number"
    if kinds == {datetime}:
        return "time"
    return None


@cache
def _wire_kinds(model: type[BaseModel]) -> tuple[tuple[str, str, str], ...]:
    """(alias, name, kind) of the fields of `model` that lax validation would over-accept."""
    found = []
    for name, info in model.model_fields.items():
        kind = _wire_kind(info.annotation, info.metadata)
        if kind is not None:
            found.append((info.alias or name, name, kind))
    return tuple(found)


class ApiModel(BaseModel):
    """Base of every API object: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_enum_values=False,
    )

    @model_validator(mode="before")
    @classmethod
    def _wire_types(cls, data: Any) -> Any:
        """JSON types as the schema states them: pydantic's lax mode would read true as 1,
        "5" as 5 and 1700000000 as a time."""
        if not isinstance(data, dict):
            return data
        for alias, name, kind in _wire_kinds(cls):
            value = data.get(alias, data.get(name))
            if value is None or (isinstance(value, datetime) and kind == "time"):
                continue
            wrong = (
                isinstance(value, bool)
                or (kind == "number" and not isinstance(value, int | float))
                or (kind == "time" and not isinstance(value, str))
            )
            if wrong:
                wanted = {"number": "a number", "string-number": "a decimal string",
                          "time": "an ISO-8601 time"}[kind]  # fmt: skip
                raise ValueError(f"{alias} must be {wanted}, not {type(value).__name__}")
        return data

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class RequestModel(ApiModel):
    """Base of request bodies: unknown fields are refused, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


# ---- closed sets -------------------------------------------------------------


class Role(StrEnum):
    CONSUMER = "CONSUMER"
    SUPPLIER = "SUPPLIER"


class AvailabilityState(StrEnum):
    OFFLINE = "OFFLINE"
    ONLINE = "ONLINE"
    BUSY = "BUSY"


class DeviceKind(StrEnum):
    PHONE = "PHONE"
    LAPTOP = "LAPTOP"
    DRONE = "DRONE"
    PTZ = "PTZ"
    FIXED = "FIXED"
    OTHER = "OTHER"


class Environment(StrEnum):
    LIVE = "LIVE"
    TEST = "TEST"


class Scope(StrEnum):
    SESSIONS_OPERATE = "sessions:operate"
    SESSIONS_READ = "sessions:read"
    WALLET_READ = "wallet:read"
    SESSIONS_REQUEST = "sessions:request"
    """Consumer side: create, dispatch, end and cancel sessions (stub; see docs/api.md)."""


class SessionState(StrEnum):
    REQUESTED = "REQUESTED"
    ASSIGNED = "ASSIGNED"
    LIVE = "LIVE"
    PAUSED = "PAUSED"
    ENDED = "ENDED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"

    @property
    def is_terminal(self) -> bool:
        return self in (SessionState.ENDED, SessionState.CANCELLED, SessionState.EXPIRED)

    @property
    def is_running(self) -> bool:
        """Started and not over: the operator publishes (PAUSED is still the operator's)."""
        return self in (SessionState.LIVE, SessionState.PAUSED)


class SettlementState(StrEnum):
    NOT_READY = "NOT_READY"
    PENDING = "PENDING"
    SUBMITTED = "SUBMITTED"
    CONFIRMED = "CONFIRMED"


class MeterMode(StrEnum):
    WALLCLOCK = "wallclock"
    TELEMETRY = "telemetry"


class ErrorCode(StrEnum):
    """Codes the API is known to send; an unknown one is still shown verbatim."""

    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
    NOT_AUTHORIZED = "NOT_AUTHORIZED"
    INVALID_TOKEN = "INVALID_TOKEN"
    INVALID_API_KEY = "INVALID_API_KEY"
    REVOKED_API_KEY = "REVOKED_API_KEY"
    MISSING_TOKEN = "MISSING_TOKEN"
    WORKSPACE_MISMATCH = "WORKSPACE_MISMATCH"
    INVALID_INPUT = "INVALID_INPUT"
    INVALID_STATE = "INVALID_STATE"
    NOT_FOUND = "NOT_FOUND"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    WORKSPACE_NOT_FOUND = "WORKSPACE_NOT_FOUND"
    NO_COVERAGE = "NO_COVERAGE"
    UNAVAILABLE = "UNAVAILABLE"
    CONFLICT = "CONFLICT"
    FRAME_NOT_AVAILABLE = "FRAME_NOT_AVAILABLE"
    VIDEO_ERROR = "VIDEO_ERROR"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
    # telemetry and operator delegations (stub; see docs/telemetry.md)
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    UNKNOWN_SIGNER = "UNKNOWN_SIGNER"
    DEVICE_REVOKED = "DEVICE_REVOKED"
    DEVICE_EXPIRED = "DEVICE_EXPIRED"
    CAPTURED_OUT_OF_SESSION = "CAPTURED_OUT_OF_SESSION"
    CAPTURED_IN_FUTURE = "CAPTURED_IN_FUTURE"
    INVALID_DELEGATION = "INVALID_DELEGATION"


# ---- objects -------------------------------------------------------------------


class Workspace(ApiModel):
    id: str
    slug: str
    name: str
    wallet_address: WalletAddress
    roles: list[Role]
    availability_state: AvailabilityState = AvailabilityState.OFFLINE
    coverage_lat: Latitude | None = None
    coverage_lng: Longitude | None = None
    coverage_radius_meters: float | None = None
    device_kind: DeviceKind | None = None
    last_seen_at: Timestamp | None = None
    created_at: Timestamp
    created_by_wallet: WalletAddress
    deleted_at: Timestamp | None = None


class WorkspaceMembership(ApiModel):
    workspace_id: str
    slug: str
    name: str
    roles: list[Role]


class ApiKey(ApiModel):
    id: str
    workspace_id: str
    prefix: str
    label: str
    environment: Environment
    scopes: list[Scope]
    last_used_at: Timestamp | None = None
    revoked_at: Timestamp | None = None
    grace_period_end: Timestamp | None = None
    created_at: Timestamp
    created_by_wallet: WalletAddress
    plaintext: str | None = Field(default=None, repr=False)
    """Only in the creation response; never stored by the server."""


class Session(ApiModel):
    id: str
    consumer_workspace_id: str
    operator_workspace_id: str | None = None
    state: SessionState
    max_duration_seconds: int
    wait_timeout_seconds: int | None = None
    rate_per_second_micro_usdc: MicroUsdc
    hold_micro_usdc: MicroUsdc
    started_at: Timestamp | None = None
    ended_at: Timestamp | None = None
    clean_seconds: int | None = None
    failed_seconds: int | None = None
    charged_micro_usdc: MicroUsdc | None = None
    settlement_tx_hash: str | None = None
    video_backend_ref: str | None = None
    created_at: Timestamp
    requested_lat: Latitude
    requested_lng: Longitude
    geofence_radius_meters: float | None = None
    whip_url: str | None = Field(default=None, repr=False)
    whep_url: str | None = None


class StartResult(ApiModel):
    session: Session
    video_backend_ref: str
    whip_url: str = Field(repr=False)
    whep_url: str


class ProducerToken(ApiModel):
    video_backend_ref: str
    whip_url: str = Field(repr=False)


class CancelAllResult(ApiModel):
    count: int
    cancelled: list[str]
    """Session ids, oldest first."""


class WalletChallenge(ApiModel):
    nonce: str
    message: str
    expires_at: Timestamp


class WalletLoginResult(ApiModel):
    wallet_address: WalletAddress
    memberships: list[WorkspaceMembership]
    selected_workspace_id: str | None = None
    expires_at: Timestamp


class Me(ApiModel):
    kind: Literal["api_key", "wallet_session"]
    workspace_id: str | None = None
    key_id: str | None = None
    environment: Environment | None = None
    scopes: list[Scope] = []
    wallet_address: WalletAddress | None = None
    memberships: list[WorkspaceMembership] = []


class Point(ApiModel):
    lat: Latitude
    lng: Longitude


class TelemetrySample(RequestModel):
    """One signed position sample, exactly the contract's wire shape."""

    captured_at: Timestamp
    point: Point
    accuracy_meters: float = Field(ge=0)
    source: str = Field(min_length=1, max_length=32)
    signature: HexSignature


class TelemetryReceipt(ApiModel):
    session_id: str
    captured_at: Timestamp
    duplicate: bool = False


class WalletBalance(ApiModel):
    workspace_id: str
    wallet_address: WalletAddress
    balance_micro_usdc: MicroUsdc


class WalletEvent(ApiModel):
    id: str
    kind: str
    session_id: str | None = None
    amount_micro_usdc: MicroUsdc
    tx_hash: str | None = None
    created_at: Timestamp


class Settlement(ApiModel):
    session_id: str
    state: SettlementState
    charged_micro_usdc: MicroUsdc | None = None
    fee_micro_usdc: MicroUsdc | None = None
    operator_earned_micro_usdc: MicroUsdc | None = None
    fee_bps: int | None = None
    tx_hash: str | None = None
    payload: dict[str, Any] | None = None


class Health(ApiModel):
    status: str
    time: Timestamp


class ServerConfig(ApiModel):
    chain_id: int
    settlement_contract: str
    usdc_contract: str
    fee_bps: int
    meter: MeterMode
    telemetry_max_future_skew_ms: int
    telemetry_freshness_seconds: float


# ---- request bodies ------------------------------------------------------------


class WalletChallengeRequest(RequestModel):
    wallet_address: WalletAddress


class WalletLoginRequest(RequestModel):
    wallet_address: WalletAddress
    nonce: str = Field(min_length=8, max_length=128)
    signature: HexSignature


class SelectWorkspaceRequest(RequestModel):
    workspace_id: str


class CreateWorkspaceRequest(RequestModel):
    slug: str = Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
    name: str = Field(min_length=1, max_length=120)
    wallet_address: WalletAddress
    signature: HexSignature
    nonce: str = Field(min_length=8, max_length=128)
    roles: list[Role] = Field(min_length=1)


class UpdateWorkspaceRequest(RequestModel):
    availability_state: AvailabilityState | None = None
    coverage_lat: Latitude | None = None
    coverage_lng: Longitude | None = None
    coverage_radius_meters: float | None = Field(default=None, gt=0, le=1_000_000)
    device_kind: DeviceKind | None = None
    name: str | None = Field(default=None, min_length=1, max_length=120)


class LocationHeartbeat(RequestModel):
    lat: Latitude
    lng: Longitude
    accuracy_meters: float = Field(ge=0)
    sequence: int = Field(ge=0, lt=2**63)
    session_id: str | None = None
    speed_mps: float | None = Field(default=None, ge=0)


class CreateApiKeyRequest(RequestModel):
    label: str = Field(min_length=1, max_length=80)
    environment: Environment
    scopes: list[Scope] = Field(min_length=1)


class CreateSessionRequest(RequestModel):
    lat: Latitude
    lng: Longitude
    max_duration_seconds: int = Field(gt=0, le=24 * 3600)
    wait_timeout_seconds: int | None = Field(default=None, gt=0, le=24 * 3600)
    rate_per_second_micro_usdc: RatePerSecondMicroUsdc | None = None
    geofence_radius_meters: float | None = Field(default=None, gt=0, le=100_000)


class AcceptRequest(RequestModel):
    operator_workspace_id: str | None = None


class Operator(ApiModel):
    """One device of a SUPPLIER workspace, authorised by a wallet-signed delegation."""

    id: str
    workspace_id: str
    label: str
    kind: DeviceKind
    device_address: WalletAddress
    issued_at: Timestamp
    expires_at: Timestamp
    delegation_signature: HexSignature
    created_at: Timestamp
    revoked_at: Timestamp | None = None


class RegisterOperatorRequest(RequestModel):
    """`POST /workspaces/:id/operators`: the delegation and the wallet's EIP-712 signature
    over it (docs/telemetry-signing.md, OperatorDelegation)."""

    label: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9._-]+$")
    kind: DeviceKind
    device_address: WalletAddress
    issued_at: Timestamp
    expires_at: Timestamp
    signature: HexSignature
