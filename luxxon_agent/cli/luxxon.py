"""`luxxon`: the operator's terminal tool (wallet, login, workspaces, API keys, sessions).

Each command parses, calls the package (`luxxon_agent.identity`, `luxxon_agent.api`)
and renders with `_render`. Only typer is imported at module level: httpx,
pydantic models, keyring and eth_account load inside the commands that need
them, so `luxxon --help` stays fast and imports none of aiortc, av, web3.
Plumbing shared with the other groups (profile, client) is in `_context`.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from luxxon_agent.cli import earnings, operators, workspaces
from luxxon_agent.cli._common import command_group, handle_errors, skip_httpx_command_line
from luxxon_agent.cli._context import (
    Globals,
    JsonOpt,
    WorkspaceOpt,
    act_for,
    call,
    open_profile,
    request_model,
    resolve_base_url,
    wallet_store,
    wants_json,
)
from luxxon_agent.errors import AuthError, ConfigError
from luxxon_agent.wire import PRODUCTION_BASE_URL

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from luxxon_agent.api import AsyncLuxxonClient
    from luxxon_agent.identity import Profile, StoreKind, WalletStore
    from luxxon_agent.models import ApiKey, Me, WalletLoginResult
    from luxxon_agent.secret import Secret

T = TypeVar("T")

app = command_group(name="luxxon")
wallet_app = command_group("The operator's wallet key (keyring or 0600 keystore).")
keys_app = command_group("Mint and revoke API keys (wallet login needed).")
sessions_app = command_group("Operate sessions with the profile's API key.")
# the order of `luxxon --help`: the order a new operator needs them in
app.add_typer(wallet_app, name="wallet")
workspaces.register(app)
app.add_typer(keys_app, name="keys")
app.add_typer(sessions_app, name="sessions")

ShowUrlOpt = Annotated[
    bool, typer.Option("--show-url", help="Print the whipUrl (a credential) in full.")
]


@app.callback()
def _root(
    ctx: typer.Context,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            envvar="LUXXON_BASE_URL",
            help=f"API base URL [default: the profile's, else {PRODUCTION_BASE_URL}]",
            show_default=False,
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", envvar="LUXXON_PROFILE", help="Profile name [default: default]"),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="LUXXON_API_KEY",
            help="API key (prefer the env var or the profile's stored key: argv is visible)",
            show_envvar=True,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Luxxon operator tool: wallet, login, workspaces, API keys, sessions, earnings."""
    ctx.obj = Globals(base_url, profile, api_key, json_out)


# ---- rendering -----------------------------------------------------------------------


def _with_key(ctx: typer.Context, request: Callable[[AsyncLuxxonClient], Awaitable[T]]) -> T:
    """Run one client call with the profile's API key."""

    async def body(client: AsyncLuxxonClient, profile: Profile) -> T:
        return await request(client)

    return call(ctx, "key", body)


def _session_command(
    ctx: typer.Context,
    request: Callable[[AsyncLuxxonClient], Awaitable[Any]],
    *,
    json_out: bool,
    title: str,
    show_url: bool = False,
) -> None:
    """Run a call that returns a session, with the profile's API key, and render the session.

    Its whipUrl (present while LIVE) is shown only with --show-url, JSON included.
    The stub's `video` extension, when the server sends it, reads as one sentence.
    """
    from luxxon_agent.cli._render import describe_video, emit, redact

    session = _with_key(ctx, request)
    payload = redact(session.to_wire(), show_url)
    as_json = wants_json(ctx, json_out)
    if session.video is not None and not as_json:
        payload["video"] = describe_video(session.video, now=datetime.now(UTC))
    emit(payload, as_json=as_json, title=title)


# ---- wallet -------------------------------------------------------------------------


def _wallet_report(
    profile: Profile, address: str, kind: StoreKind, store: WalletStore
) -> dict[str, str]:
    return {
        "profile": profile.name,
        "address": address,
        "store": kind,
        "location": store.describe(kind),
    }


