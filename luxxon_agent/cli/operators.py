"""`luxxon operators`: register, list, show, revoke and retire the devices of a SUPPLIER workspace.

`register` signs an EIP-712 delegation (workspace, label, device address, issue
and expiry times) with the profile's wallet, so the device's own key
(`luxxon-agent keygen` on the device) may sign telemetry; the wallet itself
never goes on the device.

On a server with per-operator dispatch (`GET /config` `features`; the stub's
roadmap extension), each operator has its own state, session and heartbeat,
which `list` and `show` print; `retire` takes one out of service for good.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

import typer

from luxxon_agent.cli._common import command_group, handle_errors
from luxxon_agent.cli._context import JsonOpt, WorkspaceOpt, act_for, call, wallet_store, wants_json
from luxxon_agent.errors import ConfigError

if TYPE_CHECKING:
    from luxxon_agent.api import AsyncLuxxonClient
    from luxxon_agent.identity import Profile
    from luxxon_agent.models import Operator

OperatorId = Annotated[str, typer.Argument(metavar="ID", help="Operator id (op_...).")]

operators_app = command_group(
    "Devices (operators) of a SUPPLIER workspace, authorised by the wallet."
)

OPERATOR_COLUMNS = ("id", "label", "kind", "state", "sessionId", "lastSeenAt", "deviceAddress")


def operator_row(operator: Operator) -> dict[str, object]:
    """The wire object, with `state`: RETIRED or REVOKED, else the availability (per-operator
    dispatch) or `-` on a server without it, whose operators have no availability."""
    row = operator.to_wire()
    if operator.retired_at is not None:
        row["state"] = "RETIRED"
    elif operator.revoked_at is not None:
        row["state"] = "REVOKED"
    elif "availability_state" in operator.model_fields_set:
        row["state"] = operator.availability_state.value
    return row


def register(app: typer.Typer) -> None:
    """Add the `operators` group to `luxxon`."""
    app.add_typer(operators_app, name="operators")


@operators_app.command("register")
@handle_errors
def register_command(
    ctx: typer.Context,
    workspace: WorkspaceOpt,
    label: Annotated[str, typer.Option("--label", help="Operator label, e.g. drone-7.")],
    device_address: Annotated[
        str, typer.Option("--device-address", help="The device key's address (0x...).")
    ],
    kind: Annotated[
        str, typer.Option("--kind", help="PHONE, LAPTOP, DRONE, PTZ, FIXED, OTHER.")
    ] = "OTHER",
    expires_days: Annotated[
        int, typer.Option("--expires-days", min=1, max=3650, help="Delegation lifetime.")
    ] = 365,
    json_out: JsonOpt = False,
) -> None:
    """Sign a delegation with the wallet and register the device key."""
    from datetime import timedelta

    from luxxon_agent.cli._render import emit
    from luxxon_agent.clock import SYSTEM_CLOCK
    from luxxon_agent.eip712 import KeySigner, normalize_address
    from luxxon_agent.models import DeviceKind
    from luxxon_agent.telemetry.delegation import register_operator

    try:
        device_kind = DeviceKind(kind.upper())
    except ValueError:
        raise ConfigError(f"--kind must be one of {', '.join(DeviceKind)}") from None
    try:
        device = normalize_address(device_address)
    except ValueError:
        raise ConfigError("--device-address must be 0x followed by 40 hex digits") from None

    async def body(client: AsyncLuxxonClient, profile: Profile) -> Operator:
        wallet = KeySigner(wallet_store(profile).private_key())
        await act_for(client, workspace)
        config = await client.config()
        return await register_operator(
            client,
            workspace_id=workspace,
            label=label,
            kind=device_kind,
            device_address=device,
            wallet=wallet,
            chain_id=config.chain_id,
            issued_at=SYSTEM_CLOCK.now(),
            lifetime=timedelta(days=expires_days),
        )

    operator = call(ctx, "any", body)
    emit(operator.to_wire(), as_json=wants_json(ctx, json_out), title="operator registered")


@operators_app.command("list")
@handle_errors
def list_command(ctx: typer.Context, workspace: WorkspaceOpt, json_out: JsonOpt = False) -> None:
    """The workspace's operators, oldest first (revoked and retired ones too): each one's
    state, session and last heartbeat."""
    from luxxon_agent.cli._render import table

    async def body(client: AsyncLuxxonClient, profile: Profile) -> list[Operator]:
        await act_for(client, workspace)
        return await client.list_operators(workspace)

    rows = [operator_row(op) for op in call(ctx, "any", body)]
    table(rows, OPERATOR_COLUMNS, as_json=wants_json(ctx, json_out), empty="no operators")


def _one_operator(
    ctx: typer.Context,
    workspace: str,
    json_out: bool,
    title: str,
    action: Callable[[AsyncLuxxonClient], Awaitable[Operator]],
) -> None:
    """Run `action` for `workspace` (the wallet session pinned to it first); print its operator."""
    from luxxon_agent.cli._render import emit

    async def body(client: AsyncLuxxonClient, profile: Profile) -> Operator:
        await act_for(client, workspace)
        return await action(client)

    operator = call(ctx, "any", body)
    emit(operator_row(operator), as_json=wants_json(ctx, json_out), title=title)


@operators_app.command("revoke")
@handle_errors
def revoke_command(
    ctx: typer.Context,
    workspace: WorkspaceOpt,
    operator_id: OperatorId,
    json_out: JsonOpt = False,
) -> None:
    """Revoke at once: the server accepts nothing more signed by that device key."""
    _one_operator(
        ctx,
        workspace,
        json_out,
        "operator revoked",
        lambda client: client.revoke_operator(workspace, operator_id),
    )


@operators_app.command("show")
@handle_errors
def show_command(
    ctx: typer.Context,
    workspace: WorkspaceOpt,
    operator_id: OperatorId,
    json_out: JsonOpt = False,
) -> None:
    """One operator (needs per-operator dispatch on the server)."""
    _one_operator(
        ctx, workspace, json_out, "operator", lambda c: c.get_operator(workspace, operator_id)
    )


@operators_app.command("retire")
@handle_errors
def retire_command(
    ctx: typer.Context,
    workspace: WorkspaceOpt,
    operator_id: OperatorId,
    json_out: JsonOpt = False,
) -> None:
    """Take an operator out of service for good (per-operator dispatch): it is never
    dispatched again, an ASSIGNED session it holds is cancelled, a LIVE one runs to its end."""
    _one_operator(
        ctx,
        workspace,
        json_out,
        "operator retired",
        lambda client: client.retire_operator(workspace, operator_id),
    )
