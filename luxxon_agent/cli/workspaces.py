"""`luxxon workspaces`: list, select, create and update the wallet's workspaces.

A wallet session (`luxxon login`) acts for one selected workspace at a time.
`select` pins it by hand; every command given a workspace (`update ID`,
`--workspace ID` of `keys` and `operators`) pins it itself first
(`_context.act_for`), so a new workspace is usable right after `create`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from luxxon_agent.cli._common import command_group, handle_errors
from luxxon_agent.cli._context import (
    JsonOpt,
    act_for,
    call,
    open_profile,
    request_model,
    wallet_store,
    wants_json,
)
from luxxon_agent.errors import ConfigError

if TYPE_CHECKING:
    from luxxon_agent.api import AsyncLuxxonClient
    from luxxon_agent.identity import Profile
    from luxxon_agent.models import Me, Workspace

workspaces_app = command_group("List, select, create and update the wallet's workspaces.")

WORKSPACE_COLUMNS = ("selected", "workspaceId", "slug", "name", "roles")
WorkspaceId = Annotated[str, typer.Argument(metavar="ID", help="Workspace id.")]


def register(app: typer.Typer) -> None:
    """Add the `workspaces` group to `luxxon`."""
    app.add_typer(workspaces_app, name="workspaces")


def _memberships(me: Me) -> list[dict[str, Any]]:
    """The wallet's workspaces (wire form), each marked whether the session acts for it."""
    return [
        {**member.to_wire(), "selected": member.workspace_id == me.workspace_id}
        for member in me.memberships
    ]


@workspaces_app.command("list")
@handle_errors
def list_command(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """The wallet's workspaces; `*` marks the one the wallet session acts for."""
    from luxxon_agent.cli._render import message, table

    async def body(client: AsyncLuxxonClient, profile: Profile) -> Me:
        return await client.me()

    me = call(ctx, "cookie", body)
    rows = _memberships(me)
    if wants_json(ctx, json_out):
        table(rows, WORKSPACE_COLUMNS, as_json=True, empty="")
        return
    shown = [{**row, "selected": "*" if row["selected"] else ""} for row in rows]
    table(
        shown,
        WORKSPACE_COLUMNS,
        as_json=False,
        empty="no workspaces yet: run `luxxon workspaces create --slug S --name N --supplier`",
    )
    if rows and me.workspace_id is None:
        message("none selected: run `luxxon workspaces select ID` (or pass --workspace ID)")


@workspaces_app.command("select")
@handle_errors
def select_command(
    ctx: typer.Context, workspace_id: WorkspaceId, json_out: JsonOpt = False
) -> None:
    """Pin the wallet session to a workspace (commands given one do it themselves)."""
    from luxxon_agent.cli._render import emit

    async def body(client: AsyncLuxxonClient, profile: Profile) -> Me:
        await client.select_workspace(workspace_id)
        return await client.me()

    me = call(ctx, "cookie", body)
    selected = next((row for row in _memberships(me) if row["selected"]), None)
    payload = {
        "workspaceId": me.workspace_id,
        "slug": selected["slug"] if selected else None,
        "name": selected["name"] if selected else None,
        "walletAddress": me.wallet_address,
    }
    emit(payload, as_json=wants_json(ctx, json_out), title="workspace selected")


@workspaces_app.command("create")
@handle_errors
def create_command(
    ctx: typer.Context,
    slug: Annotated[str, typer.Option("--slug", help="URL name: a-z, 0-9, dashes.")],
    name: Annotated[str, typer.Option("--name", help="Display name.")],
    supplier: Annotated[bool, typer.Option("--supplier", help="An operator workspace.")] = False,
    consumer: Annotated[bool, typer.Option("--consumer", help="A consumer workspace.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Create a workspace owned by the wallet (signs the workspace challenge)."""
    from luxxon_agent.cli._render import emit
    from luxxon_agent.identity import address_of, create_workspace_signed
    from luxxon_agent.models import CreateWorkspaceRequest, Role

    roles = [role for flag, role in ((supplier, Role.SUPPLIER), (consumer, Role.CONSUMER)) if flag]
    if not roles:
        raise ConfigError("choose a role: --supplier (operator) and/or --consumer")
    request_model(
        CreateWorkspaceRequest,
        slug=slug,
        name=name,
        walletAddress="0x" + "0" * 40,
        signature="0x00",
        nonce="placeholder",
        roles=roles,
    )  # validates slug and name before the wallet is unlocked
    profile = open_profile(ctx)
    key = wallet_store(profile).private_key()

    async def body(client: AsyncLuxxonClient, profile: Profile) -> Workspace:
        return await create_workspace_signed(client, key, slug=slug, name=name, roles=roles)

    workspace = call(ctx, "none", body)
    profile.update_settings(walletAddress=address_of(key))
    emit(workspace.to_wire(), as_json=wants_json(ctx, json_out), title="workspace created")


def _parse_coverage(text: str) -> tuple[float, float, float]:
    parts = [part.strip() for part in text.split(",")]
    try:
        lat, lng, radius = (float(part) for part in parts)
    except ValueError:
        raise ConfigError(
            f"--coverage wants LAT,LNG,RADIUS_M (three numbers), got {text!r}"
        ) from None
    return lat, lng, radius


@workspaces_app.command("update")
@handle_errors
def update_command(
    ctx: typer.Context,
    workspace_id: WorkspaceId,
    online: Annotated[bool, typer.Option("--online", help="Available for dispatch.")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Not available.")] = False,
    coverage: Annotated[
        str | None, typer.Option("--coverage", metavar="LAT,LNG,RADIUS_M", help="Service area.")
    ] = None,
    device_kind: Annotated[
        str | None,
        typer.Option("--device-kind", help="PHONE, LAPTOP, DRONE, PTZ, FIXED or OTHER."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="New display name.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Change availability, coverage, device kind or name.

    --online alone is enough when the server already has the workspace's coverage;
    without one it refuses, and its error is printed as is.
    """
    from luxxon_agent.cli._render import emit
    from luxxon_agent.models import UpdateWorkspaceRequest

    if online and offline:
        raise ConfigError("choose one of --online and --offline")
    values: dict[str, Any] = {}
    if online or offline:
        values["availabilityState"] = "ONLINE" if online else "OFFLINE"
    if coverage is not None:
        lat, lng, radius = _parse_coverage(coverage)
        values.update(coverageLat=lat, coverageLng=lng, coverageRadiusMeters=radius)
    if device_kind is not None:
        values["deviceKind"] = device_kind.upper()
    if name is not None:
        values["name"] = name
    if not values:
        raise ConfigError(
            "nothing to update: give --online/--offline, --coverage, --device-kind or --name"
        )
    request = request_model(UpdateWorkspaceRequest, **values)

    async def body(client: AsyncLuxxonClient, profile: Profile) -> Workspace:
        await act_for(client, workspace_id)
        return await client.update_workspace(workspace_id, request)

    emit(
        call(ctx, "any", body).to_wire(),
        as_json=wants_json(ctx, json_out),
        title="workspace updated",
    )
