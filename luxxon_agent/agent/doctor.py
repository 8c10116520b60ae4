"""`luxxon-agent doctor`: is this box ready to serve? One check per line, a fix per failure.

Checks: state directory and spool disk space, device key, API reachability,
clock offset against the server's `Date` header, credentials and their
scopes (GET /me), the device key's delegation on the server (registered, not
revoked or expired; a warning within `DELEGATION_WARN_DAYS` of expiry), WHIP
reachability (the whipUrl of a session the workspace holds, when there is
one), and per operator a GPS fix and a camera frame.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from luxxon_agent.agent.config import AgentConfig, OperatorConfig
from luxxon_agent.agent.operator import free_disk_mb
from luxxon_agent.agent.workspace import REQUIRED_SCOPES
from luxxon_agent.errors import LuxxonError
from luxxon_agent.secret import Secret, redact_url, strip_userinfo
from luxxon_agent.telemetry.sampler import DEFAULT_MAX_CLOCK_OFFSET_S

if TYPE_CHECKING:
    from pathlib import Path

    from luxxon_agent.api import AsyncLuxxonClient

DELEGATION_WARN_DAYS = 30
"""Warn this long before the device's delegation expires: renewing needs the wallet."""
CAMERA_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    warning: bool = False
    """Passes, but needs attention soon (shown as "warn"; the exit code stays 0)."""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


async def run_doctor(
    config: AgentConfig, env: Mapping[str, str], *, gps_seconds: float = 5.0
) -> list[Check]:
    key_checks, devices = _device_keys(config, env)
    checks = [_state_dir(config), *key_checks]
    checks += await _api_checks(config, env, devices)
    results = await asyncio.gather(
        *(_gps(op, gps_seconds) for op in config.operators),
        *(_camera(op) for op in config.operators),
    )
    checks += list(results)
    return checks


def _state_dir(config: AgentConfig) -> Check:
    agent = config.agent
    path = agent.state_dir
    probe, free_mb = free_disk_mb(path)
    if not os.access(probe, os.W_OK):
        return Check(
            "state dir", False, f"{path} is not writable",
            f"create it for the agent's user: install -d -m 0700 -o luxxon-agent {path}",
        )  # fmt: skip
    if free_mb < agent.min_free_disk_mb:
        return Check(
            "spool disk space", False, f"{free_mb} MB free in {probe}",
            f"free space (need {agent.min_free_disk_mb} MB) or move [agent] state_dir",
        )  # fmt: skip
    return Check("spool disk space", True, f"{free_mb} MB free in {probe}")


def _device_keys(
    config: AgentConfig, env: Mapping[str, str]
) -> tuple[list[Check], dict[str, str | None]]:
    """A check per device key file (each [[operators]] `device_key_file`, default the
    agent's), and operator label -> the address its key signs as (None: unreadable)."""
    from luxxon_agent.agent.credentials import load_device_signer

    users: dict[Path | None, list[str]] = {}
    for op in config.operators:
        users.setdefault(op.device_key_file or config.agent.device_key_file, []).append(op.label)
    checks: list[Check] = []
    addresses: dict[str, str | None] = {}
    for key_file, labels in users.items():
        name = _for(labels, len(users), "device key")
        address: str | None = None
        try:
            address = load_device_signer(key_file, env).address
        except LuxxonError as exc:
            checks.append(Check(
                name, False, str(exc),
                "run `luxxon-agent keygen` and register it: `luxxon operators register`",
            ))  # fmt: skip
        else:
            checks.append(Check(name, True, f"signs as {address}"))
        addresses.update(dict.fromkeys(labels, address))
    return checks, addresses


def _for(labels: list[str], groups: int, name: str) -> str:
    """A check's name: plain when every operator shares it, else naming its operators."""
    return name if groups == 1 else f"{', '.join(labels)}: {name}"


