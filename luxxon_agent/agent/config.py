"""AgentConfig: one frozen configuration, built once and passed down.

Layers, each overriding the one before (like uvicorn's Config, without side effects):

1. built-in defaults (the field defaults below);
2. the TOML file (`/etc/luxxon-agent/agent.toml` unless `--config` names another);
3. environment variables `LUXXON_AGENT_<SECTION>_<KEY>`, upper-cased, for example
   `LUXXON_AGENT_API_BASE_URL` for `[api] base_url`, `LUXXON_AGENT_AGENT_ON_SIGTERM`
   for `[agent] on_sigterm`, and for the N-th (0-based) `[[operators]]` table
   `LUXXON_AGENT_OPERATORS_<N>_<KEY>`, nested tables joined by `_`
   (`LUXXON_AGENT_OPERATORS_0_AUTO_ACCEPT_MIN_RATE_MICRO_USDC`);
4. CLI flags, given to `load_config` as `overrides` (dotted paths).

`load_config` never reads `os.environ` itself: the caller passes the mapping.
Every validation error becomes one `ConfigError` line naming the key (and the
environment variable when the value came from one).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from luxxon_agent.errors import ConfigError
from luxxon_agent.geo import haversine_meters
from luxxon_agent.models import DeviceKind
from luxxon_agent.wire import PRODUCTION_BASE_URL

DEFAULT_CONFIG_PATH = Path("/etc/luxxon-agent/agent.toml")
ENV_PREFIX = "LUXXON_AGENT_"
ENV_CONFIG_PATH = "LUXXON_AGENT_CONFIG"
"""Names the config file; not a setting itself."""


class OnSigterm(StrEnum):
    END = "end"
    """End the LIVE session (the meter runs, the consumer is charged up to now)."""
    LEAVE = "leave"
    """Leave it LIVE for the restarted agent to resume on the same whipUrl."""


class AssignedOnRestart(StrEnum):
    START = "start"
    CANCEL = "cancel"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _expand_home(cls, value: Any) -> Any:
        """`~/...` in path settings means the agent user's home."""
        return value.expanduser() if isinstance(value, Path) else value


class ApiSection(_Section):
    base_url: str = PRODUCTION_BASE_URL
    """The Luxxon API, `.../api/v1`."""
    key_file: Path | None = None
    """File holding the operator API key; default: $CREDENTIALS_DIRECTORY/luxxon-api-key."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL like https://api.luxxon.dev/api/v1")
        return value.rstrip("/")


class AgentSection(_Section):
    state_dir: Path = Path("/var/lib/luxxon-agent")
    """State file, telemetry spool and WHIP resource locations live here."""
    heartbeat_seconds: float = Field(default=2.0, gt=0, le=60)
    poll_seconds: float = Field(default=1.0, gt=0, le=30)
    """How often the intake and the LIVE session state are polled."""
    shutdown_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    on_sigterm: OnSigterm = OnSigterm.END
    reclaim_stuck: bool = True
    """On start, cancel ASSIGNED leftovers nobody here owns (cancel-all-assignments)."""
    assigned_on_restart: AssignedOnRestart = AssignedOnRestart.START
    stall_seconds: float = Field(default=30.0, gt=0, le=600)
    """WATCHDOG=1 stops when the telemetry loop, the spool or a publishing video made
    no progress for this long, so systemd restarts a process that is alive but stuck
    (an unreachable API is not a stall)."""
    min_free_disk_mb: int = Field(default=50, ge=0)
    """Below this free space in state_dir the agent goes OFFLINE (disk full)."""
    ice_loopback: bool = False
    """Pin WebRTC ICE to 127.0.0.1 (local stub and tests only)."""
    device_key_file: Path | None = None
    """Device key keystore; default: the identity package's store."""


