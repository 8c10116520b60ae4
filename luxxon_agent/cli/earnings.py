"""`luxxon sessions earnings ID`: what a session paid, and this machine's cross-check."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from luxxon_agent.cli._common import handle_errors
from luxxon_agent.cli._context import JsonOpt, call, wants_json

if TYPE_CHECKING:
    from luxxon_agent.api import AsyncLuxxonClient
    from luxxon_agent.identity import Profile


def register(sessions_app: typer.Typer) -> None:
    """Add `earnings` to the `luxxon sessions` group."""
    sessions_app.command("earnings")(earnings_command)


@handle_errors
def earnings_command(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    spool: Annotated[
        Path | None,
        typer.Option(
            "--spool",
            envvar="LUXXON_SPOOL",
            help="The agent's telemetry spool for a local cross-check; default: the one "
            "holding the session among <state_dir>/<operator>/telemetry.sqlite3.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """The server's figures (session, settlement) and what this machine's samples
    say: taken, delivered, pending, seconds covered, and what the telemetry-anchored
    meter would pay. The spool is --spool, else the agent's that holds the session."""
    import os

    from luxxon_agent.cli._render import emit
    from luxxon_agent.cli.earnings_report import earnings_report, local_summary
    from luxxon_agent.clock import SYSTEM_CLOCK

    async def body(client: AsyncLuxxonClient, profile: Profile) -> dict[str, Any]:
        return await earnings_report(
            client, session_id, spool, now=SYSTEM_CLOCK.now(), env=os.environ
        )

    report = call(ctx, "key", body)
    as_json = wants_json(ctx, json_out)
    if as_json:
        emit(report, as_json=True)
        return
    emit(report["server"], as_json=False, title=f"session {session_id}: server")
    missing = local_summary(report)
    if missing is not None:
        typer.echo(missing)
    else:
        emit(report["local"], as_json=False, title="this machine's samples")