@wallet_app.command("new")
@handle_errors
def wallet_new(
    ctx: typer.Context,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite the profile's wallet.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Create a new wallet key and store it (keyring, else a scrypt keystore file)."""
    from luxxon_agent.cli._render import emit

    profile = open_profile(ctx)
    store = wallet_store(profile)
    address, kind = store.create(replace=replace)
    emit(
        _wallet_report(profile, address, kind, store),
        as_json=wants_json(ctx, json_out),
        title="wallet created",
    )


@wallet_app.command("import")
@handle_errors
def wallet_import(
    ctx: typer.Context,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite the profile's wallet.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Import a private key read from stdin (or a hidden prompt); never from argv."""
    from luxxon_agent.cli._render import emit
    from luxxon_agent.secret import Secret

    if sys.stdin.isatty():
        text = typer.prompt("Private key (hex)", hide_input=True)
    else:
        text = sys.stdin.readline()
    if not text.strip():
        raise ConfigError("no private key on stdin")
    profile = open_profile(ctx)
    store = wallet_store(profile)
    address, kind = store.import_key(Secret(text.strip()), replace=replace)
    emit(
        _wallet_report(profile, address, kind, store),
        as_json=wants_json(ctx, json_out),
        title="wallet imported",
    )


@wallet_app.command("show")
@handle_errors
def wallet_show(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Show the profile's wallet address and where its key is stored (never the key)."""
    from luxxon_agent.cli._render import emit

    profile = open_profile(ctx)
    store = wallet_store(profile)
    address = store.address()
    kind = store.kind()
    if not address or not kind:
        raise AuthError(
            f"profile {profile.name!r} has no wallet: run `luxxon wallet new` or "
            "`luxxon wallet import`"
        )
    emit(_wallet_report(profile, address, kind, store), as_json=wants_json(ctx, json_out))


# ---- login --------------------------------------------------------------------------


@app.command()
@handle_errors
def login(
    ctx: typer.Context,
    workspace: Annotated[
        str | None, typer.Option("--workspace", help="Pin the session to this workspace.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Sign in with the wallet (SIWE); the lx_session cookie is kept in the profile."""
    from luxxon_agent.cli._render import emit
    from luxxon_agent.identity import siwe_login

    profile = open_profile(ctx)
    key = wallet_store(profile).private_key()
    base_url = resolve_base_url(ctx, profile)

    async def body(client: AsyncLuxxonClient, profile: Profile) -> tuple[WalletLoginResult, Secret]:
        result = await siwe_login(client, key)
        cookie = client.session_cookie
        assert cookie is not None  # siwe_login raises AuthError when the server set none
        if workspace:
            await act_for(client, workspace)
        return result, cookie

    result, cookie = call(ctx, "none", body)
    profile.save_session(cookie, base_url)
    profile.update_settings(baseUrl=base_url)
    payload = result.to_wire()
    payload["baseUrl"] = base_url
    if workspace:
        payload["selectedWorkspaceId"] = workspace
    emit(payload, as_json=wants_json(ctx, json_out), title="logged in")


@app.command()
@handle_errors
def logout(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """End the wallet session on the server and forget the cookie."""
    from luxxon_agent.cli._render import emit
    from luxxon_agent.errors import ApiError

    profile = open_profile(ctx)
    base_url = resolve_base_url(ctx, profile)
    server = "not logged in"
    if profile.load_session(base_url) is not None:

        async def body(client: AsyncLuxxonClient, profile: Profile) -> str:
            try:
                await client.logout()
            except ApiError as exc:
                if exc.status != 401:
                    raise
                # the server already forgot this session: only the local copy remains
                return "session had already expired"
            return "session ended"

        server = call(ctx, "cookie", body)
    profile.clear_session()
    emit({"profile": profile.name, "result": server}, as_json=wants_json(ctx, json_out))


@app.command()
@handle_errors
def whoami(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Who the server thinks you are (API key or wallet session)."""
    from luxxon_agent.cli._render import emit

    async def body(client: AsyncLuxxonClient, profile: Profile) -> Me:
        return await client.me()

    emit(call(ctx, "any", body).to_wire(), as_json=wants_json(ctx, json_out))


# ---- API keys -----------------------------------------------------------------------------


@keys_app.command("create")
@handle_errors
def keys_create(
    ctx: typer.Context,
    workspace: WorkspaceOpt,
    label: Annotated[str, typer.Option("--label", help="What the key is for.")],
    environment: Annotated[str, typer.Option("--environment", help="TEST or LIVE.")],
    scope: Annotated[
        list[str],
        typer.Option("--scope", help="sessions:operate, sessions:read, wallet:read (repeat)."),
    ],
    show: Annotated[bool, typer.Option("--show", help="Also print the key's plaintext.")] = False,
    no_store: Annotated[
        bool,
        typer.Option(
            "--no-store",
            help="Keep the profile's stored API key; the new one is only printed (needs --show).",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Mint an API key and store it as the profile's API key, replacing the stored one.

    The plaintext goes to the profile's keyring entry (else a 0600 file); the
    output names the key it replaced. --no-store --show mints a spare key.
    """
    from luxxon_agent.cli._render import emit, message
    from luxxon_agent.identity import ApiKeyStore
    from luxxon_agent.models import CreateApiKeyRequest
    from luxxon_agent.secret import Secret

    if no_store and not show:
        raise ConfigError("--no-store without --show would lose the new key: add --show")
    scopes = [item for value in scope for item in value.replace(",", " ").split()]
    request = request_model(
        CreateApiKeyRequest, label=label, environment=environment.upper(), scopes=scopes
    )

    async def body(client: AsyncLuxxonClient, profile: Profile) -> ApiKey:
        await act_for(client, workspace)
        return await client.create_api_key(workspace, request)

    key = call(ctx, "cookie", body)
    if not key.plaintext:
        raise ConfigError("the server returned no key plaintext; the key cannot be stored")
    payload = key.to_wire()
    payload.pop("plaintext", None)
    if show:
        payload["plaintext"] = key.plaintext
    profile = open_profile(ctx)
    if no_store:
        where, replaced = None, None
        note = f"not stored (--no-store): profile {profile.name}'s API key is unchanged"
    else:
        store = ApiKeyStore(profile)
        replaced = store.stored_prefix()
        where = store.describe(store.save(Secret(key.plaintext)))
        note = f"stored as profile {profile.name}'s API key in {where}"
        if replaced is not None:
            note += f", replacing key {replaced} (still valid until revoked)"
    if wants_json(ctx, json_out):
        emit({**payload, "storedIn": where, "replacedKeyPrefix": replaced}, as_json=True)
        return
    emit(payload, as_json=False, title="API key created")
    message(note)


@keys_app.command("revoke")
@handle_errors
def keys_revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID")],
    workspace: WorkspaceOpt,
    json_out: JsonOpt = False,
) -> None:
    """Revoke an API key (it keeps working for the server's grace window)."""
    from luxxon_agent.cli._render import emit

    async def body(client: AsyncLuxxonClient, profile: Profile) -> ApiKey:
        await act_for(client, workspace)
        return await client.revoke_api_key(workspace, key_id)

    key = call(ctx, "cookie", body)
    payload = key.to_wire()
    payload.pop("plaintext", None)
    emit(payload, as_json=wants_json(ctx, json_out), title="API key revoked")


# ---- sessions ---------------------------------------------------------------------------------


SessionId = Annotated[str, typer.Argument(metavar="ID", help="Session id.")]


@sessions_app.command("list")
@handle_errors
def sessions_list(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option("--state", help="Only this state.")] = None,
    show_url: ShowUrlOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Sessions visible to the key's workspace, newest first."""
    from luxxon_agent.cli._render import SESSION_COLUMNS, redact, table

    wanted = None
    if state is not None:
        from luxxon_agent.models import SessionState

        try:
            wanted = SessionState(state.upper())
        except ValueError:
            choices = ", ".join(SessionState)
            raise ConfigError(f"--state must be one of {choices}") from None

    sessions = _with_key(ctx, lambda client: client.list_sessions(wanted))
    as_json = wants_json(ctx, json_out)
    rows = redact([s.to_wire() for s in sessions], show_url)
    table(rows, SESSION_COLUMNS, as_json=as_json, empty="no sessions")


@sessions_app.command("show")
@handle_errors
def sessions_show(
    ctx: typer.Context,
    session_id: SessionId,
    show_url: ShowUrlOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """One session."""
    _session_command(
        ctx,
        lambda client: client.get_session(session_id),
        json_out=json_out,
        title="session",
        show_url=show_url,
    )


@sessions_app.command("accept")
@handle_errors
def sessions_accept(
    ctx: typer.Context,
    session_id: SessionId,
    operator_workspace: Annotated[
        str | None, typer.Option("--operator-workspace", help="Accept for this workspace.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Claim a REQUESTED session (→ ASSIGNED; the workspace goes BUSY)."""
    _session_command(
        ctx,
        lambda client: client.accept(session_id, operator_workspace),
        json_out=json_out,
        title="accepted",
    )


@sessions_app.command("start")
@handle_errors
def sessions_start(
    ctx: typer.Context,
    session_id: SessionId,
    show_url: ShowUrlOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """ASSIGNED → LIVE; the whipUrl is printed redacted unless --show-url (JSON too)."""
    from luxxon_agent.cli._render import emit, redact

    result = _with_key(ctx, lambda client: client.start(session_id))
    as_json = wants_json(ctx, json_out)
    payload = redact(result.to_wire(), show_url)
    if not as_json:
        session = payload.pop("session")
        payload = {"id": session["id"], "state": session["state"], **payload}
    emit(payload, as_json=as_json, title="started")


@sessions_app.command("producer-token")
@handle_errors
def sessions_producer_token(
    ctx: typer.Context,
    session_id: SessionId,
    show_url: ShowUrlOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """The session's whipUrl again (redacted unless --show-url, JSON too)."""
    from luxxon_agent.cli._render import emit, redact

    token = _with_key(ctx, lambda client: client.producer_token(session_id))
    emit(redact(token.to_wire(), show_url), as_json=wants_json(ctx, json_out))


@sessions_app.command("end")
@handle_errors
def sessions_end(ctx: typer.Context, session_id: SessionId, json_out: JsonOpt = False) -> None:
    """LIVE → ENDED: the server runs the meter and settles."""
    _session_command(ctx, lambda client: client.end(session_id), json_out=json_out, title="ended")


@sessions_app.command("cancel")
@handle_errors
def sessions_cancel(ctx: typer.Context, session_id: SessionId, json_out: JsonOpt = False) -> None:
    """Cancel a session that is not LIVE yet."""
    _session_command(
        ctx, lambda client: client.cancel(session_id), json_out=json_out, title="cancelled"
    )


@sessions_app.command("cancel-all")
@handle_errors
def sessions_cancel_all(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Cancel every ASSIGNED session of the workspace and release it (LIVE ones stay)."""
    from luxxon_agent.cli._render import emit, message

    result = _with_key(ctx, lambda client: client.cancel_all_assignments())
    if wants_json(ctx, json_out):
        emit(result.to_wire(), as_json=True)
    elif result.count == 0:
        message("nothing to cancel: no ASSIGNED sessions")
    else:
        noun = "session" if result.count == 1 else "sessions"
        message(f"cancelled {result.count} {noun} (oldest first):")
        for session_id in result.cancelled:
            message(f"  {session_id}")


@sessions_app.command("frame")
@handle_errors
def sessions_frame(
    ctx: typer.Context,
    session_id: SessionId,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the JPEG.")],
    json_out: JsonOpt = False,
) -> None:
    """Save the latest decoded video frame as a JPEG."""
    from luxxon_agent.cli._render import emit

    data = _with_key(ctx, lambda client: client.frame(session_id))
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc.strerror}") from None
    emit(
        {"sessionId": session_id, "path": str(output), "bytes": len(data)},
        as_json=wants_json(ctx, json_out),
    )


# ---- other command groups ------------------------------------------------------------------

operators.register(app)
earnings.register(sessions_app)


def main() -> None:
    skip_httpx_command_line()
    app()