class StatusSection(_Section):
    listen: str = "127.0.0.1:8765"
    """`HOST:PORT` (loopback) or `unix:/path.sock`; empty string disables the endpoint."""
    metrics: bool = True
    """Serve Prometheus text at /metrics on the same listener."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value == "" or value.startswith("unix:"):
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536 or not host:
            raise ValueError("must be HOST:PORT (e.g. 127.0.0.1:8765) or unix:/path")
        if not _is_loopback(host.strip("[]")):
            # the endpoint has no authentication: it must not be reachable from the network
            raise ValueError(f"{host} is not a loopback address; use 127.0.0.1, ::1 or unix:/path")
        return value


class Coverage(_Section):
    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)
    radius_m: float = Field(gt=0, le=1_000_000)

    def contains(self, lat: float, lng: float) -> bool:
        return haversine_meters(self.lat, self.lng, lat, lng) <= self.radius_m


class AutoAccept(_Section):
    enabled: bool = True
    """Accept REQUESTED sessions offered to this workspace (dispatched to it) when all
    rules below allow it; false leaves them to a person (`luxxon sessions accept`)."""
    min_rate_micro_usdc: int = Field(default=0, ge=0)
    max_duration_seconds: int = Field(default=3600, gt=0)


class OperatorConfig(_Section):
    """One `[[operators]]` table: a device that sells its view (label, position, video, policy)."""

    label: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9._-]+$")
    position: str
    """Position source URL (serial://, tcp://, gpsd://, mavlink://, sim://, nmea-file://, fixed://)."""
    video: str
    """Video source URL (testsrc://, v4l2://, rtsp://, file://)."""
    device_kind: DeviceKind = DeviceKind.OTHER
    coverage: Coverage
    auto_accept: AutoAccept = AutoAccept()
    api_key_file: Path | None = None
    """This operator's own key (another workspace); default: the agent's key."""
    on_sigterm: OnSigterm | None = None
    """Per-operator override of [agent] on_sigterm."""
    assigned_on_restart: AssignedOnRestart | None = None

    @field_validator("position")
    @classmethod
    def _position_url(cls, value: str) -> str:
        # the packages' own scheme lists, imported on use: both packages load slowly
        from luxxon_agent.position.fixed_source import parse_fixed_url
        from luxxon_agent.position.open_source import SCHEMES

        scheme = urlsplit(value).scheme
        _check_scheme("position", scheme, SCHEMES)
        if scheme == "fixed":
            parse_fixed_url(value)
        return value

    @field_validator("video")
    @classmethod
    def _video_url(cls, value: str) -> str:
        from luxxon_agent.video.mediasource import SCHEMES

        _check_scheme("video", urlsplit(value).scheme, SCHEMES)
        return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another host name: it could resolve to anything


def _check_scheme(what: str, scheme: str, known: tuple[str, ...]) -> None:
    if scheme not in known:
        raise ValueError(
            f"unknown {what} source scheme {scheme!r}; use one of " + ", ".join(sorted(known))
        )


class AgentConfig(_Section):
    """Everything the agent needs, validated; frozen once built."""

    api: ApiSection = ApiSection()
    agent: AgentSection = AgentSection()
    status: StatusSection = StatusSection()
    operators: tuple[OperatorConfig, ...] = ()

    @model_validator(mode="after")
    def _operators(self) -> AgentConfig:
        if not self.operators:
            raise ValueError("operators: at least one [[operators]] table is needed")
        seen: set[str] = set()
        for index, op in enumerate(self.operators):
            if op.label in seen:
                raise ValueError(f"operators[{index}].label {op.label!r} is used twice")
            seen.add(op.label)
        return self

    def on_sigterm_for(self, op: OperatorConfig) -> OnSigterm:
        return op.on_sigterm or self.agent.on_sigterm

    def assigned_on_restart_for(self, op: OperatorConfig) -> AssignedOnRestart:
        return op.assigned_on_restart or self.agent.assigned_on_restart


# ---- loading -----------------------------------------------------------------------


def load_config(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AgentConfig:
    """Defaults, then the TOML file, then `LUXXON_AGENT_*` env, then `overrides`.

    `path=None` reads `$LUXXON_AGENT_CONFIG` or the default path; a missing
    default file is an error too (an agent without operators cannot run).
    """
    env = env or {}
    if path is None:
        path = Path(env.get(ENV_CONFIG_PATH) or DEFAULT_CONFIG_PATH)
    data = _read_toml(path)
    origins: dict[str, str] = {}
    _apply_env(data, env, origins)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_path(data, _split_dotted(dotted), value)
            origins[_display(_split_dotted(dotted))] = f"command-line option for {dotted}"
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, path, origins)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (use --config PATH)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _split_dotted(dotted: str) -> list[str | int]:
    parts: list[str | int] = []
    for part in dotted.split("."):
        parts.append(int(part) if part.isdigit() else part)
    return parts


def _set_path(data: dict[str, Any], parts: list[str | int], value: Any) -> None:
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(part, int):
            while len(node) <= part:
                node.append({})
            node = node[part]
        else:
            node = node.setdefault(part, [] if isinstance(nxt, int) else {})
    last = parts[-1]
    if isinstance(last, int):
        while len(node) <= last:
            node.append({})
        node[last] = value
    else:
        node[last] = value


def _leaf_fields(
    model: type[BaseModel], prefix: tuple[str, ...] = ()
) -> dict[str, tuple[tuple[str, ...], Any]]:
    """Env-name suffix -> (path, annotation) for every scalar field of `model`."""
    out: dict[str, tuple[tuple[str, ...], Any]] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        path = (*prefix, name)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.update(_leaf_fields(annotation, path))
        else:
            out["_".join(path).upper()] = (path, annotation)
    return out


_SECTION_FIELDS = {
    section: _leaf_fields(model)
    for section, model in (("api", ApiSection), ("agent", AgentSection), ("status", StatusSection))
}
_OPERATOR_FIELDS = _leaf_fields(OperatorConfig)
_OPERATOR_ENV = re.compile(r"^OPERATORS_(\d+)_(.+)$")


def env_name(path: tuple[str | int, ...]) -> str:
    """The environment variable that sets the key at `path` (documentation helper)."""
    return ENV_PREFIX + "_".join(str(p) for p in path).upper()


def _apply_env(data: dict[str, Any], env: Mapping[str, str], origins: dict[str, str]) -> None:
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG_PATH:
            continue
        rest = name[len(ENV_PREFIX) :]
        match = _OPERATOR_ENV.match(rest)
        if match:
            index, suffix = int(match.group(1)), match.group(2)
            found = _OPERATOR_FIELDS.get(suffix)
            if found is None:
                raise ConfigError(f"{name}: no such operator setting")
            path: tuple[str | int, ...] = ("operators", index, *found[0])
            annotation = found[1]
        else:
            section = next((s for s in _SECTION_FIELDS if rest.startswith(s.upper() + "_")), None)
            if section is None:
                continue  # another component's variable (e.g. LUXXON_AGENT_DEBUG)
            found = _SECTION_FIELDS[section].get(rest[len(section) + 1 :])
            if found is None:
                raise ConfigError(f"{name}: no such setting in [{section}]")
            path = (section, *found[0])
            annotation = found[1]
        _set_path(data, list(path), _coerce(name, env[name], annotation))
        origins[_display(list(path))] = f"environment variable {name}"


def _coerce(name: str, raw: str, annotation: Any) -> Any:
    """Turn an env string into what the field expects, so errors name the variable."""
    target = annotation
    if get_origin(annotation) is not None:  # X | None
        args = [a for a in get_args(annotation) if a is not type(None)]
        target = args[0] if len(args) == 1 else str
    if target is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected true or false, got {raw!r}")
    if target is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
    if target is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if target is Literal:
        return raw
    return raw


def _display(loc: list[str | int] | tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + part
    return text


def _one_line(exc: ValidationError, path: Path, origins: Mapping[str, str]) -> str:
    errors = exc.errors()
    # an unknown key is usually a typo that also explains a "missing" one: name it first
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [p for p in error["loc"] if isinstance(p, str | int)]
    key = _display(loc)
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if not key:  # a whole-model rule: its message starts with the key it is about
        key, _, message = message.partition(": ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "missing required key"
    where = origins.get(key)
    origin = f" (from {where})" if where else f" in {path}"
    more = exc.error_count() - 1
    tail = f" (and {more} more)" if more else ""
    return f"{key}: {message}{origin}{tail}"
