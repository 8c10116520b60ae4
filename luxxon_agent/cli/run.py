"""`luxxon-agent run | demo | status | doctor | config check | install-service`.

Each command parses, calls one function of `luxxon_agent.agent`, renders.
Nothing heavy is imported at module level (only typer), so `--help` is fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from luxxon_agent.cli._common import (
    command_group,
    configure_logging,
    handle_errors,
    print_json,
    run_async,
)
from luxxon_agent.errors import EXIT_FAILURE, EXIT_OK

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

DEFAULT_STATUS = "127.0.0.1:8765"
DEFAULT_UNIT_PATH = Path("/etc/systemd/system/luxxon-agent.service")
DEFAULT_SERVICE_CONFIG = Path("/etc/luxxon-agent/agent.toml")

config_app = command_group("Check the agent's configuration.")


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command("run")(run)
    app.command("demo")(demo)
    app.command("status")(status)
    app.command("doctor")(doctor)
    app.command("install-service")(install_service)
    app.add_typer(config_app, name="config")


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="LUXXON_AGENT_CONFIG",
        help="Agent TOML (default /etc/luxxon-agent/agent.toml).",
    ),
]


def _load(config: Path | None, overrides: dict[str, Any] | None = None) -> Any:
    from luxxon_agent.agent import load_config

    return load_config(config, os.environ, overrides)


# ---- run ------------------------------------------------------------------------------


@handle_errors
def run(
    config: ConfigOption = None,
    base_url: str | None = typer.Option(None, help="Override [api] base_url."),
    state_dir: Annotated[Path | None, typer.Option(help="Override [agent] state_dir.")] = None,
    status_listen: str | None = typer.Option(
        None, "--status-listen", help="Override the status.listen key (HOST:PORT or unix:/path)."
    ),
    ice_loopback: bool | None = typer.Option(
        None, "--ice-loopback/--no-ice-loopback", help="Pin WebRTC ICE to 127.0.0.1."
    ),
    log_format: str = typer.Option(
        "auto", help="auto (JSON lines when stderr is not a terminal, e.g. journald), rich, json."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Run the fleet agent until SIGTERM/SIGINT (under systemd: Type=notify)."""
    overrides = {
        "api.base_url": base_url,
        "agent.state_dir": str(state_dir) if state_dir else None,
        "status.listen": status_listen,
        "agent.ice_loopback": ice_loopback,
    }
    agent_config = _load(config, overrides)
    if log_format not in ("auto", "rich", "json"):
        raise typer.BadParameter("--log-format must be auto, rich or json")
    json_lines = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    configure_logging(verbose, json_lines=json_lines)
    from luxxon_agent.agent.supervisor import Supervisor

    code = run_async(Supervisor(agent_config, env=dict(os.environ)).serve())
    raise typer.Exit(code)


# ---- config check --------------------------------------------------------------------------


@config_app.command("check")
@handle_errors
def config_check(
    config: ConfigOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print the effective config as JSON."),
) -> None:
    """Validate the config (TOML + LUXXON_AGENT_* env); name the offending key, exit 2."""
    from luxxon_agent.secret import strip_userinfo

    agent_config = _load(config)
    if as_json:
        data = agent_config.model_dump(mode="json")
        for op in data["operators"]:  # a camera URL may carry its password
            for key in ("position", "video"):
                op[key] = strip_userinfo(op[key])
        print_json(data)
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="operators", title_justify="left")
    for column in ("label", "kind", "position", "video", "coverage", "auto-accept"):
        table.add_column(column)
    for op in agent_config.operators:
        aa = op.auto_accept
        table.add_row(
            op.label,
            op.device_kind.value,
            escape(strip_userinfo(op.position)),
            escape(strip_userinfo(op.video)),
            f"{op.coverage.lat:.5f},{op.coverage.lng:.5f} r={op.coverage.radius_m:.0f} m",
            f"≥{aa.min_rate_micro_usdc} µUSDC/s ≤{aa.max_duration_seconds} s"
            if aa.enabled
            else "off",
        )
    console = Console()
    console.print(
        f"[green]config OK[/]: {agent_config.api.base_url}, "
        f"state in {agent_config.agent.state_dir}, "
        f"on_sigterm={agent_config.agent.on_sigterm.value}"
    )
    console.print(table)


