"""request_session(): play the consumer against a stub from a terminal.

The consumer has its own wallet key, made on first use and kept in the user's
data dir (mode 0600); its CONSUMER workspace is created on the first request
against a given stub (a fresh stub database gets a fresh workspace).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from luxxon_agent.errors import ApiError, ConfigError, LuxxonError
from luxxon_agent.models import CreateSessionRequest, Role, Session
from luxxon_agent.secret import Secret
from luxxon_agent.stub.config import APP_NAME

KEY_FILE = "stub-consumer.key"


def default_key_path() -> Path:
    from platformdirs import user_data_path

    return user_data_path(APP_NAME, appauthor=False) / KEY_FILE


def load_or_create_key(path: Path) -> Secret:
    """The consumer's wallet key: read the 0600 key file, or create it exclusively."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise ConfigError(f"{path} is readable by others; chmod 600 it")
        return Secret(path.read_text().strip())
    from eth_account import Account

    path.parent.mkdir(parents=True, exist_ok=True)
    key = Secret("0x" + bytes(Account.create().key).hex())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.reveal() + "\n")
    return key


@dataclass(frozen=True)
class RequestOutcome:
    session: Session
    consumer_workspace_id: str
    created_workspace: bool


class NotDispatched(LuxxonError):
    """The session exists but dispatch failed (e.g. NO_COVERAGE)."""


async def request_session(
    base_url: str,
    *,
    lat: float,
    lng: float,
    duration_seconds: int,
    dispatch: bool,
    key_path: Path | None = None,
) -> RequestOutcome:
    """Log in as the consumer wallet, make sure it has a CONSUMER workspace, request a session."""
    from luxxon_agent.api import AsyncLuxxonClient
    from luxxon_agent.identity import address_of, create_workspace_signed, siwe_login

    key = load_or_create_key(key_path or default_key_path())
    async with AsyncLuxxonClient(base_url) as client:
        login = await siwe_login(client, key)
        mine = next((m for m in login.memberships if Role.CONSUMER in m.roles), None)
        created = mine is None
        if mine is None:
            workspace = await create_workspace_signed(
                client,
                key,
                slug=f"consumer-{address_of(key)[2:12].lower()}",
                name="Terminal consumer",
                roles=[Role.CONSUMER],
            )
            workspace_id = workspace.id
        else:
            workspace_id = mine.workspace_id
        await client.select_workspace(workspace_id)
        session = await client.create_session(
            CreateSessionRequest(lat=lat, lng=lng, max_duration_seconds=duration_seconds)
        )
        if dispatch:
            try:
                session = await client.dispatch(session.id)
            except ApiError as exc:
                raise NotDispatched(
                    f"session {session.id} was created but not dispatched: {exc}"
                ) from exc
    return RequestOutcome(
        session=session, consumer_workspace_id=workspace_id, created_workspace=created
    )