async def _api_checks(
    config: AgentConfig, env: Mapping[str, str], devices: dict[str, str | None]
) -> list[Check]:
    import httpx

    base = config.api.base_url
    checks: list[Check] = []
    try:
        async with httpx.AsyncClient(timeout=config.api.timeout_seconds) as http:
            sent = time.time()
            response = await http.get(f"{base}/health")
            received = time.time()
    except httpx.HTTPError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return [
            Check(
                "API reachable",
                False,
                f"{base}: {reason}",
                "check the network, DNS and [api] base_url; a proxy must allow HTTPS",
            )  # fmt: skip
        ]
    rtt_ms = (received - sent) * 1000
    checks.append(
        Check("API reachable", response.status_code == 200,
              f"{base} answered {response.status_code} in {rtt_ms:.0f} ms",
              None if response.status_code == 200 else "is [api] base_url the /api/v1 root?")
    )  # fmt: skip
    checks.append(_clock(response.headers.get("date"), (sent + received) / 2))
    by_key: dict[Path | None, list[str]] = {}
    for op in config.operators:
        by_key.setdefault(op.api_key_file or config.api.key_file, []).append(op.label)
    groups = len(set(devices.values()))
    for key_file, labels in by_key.items():
        # the device addresses these operators sign with, each checked in the key's workspace
        signing: dict[str | None, list[str]] = {}
        for label in labels:
            signing.setdefault(devices[label], []).append(label)
        checks += await _credentials(config, env, key_file, signing, groups)
    return checks


def _clock(date_header: str | None, local: float) -> Check:
    if not date_header:
        return Check("clock offset", False, "the server sent no Date header", None)
    try:
        server = parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError):
        return Check("clock offset", False, f"unreadable Date header {date_header!r}", None)
    offset = local - server
    # telemetry is dated by this clock and the server refuses samples from the future;
    # the Date header has 1 s resolution: only beyond that does the offset mean something
    ok = abs(offset) <= DEFAULT_MAX_CLOCK_OFFSET_S + 1
    return Check(
        "clock offset", ok, f"{offset:+.1f} s against the server",
        None if ok else "sync the clock: timedatectl set-ntp true (telemetry is dated by it)",
    )  # fmt: skip


async def _credentials(
    config: AgentConfig,
    env: Mapping[str, str],
    key_file: Path | None,
    signing: dict[str | None, list[str]],
    groups: int,
) -> list[Check]:
    from luxxon_agent.agent.credentials import resolve_agent_key
    from luxxon_agent.api import AsyncLuxxonClient

    try:
        key, origin = resolve_agent_key(key_file, env)
    except LuxxonError as exc:
        return [Check("credentials", False, str(exc), "provide the operator API key")]
    mint = "mint a key: luxxon keys create --scope sessions:operate --scope sessions:read"
    async with AsyncLuxxonClient(config.api.base_url, api_key=key) as client:
        try:
            me = await client.me()
        except LuxxonError as exc:
            return [Check("credentials", False, f"key from {origin}: {exc}", mint)]
        missing = [s.value for s in REQUIRED_SCOPES if s not in me.scopes]
        checks = [
            Check(
                "credentials", not missing and me.kind == "api_key",
                f"key from {origin}: workspace {me.workspace_id}, scopes "
                + ", ".join(s.value for s in me.scopes),
                f"the key lacks {', '.join(missing)}; {mint}" if missing else None,
            )
        ]  # fmt: skip
        if me.workspace_id:
            for address, labels in signing.items():
                name = _for(labels, groups, "device delegation")
                checks.append(await _delegation(client, me.workspace_id, address, name))
        checks.append(await _whip(client))
    return checks


async def _delegation(
    client: AsyncLuxxonClient, workspace_id: str, address: str | None, name: str
) -> Check:
    """The device key is registered in the workspace, neither revoked nor expired."""
    if address is None:
        return Check(name, False, "no device key to look up", "see the device key check")
    register = (
        "from the operator's computer: "
        f"luxxon operators register --label LABEL --device-address {address}"
    )
    try:
        operators = await client.list_operators(workspace_id)
    except LuxxonError as exc:
        return Check(name, False, f"GET /workspaces/{workspace_id}/operators: {exc}", None)
    mine = [o for o in operators if o.device_address.lower() == address.lower()]
    if not mine:
        return Check(
            name, False, f"{address} is not registered in workspace {workspace_id}: "
            "the server refuses its telemetry", register,
        )  # fmt: skip
    now = datetime.now(UTC)
    valid = [o for o in mine if o.revoked_at is None and o.expires_at > now]
    if not valid:
        last = max(mine, key=lambda o: o.expires_at)
        why = (
            f"revoked {last.revoked_at:%Y-%m-%d}"
            if last.revoked_at is not None
            else f"expired {last.expires_at:%Y-%m-%d}"
        )
        return Check(
            name, False, f"{last.label}: delegation {why}; the server refuses its telemetry",
            register,
        )  # fmt: skip
    best = max(valid, key=lambda o: o.expires_at)
    left = best.expires_at - now
    detail = f"{best.label}: valid until {best.expires_at:%Y-%m-%d} ({left.days} days)"
    if left < timedelta(days=DELEGATION_WARN_DAYS):
        return Check(name, True, detail, f"renew it before it expires: {register}", warning=True)
    return Check(name, True, detail)