# ---- status ---------------------------------------------------------------------------------


@handle_errors
def status(
    listen: str | None = typer.Option(
        None, "--listen", help=f"Status endpoint (default: from --config, else {DEFAULT_STATUS})."
    ),
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Read status.listen from this config.")
    ] = None,
    once: bool = typer.Option(False, "--once", help="Print one snapshot and exit."),
    as_json: bool = typer.Option(False, "--json", help="Print the raw status JSON once."),
    metrics: bool = typer.Option(False, "--metrics", help="Print the Prometheus text once."),
) -> None:
    """Live dashboard of a running agent (per operator: session, video, GPS, telemetry)."""
    import json

    from luxxon_agent.agent import fetch_status
    from luxxon_agent.agent.status import METRICS_PATH

    if listen is None:
        listen = _load(config).status.listen if config else DEFAULT_STATUS
    if metrics:
        sys.stdout.write(run_async(fetch_status(listen, METRICS_PATH)))
        return
    if as_json:
        sys.stdout.write(run_async(fetch_status(listen)) + "\n")
        return
    from rich.console import Console

    console = Console()
    snapshot = json.loads(run_async(fetch_status(listen)))
    if once:
        console.print(render_dashboard(snapshot))
        return
    run_async(_live_dashboard(listen, snapshot, console))


async def _live_dashboard(listen: str, snapshot: dict[str, Any], console: Console) -> None:
    """Redraw every second until Ctrl-C; an agent that goes away (a restart) is shown as
    unreachable, with its last figures, until it answers again."""
    import asyncio
    import json

    from rich.live import Live
    from rich.markup import escape

    from luxxon_agent.agent import StatusEndpointError, fetch_status
    from luxxon_agent.clock import SYSTEM_CLOCK, sleep_or_event
    from luxxon_agent.signals import stop_on_signals

    stop = asyncio.Event()
    with (
        stop_on_signals(stop),
        Live(render_dashboard(snapshot), console=console, refresh_per_second=2) as live,
    ):
        while not await sleep_or_event(SYSTEM_CLOCK, 1.0, stop):
            try:
                snapshot = json.loads(await fetch_status(listen))
            except StatusEndpointError as exc:
                title = f"luxxon-agent [red]unreachable[/] ({escape(str(exc))}); retrying"
                live.update(render_dashboard(snapshot, title=title))
            else:
                live.update(render_dashboard(snapshot))


def render_dashboard(snapshot: dict[str, Any], title: str | None = None) -> RenderableType:
    """One table row per operator, from a status snapshot."""
    from rich.markup import escape
    from rich.table import Table

    api = "[green]up[/]" if snapshot.get("api_ok") else "[red]down[/]"
    if not snapshot.get("api_ok") and snapshot.get("api_last_error"):
        api += f" ({escape(snapshot['api_last_error'])})"
    table = Table(
        title=title
        or f"luxxon-agent {snapshot.get('state', '?')} · API {api} · "
        f"{snapshot.get('api_base_url', '')}",
        title_justify="left",
        expand=False,
    )
    for column in ("operator", "state", "session", "video", "GPS", "telemetry", "earned"):
        table.add_column(column)
    for op in snapshot.get("operators", []):
        state = op["availability"]
        if op.get("session_state"):
            state = f"[bold green]{op['session_state']}[/]"
        elif op.get("reason"):
            state = f"[red]OFFLINE[/]\n{escape(op['reason'])}"
        video, gps, tele = op["video"], op["gps"], op["telemetry"]
        live = op.get("live_seconds", 0)
        limit = op.get("max_duration_seconds")
        session = "-"
        if op.get("session_id"):
            session = f"{op['session_id']}\n{live} s of {limit} s" if limit else op["session_id"]
        if not gps["fix"]:
            gps_text = "[red]no fix[/]"
        elif gps["accuracy_m"] is not None:
            gps_text = f"fix ±{gps['accuracy_m']:.1f} m"
        else:
            gps_text = "fix"
        table.add_row(
            op["label"],
            state,
            session,
            _video_cell(video),
            gps_text,
            f"{tele['spooled']} taken\n{tele['delivered']} sent {tele['pending']} pending",
            f"{op.get('earned_micro_usdc', 0) / 1e6:.4f} USDC",
        )
    return table


