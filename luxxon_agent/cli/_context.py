"""What every `luxxon` command group shares: global options, profile, client.

`luxxon.py` parses the global options into `Globals` (ctx.obj of the root);
its groups and the ones in `workspaces.py`, `operators.py` and `earnings.py` reach the
profile, the wallet and an authenticated client through the functions here.
Only typer at module level: the rest loads inside the calls (`luxxon --help`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer

from luxxon_agent.cli._common import run_async
from luxxon_agent.errors import AuthError, ConfigError
from luxxon_agent.wire import PRODUCTION_BASE_URL

if TYPE_CHECKING:
    from luxxon_agent.api import AsyncLuxxonClient
    from luxxon_agent.identity import Profile, WalletStore
    from luxxon_agent.models import RequestModel
    from luxxon_agent.secret import Secret

T = TypeVar("T")
R = TypeVar("R", bound="RequestModel")
Auth = Literal["none", "cookie", "key", "any"]

PASSPHRASE_ENV = "LUXXON_WALLET_PASSPHRASE"

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
WorkspaceOpt = Annotated[
    str,
    typer.Option("--workspace", metavar="ID", help="Workspace id (`luxxon workspaces list`)."),
]


@dataclass(frozen=True)
class Globals:
    """The root options of `luxxon` (before the command group)."""

    base_url: str | None
    profile: str | None
    api_key: str | None
    json: bool


def root_options(ctx: typer.Context) -> Globals:
    obj = ctx.find_root().obj
    if not isinstance(obj, Globals):
        raise ConfigError("internal: global options were not parsed")
    return obj


def wants_json(ctx: typer.Context, local: bool) -> bool:
    """`--json` given on the command or before the group."""
    return local or root_options(ctx).json


def open_profile(ctx: typer.Context) -> Profile:
    from luxxon_agent.identity import Profile

    return Profile.open(root_options(ctx).profile)


def resolve_base_url(ctx: typer.Context, profile: Profile) -> str:
    """--base-url / LUXXON_BASE_URL, else the profile's, else production."""
    url = root_options(ctx).base_url or profile.base_url() or PRODUCTION_BASE_URL
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--base-url must start with http:// or https://, got {url!r}")
    return url.rstrip("/")


def _passphrase(new: bool) -> Secret:
    """The keystore passphrase: LUXXON_WALLET_PASSPHRASE, else a hidden prompt on a terminal."""
    from luxxon_agent.secret import Secret

    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return Secret(value)
    if not sys.stdin.isatty():
        raise ConfigError(f"no keyring here and no terminal: set {PASSPHRASE_ENV}")
    value = typer.prompt("Wallet keystore passphrase", hide_input=True, confirmation_prompt=new)
    if not value:
        raise ConfigError("the keystore passphrase must not be empty")
    return Secret(value)


def wallet_store(profile: Profile) -> WalletStore:
    """The profile's wallet; a keystore passphrase is asked for only when one is needed."""
    from luxxon_agent.identity import WalletStore

    return WalletStore(profile, _passphrase)


def open_client(ctx: typer.Context, profile: Profile, auth: Auth) -> AsyncLuxxonClient:
    """A client for this profile, authenticated as `auth` asks:

    none: public call; cookie: the wallet login; key: an API key (resolved);
    any: an explicit key, else the wallet login, else the stored key.
    """
    from luxxon_agent.api import AsyncLuxxonClient
    from luxxon_agent.identity import resolve_api_key

    base_url = resolve_base_url(ctx, profile)
    explicit = root_options(ctx).api_key
    api_key = None
    cookie = None
    if auth in ("cookie", "any") and not (auth == "any" and explicit):
        cookie = profile.load_session(base_url)
        if cookie is None and auth == "cookie":
            raise AuthError(f"not logged in to {base_url}: run `luxxon login`")
    if auth == "key" or (auth == "any" and cookie is None):
        api_key, _ = resolve_api_key(
            profile,
            explicit=explicit,
            credentials_directory=os.environ.get("CREDENTIALS_DIRECTORY"),
        )
    return AsyncLuxxonClient(base_url, api_key=api_key, session_cookie=cookie)


def call(
    ctx: typer.Context, auth: Auth, body: Callable[[AsyncLuxxonClient, Profile], Awaitable[T]]
) -> T:
    """Open a client, run `body(client, profile)` on the event loop, close the client."""
    profile = open_profile(ctx)
    client = open_client(ctx, profile, auth)

    async def run() -> T:
        async with client:
            return await body(client, profile)

    return run_async(run())


async def act_for(client: AsyncLuxxonClient, workspace_id: str) -> None:
    """Pin a wallet session to `workspace_id` before a call made for it.

    Every command that names a workspace calls this first, so the user never
    has to select one by hand; an API key is bound to its workspace already.
    """
    if client.session_cookie is not None:
        await client.select_workspace(workspace_id)


def request_model(model: type[R], **values: Any) -> R:
    """Build a request model; a validation failure is a one-line ConfigError naming the field."""
    from pydantic import ValidationError

    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "input"
        raise ConfigError(f"invalid {field}: {first['msg']}") from None
