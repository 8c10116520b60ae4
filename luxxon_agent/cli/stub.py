"""`luxxon-agent stub`: run the local Luxxon API server; `stub request`: play the consumer."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from luxxon_agent.cli._common import (
    command_group,
    configure_logging,
    handle_errors,
    print_json,
    run_async,
)
from luxxon_agent.secret import install_redaction

DEFAULT_BASE_URL = "http://127.0.0.1:8787/api/v1"

stub_app = command_group(
    "Run the local Luxxon API stub (FastAPI + SQLite) on loopback.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@stub_app.callback()
@handle_errors
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8787, help="TCP port."),
    db: str = typer.Option(
        None, help="SQLite file (WAL); ':memory:' for a throwaway one. Default: user data dir."
    ),
    meter: str = typer.Option("wallclock", help="Meter run at /end: wallclock or telemetry."),
    fee_bps: int = typer.Option(1000, "--fee-bps", help="Platform fee in basis points."),
    no_video: bool = typer.Option(
        False, "--no-video", help="Mint whip/whep URLs without serving the WHIP ingest."
    ),
    transport_cc: bool = typer.Option(
        False,
        "--transport-cc/--no-transport-cc",
        help="Answer a publisher's transport-wide sequence numbers with transport-cc"
        " feedback (off: receiver reports and REMB only, as aiortc).",
    ),
    operator_dispatch: bool = typer.Option(
        True,
        "--operator-dispatch/--no-operator-dispatch",
        help="Per-operator dispatch (advertised in /config features); off: workspace-level"
        " only, as production today.",
    ),
    public_url: str = typer.Option(
        None, help="Origin clients reach the stub at (default http://HOST:PORT)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Serve the Luxxon API under /api/v1 (OpenAPI at /api/v1/docs-json)."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from luxxon_agent.errors import ConfigError
    from luxxon_agent.models import MeterMode
    from luxxon_agent.stub import StubConfig, create_app, default_db_path

    try:
        meter_mode = MeterMode(meter)
    except ValueError:
        raise ConfigError(f"--meter must be wallclock or telemetry, got {meter!r}") from None
    configure_logging(verbose)
    from luxxon_agent.stub.limits import bound_logging

    bound_logging()
    try:
        config = StubConfig(
            db_path=db or default_db_path(),
            public_base_url=public_url or f"http://{host}:{port}",
            meter=meter_mode,
            fee_bps=fee_bps,
            with_video=not no_video,
            transport_cc=transport_cc,
            operator_dispatch=operator_dispatch,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    app = create_app(config)
    # built once, before serving: the first /docs-json or 405 would build it on the event
    # loop, holding it 0.4 s (measured by the stub's loop watch)
    app.openapi()
    typer.echo(f"luxxon stub: {config.public_base_url}/api/v1 (db {config.db_path})", err=True)
    # the access log writes every path, and a /whip/<token> path is a credential; the
    # root handler already redacts, this covers a handler added to the logger itself
    install_redaction(logging.getLogger("uvicorn.access"))
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=verbose)


@stub_app.command("request")
@handle_errors
def request(
    lat: float = typer.Option(..., help="Latitude of the requested view."),
    lng: float = typer.Option(..., help="Longitude of the requested view."),
    duration: int = typer.Option(..., help="maxDurationSeconds of the session."),
    dispatch: bool = typer.Option(False, "--dispatch", help="Dispatch it to a supplier too."),
    base_url: str = typer.Option(
        DEFAULT_BASE_URL, envvar="LUXXON_BASE_URL", help="The stub's API base URL."
    ),
    key_file: Annotated[
        Path | None,
        typer.Option(help="Consumer wallet key file (default: in the user data dir, mode 0600)."),
    ] = None,
    json_output: bool = typer.Option(
        False, "--json", help="Print the new Session object (API wire form) as JSON."
    ),
) -> None:
    """Request a session as a consumer; prints the new session id as the last word.

    With --json, stdout is one JSON object, the Session as the API returns it
    (its id is the "id" field), so the output stays valid JSON.
    """
    from luxxon_agent.stub.consumer import request_session

    outcome = run_async(
        request_session(
            base_url,
            lat=lat,
            lng=lng,
            duration_seconds=duration,
            dispatch=dispatch,
            key_path=key_file,
        )
    )
    session = outcome.session
    if outcome.created_workspace:
        typer.echo(f"created consumer workspace {outcome.consumer_workspace_id}", err=True)
    if json_output:
        print_json(session.to_wire())
        return
    where = f"dispatched to {session.operator_workspace_id}" if dispatch else "not dispatched"
    typer.echo(f"{session.state.value}, {where}, lat {lat} lng {lng}: {session.id}")


def register(app: typer.Typer) -> None:
    """Add `stub` (serve) and `stub request` to `app`."""
    app.add_typer(stub_app, name="stub")