def _video_cell(video: dict[str, Any]) -> str:
    """State, rate, reconnects; with adaptive video the estimate and target, and the mode."""
    from rich.markup import escape

    lines = [
        f"{video['state']}",
        f"{video['bitrate_kbps']:.0f} kbps {video['fps']:.0f} fps ↻{video['reconnects']}",
    ]
    estimate, target = video.get("estimate_kbps"), video.get("target_kbps")
    if estimate is not None or target is not None:
        shown = [f"{name} {value:.0f}" for name, value in (("est", estimate), ("tgt", target))
                 if value is not None]  # fmt: skip
        lines.append(" ".join(shown) + f" sent {video.get('sent_kbps', 0):.0f} kbps")
    if video.get("loss") or video.get("rtt_ms") is not None:
        rtt = video.get("rtt_ms")
        lines.append(f"loss {video.get('loss', 0):.1%}" + (f" rtt {rtt:.0f} ms" if rtt else ""))
    mode = " ".join(escape(str(v)) for v in (video.get("mode"), video.get("rung")) if v)
    if mode:
        lines.append(mode)
    return "\n".join(lines)


# ---- doctor ---------------------------------------------------------------------------------


@handle_errors
def doctor(
    config: ConfigOption = None,
    as_json: bool = typer.Option(False, "--json", help="Checks as JSON."),
    seconds: float = typer.Option(5.0, help="How long to wait for a GPS fix per operator."),
) -> None:
    """Check camera, GPS, clock, credentials, API, WHIP and disk; a fix for each failure."""
    from luxxon_agent.agent.doctor import run_doctor

    agent_config = _load(config)
    checks = run_async(run_doctor(agent_config, dict(os.environ), gps_seconds=seconds))
    failed = [c for c in checks if not c.ok]
    if as_json:
        print_json([c.to_dict() for c in checks])
    else:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table(title="luxxon-agent doctor", title_justify="left")
        for column in ("check", "result", "detail", "fix"):
            table.add_column(column)
        for check in checks:
            if not check.ok:
                mark = "[red]FAIL[/]"
            else:
                mark = "[yellow]warn[/]" if check.warning else "[green]ok[/]"
            table.add_row(escape(check.name), mark, escape(check.detail), escape(check.fix or ""))
        Console().print(table)
    raise typer.Exit(EXIT_FAILURE if failed else EXIT_OK)


# ---- install-service ------------------------------------------------------------------------


@handle_errors
def install_service(
    path: Annotated[Path, typer.Option(help="Where to write the unit.")] = DEFAULT_UNIT_PATH,
    executable: str | None = typer.Option(
        None, "--exec", help="luxxon-agent executable for ExecStart (default: this one)."
    ),
    config: Annotated[
        Path, typer.Option("--config", help="Config the service runs with.")
    ] = DEFAULT_SERVICE_CONFIG,
    force: bool = typer.Option(False, "--force", help="Overwrite an existing unit."),
) -> None:
    """Write the systemd unit (Type=notify, watchdog, credentials, hardening)."""
    from luxxon_agent.agent.service import install_unit

    exe = executable or _this_executable()
    written = install_unit(path, executable=exe, config=config, force=force)
    typer.echo(f"wrote {written}")
    typer.echo("next: sudo systemctl daemon-reload && sudo systemctl enable --now luxxon-agent")


def _this_executable() -> str:
    argv0 = Path(sys.argv[0])
    if argv0.name == "luxxon-agent" and argv0.exists():
        return str(argv0.resolve())
    return "/usr/local/bin/luxxon-agent"


# ---- demo -----------------------------------------------------------------------------------