async def _whip(client: AsyncLuxxonClient) -> Check:
    """Reach the WHIP endpoint of a session this workspace holds (the URL is the credential)."""
    import httpx

    sessions = await client.list_sessions()
    live = [s for s in sessions if s.state.is_running]
    if not live:
        return Check("WHIP reachable", True, "not checked: no LIVE session holds a whipUrl")
    token = await client.producer_token(live[0].id)
    url = Secret(token.whip_url)
    shown = redact_url(url.reveal())
    try:
        async with httpx.AsyncClient(timeout=10.0) as http:
            # OPTIONS is WHIP's harmless probe (RFC 9725 §4.2); any HTTP answer means reachable
            response = await http.options(url.reveal())
    except httpx.HTTPError as exc:
        return Check(
            "WHIP reachable", False, f"{shown}: {type(exc).__name__}",
            f"allow HTTPS to {urlsplit(url.reveal()).hostname} and UDP for WebRTC media",
        )  # fmt: skip
    return Check("WHIP reachable", True, f"{shown} answered {response.status_code}")


async def _gps(op: OperatorConfig, seconds: float) -> Check:
    from luxxon_agent.clock import SYSTEM_CLOCK
    from luxxon_agent.position import Fix, LatestFix, open_source

    name = f"{op.label}: GPS fix"
    latest = LatestFix()
    last_reason = "no report"
    try:
        source = open_source(op.position, clock=SYSTEM_CLOCK)
        async with asyncio.timeout(seconds), source:
            async for report in source:
                latest.update(report)
                fix = latest.current()
                if isinstance(report, Fix) and fix is not None and fix.accuracy_m is not None:
                    return Check(name, True, f"{fix.lat:.6f},{fix.lng:.6f} ±{fix.accuracy_m:.1f} m")
                last_reason = getattr(report, "reason", "fix without accuracy")
    except TimeoutError:
        pass  # reported below with the last reason seen
    except LuxxonError as exc:
        last_reason = str(exc)
    watch = f"luxxon-agent gps check '{strip_userinfo(op.position)}'"
    return Check(
        name, False, f"no usable fix in {seconds:.0f} s ({last_reason})",
        f"check antenna and sky view; watch it live: {watch}",
    )  # fmt: skip


async def _camera(op: OperatorConfig) -> Check:
    from aiortc.mediastreams import MediaStreamError
    from av import VideoFrame

    from luxxon_agent.video import open_media_source

    name = f"{op.label}: camera"
    fix = (
        "check the device (ls -l /dev/v4l/by-id/), the agent user's group 'video', "
        f"and try: luxxon-agent publish --source '{strip_userinfo(op.video)}'"
    )
    try:
        async with asyncio.timeout(CAMERA_TIMEOUT_S):
            source = await open_media_source(op.video)
            try:
                track = source.video_track()
                frame = await track.recv()
                track.stop()
            finally:
                await source.close()
    except TimeoutError:
        return Check(name, False, f"no frame within {CAMERA_TIMEOUT_S:.0f} s", fix)
    except (LuxxonError, MediaStreamError) as exc:
        return Check(name, False, str(exc) or type(exc).__name__, fix)
    size = f"{frame.width}x{frame.height}" if isinstance(frame, VideoFrame) else "H.264 passthrough"
    return Check(name, True, f"{source.url_kind}: first frame {size}, {source.kind}")
