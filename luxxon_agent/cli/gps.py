"""`luxxon-agent gps check|dump`: is there a usable fix, and what does the source say."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from luxxon_agent.cli._common import command_group, handle_errors, print_json, run_async
from luxxon_agent.errors import EXIT_FAILURE, EXIT_OK

if TYPE_CHECKING:
    from rich.panel import Panel

    from luxxon_agent.position.source_check import SourceCheck

SourceArg = Annotated[
    str,
    typer.Argument(
        help="serial:///dev/ttyUSB0[?baud=9600], tcp://HOST:PORT, gpsd://HOST[:2947], "
        "mavlink://udpin:0.0.0.0:14550, nmea-file://PATH[?speed=0], sim://?lat=..&lng=..",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add the `gps` group to `app`."""
    gps = command_group("Check or dump a GPS position source.")
    gps.command("check")(check)
    gps.command("dump")(dump)
    app.add_typer(gps, name="gps")


@handle_errors
def check(
    source: SourceArg,
    seconds: Annotated[float, typer.Option("--seconds", "-s", min=0.1, help="How long")] = 10.0,
    stop_on_fix: Annotated[
        bool, typer.Option("--stop-on-fix", help="End at the first usable fix")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary")] = False,
) -> None:
    """Watch a source live; exit 0 only if a usable fix (accuracy <= 100 m) was seen."""
    from rich.console import Console
    from rich.live import Live

    from luxxon_agent.position import open_source
    from luxxon_agent.position.source_check import check_source

    position_source = open_source(source)
    console = Console(stderr=as_json)
    with Live(
        _panel(None, position_source.description), console=console, transient=as_json
    ) as live:
        result = run_async(
            check_source(
                position_source,
                seconds,
                stop_on_fix=stop_on_fix,
                on_update=lambda state: live.update(_panel(state, position_source.description)),
            )
        )
        live.update(_panel(result, position_source.description))
    if as_json:
        print_json(result.to_json())
    raise typer.Exit(EXIT_OK if result.usable else EXIT_FAILURE)


@handle_errors
def dump(
    source: SourceArg,
    seconds: Annotated[
        float | None, typer.Option("--seconds", "-s", min=0.1, help="Stop after N s")
    ] = None,
) -> None:
    """One JSON line per fix (time, lat, lng, accuracy_m, quality, source, ...)."""
    from luxxon_agent.position import open_source
    from luxxon_agent.position.fix_dump import dump_fixes

    def write(line: dict[str, object]) -> None:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    run_async(dump_fixes(open_source(source), seconds, write))


def _panel(state: SourceCheck | None, description: str) -> Panel:
    from rich.panel import Panel
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    if state is None:
        table.add_row("status", "waiting for data…")
        return Panel(table, title=f"gps check {description}")
    fix = state.last_fix
    stats = state.source.stats
    verdict = "[green]usable fix[/]" if state.usable else "[red]no usable fix yet[/]"
    table.add_row("verdict", verdict)
    if fix is not None:
        accuracy = "unknown" if fix.accuracy_m is None else f"{fix.accuracy_m:.1f} m"
        table.add_row("fix", f"{fix.lat:.7f}, {fix.lng:.7f} ({fix.quality.value})")
        table.add_row("time", f"{fix.time.isoformat()} ({fix.time_source.value})")
        table.add_row("accuracy", accuracy)
        table.add_row("satellites", "-" if fix.satellites is None else str(fix.satellites))
    else:
        table.add_row("fix", "none")
    if state.reasons:
        table.add_row("no fix because", "; ".join(state.reasons[-2:]))
    table.add_row("fixes", f"{state.fixes} ({state.usable_fixes} usable), {state.no_fixes} no-fix")
    table.add_row("sentence rate", f"{state.sentence_rate_hz:.1f} Hz")
    types = ", ".join(f"{k}×{v}" for k, v in sorted(stats.sentences.items())) or "none"
    table.add_row("sentence types", types)
    table.add_row("checksum failures", str(stats.checksum_failures))
    if stats.reconnects:
        table.add_row("reconnects", str(stats.reconnects))
    table.add_row("elapsed", f"{state.elapsed_s:.1f} s")
    return Panel(table, title=f"gps check {description}")