@handle_errors
def demo(
    seconds: int = typer.Option(20, min=3, max=600, help="How long the session is LIVE."),
    meter: str | None = typer.Option(
        None,
        help="The stub's meter: wallclock or telemetry (default: wallclock; with --operators,"
        " telemetry, so each session is paid on its own device key's samples).",
    ),
    operators: int | None = typer.Option(
        None,
        "--operators",
        min=1,
        max=16,
        help="A fleet: N operators of one workspace under one API key, N sessions at once.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print final session, meter and settlement as one JSON object."
    ),
    frame: Annotated[
        Path | None,
        typer.Option(
            help="Where to save the last received frame (default: ./luxxon-demo-frame.jpg)."
        ),
    ] = None,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the agent's log."),
) -> None:
    """The whole product on loopback: stub, operator, consumer, a LIVE session, earnings."""
    if meter not in (None, "wallclock", "telemetry"):
        raise typer.BadParameter("--meter must be wallclock or telemetry", param_hint="--meter")
    if operators is not None:
        _fleet_demo(operators, seconds, meter or "telemetry", as_json, verbose)
        return
    meter = meter or "wallclock"
    from luxxon_agent.agent.demo import DemoOptions, run_demo

    options = DemoOptions(
        seconds=seconds,
        meter=meter,
        frame_path=(frame or Path("luxxon-demo-frame.jpg")).resolve(),
    )
    if as_json:
        configure_logging(verbose, json_lines=True)
        if not verbose:
            import logging

            logging.getLogger().setLevel(logging.ERROR)
        result = run_async(run_demo(options))
        print_json(result.to_json())
        return
    _demo_live(options, verbose)


def _fleet_demo(operators: int, seconds: int, meter: str, as_json: bool, verbose: bool) -> None:
    """`demo --operators N`: N sessions at once, one per operator, each paid on its own key."""
    import logging

    from luxxon_agent.agent.fleet_demo import FleetOptions, run_fleet_demo
    from luxxon_agent.cli._render import message, table

    options = FleetOptions(operators=operators, seconds=seconds, meter=meter)
    configure_logging(verbose, json_lines=as_json)
    if not verbose:
        logging.getLogger().setLevel(logging.ERROR)
    results = run_async(run_fleet_demo(options, on_step=None if as_json else message))
    rows = [result.to_json() for result in results]
    if as_json:
        print_json({"operators": operators, "meter": meter, "sessions": rows})
        return
    columns = ("sessionId", "operatorId", "state", "cleanSeconds", "failedSeconds")
    table(rows, (*columns, "operatorEarnedMicroUsdc"), as_json=False, empty="no sessions")


def _demo_live(options: Any, verbose: bool) -> None:
    import logging

    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

    from luxxon_agent.agent.demo import run_demo

    console = Console()
    configure_logging(verbose)
    if not verbose:
        logging.getLogger().setLevel(logging.ERROR)
    steps: list[str] = []
    state: dict[str, Any] = {"snapshot": None}

    def view() -> Any:
        parts: list[Any] = [Text(s) for s in steps[-8:]]
        if state["snapshot"] is not None:
            parts.append(render_dashboard(state["snapshot"], title="agent"))
        return Group(*parts)

    with Live(view(), console=console, refresh_per_second=4, transient=False) as live:

        def on_step(text: str) -> None:
            steps.append(f"• {text}")
            live.update(view())

        def on_snapshot(snapshot: dict[str, Any]) -> None:
            state["snapshot"] = snapshot
            live.update(view())

        result = run_async(run_demo(options, on_step=on_step, on_snapshot=on_snapshot))
    console.print()
    _print_result(console, result)


def _print_result(console: Any, result: Any) -> None:
    from rich.table import Table

    data = result.to_json()
    session, settlement, meter = data["session"], data["settlement"], data["meter"]
    table = Table(title="session ended", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    rows = [
        ("session", session["id"]),
        ("state", session["state"]),
        ("meter", meter["mode"]),
        ("live seconds", str(meter["liveSeconds"])),
        ("clean seconds", str(session.get("cleanSeconds"))),
        ("failed seconds", str(session.get("failedSeconds"))),
        ("rate", f"{int(session['ratePerSecondMicroUsdc'])} µUSDC/s"),
        ("charged", f"{int(session.get('chargedMicroUsdc') or 0)} µUSDC"),
        ("platform fee", f"{int(settlement.get('feeMicroUsdc') or 0)} µUSDC"),
        (
            "operator earned",
            f"[bold green]{int(settlement.get('operatorEarnedMicroUsdc') or 0)} µUSDC[/]",
        ),
        ("settlement", f"{settlement['state']} {settlement.get('txHash') or ''}"),
        ("telemetry", f"{meter['samplesDelivered']} samples delivered"),
        ("video", f"{meter['framesSent']} frames sent, {meter['videoReconnects']} reconnects"),
        ("last frame", data.get("framePath") or "(none received)"),
    ]
    for what, value in rows:
        table.add_row(what, value)
    console.print(table)
