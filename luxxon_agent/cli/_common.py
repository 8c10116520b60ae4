"""What every command shares: the app settings, error handling, exit codes, running async code."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import typer

from luxxon_agent.errors import EXIT_FAILURE, EXIT_INTERRUPTED, LuxxonError
from luxxon_agent.secret import install_redaction

P = ParamSpec("P")
T = TypeVar("T")

COMMAND_GROUP_SETTINGS: dict[str, Any] = {
    "no_args_is_help": True,
    "add_completion": False,
    # our errors are one line (handle_errors); a bug's traceback stays plain, not a rich dump
    "pretty_exceptions_enable": False,
    # plain click help: literal text (brackets in option help are not eaten as markup), no box
    # drawing on serial consoles or in journald, and rich's help renderer is not imported
    "rich_markup_mode": None,
    "context_settings": {"help_option_names": ["-h", "--help"], "max_content_width": 120},
}
"""The one set of typer settings of `luxxon`, `luxxon-agent` and every group under them."""


def command_group(help: str | None = None, **overrides: Any) -> typer.Typer:
    """A typer app or sub-group in the house style (`COMMAND_GROUP_SETTINGS`)."""
    return typer.Typer(help=help, **{**COMMAND_GROUP_SETTINGS, **overrides})


def skip_httpx_command_line() -> None:
    """Keep `import httpx` from loading httpx's own command-line tool; entry points call this.

    httpx imports its CLI (click, rich.progress, pygments: about 60 ms of a cold
    `luxxon` command) whenever those are installed, and typer brings them. We
    never run it: a None entry in sys.modules makes httpx's guarded import fail,
    exactly as when `httpx[cli]` is not installed.
    """
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def fail(message: str, exit_code: int = EXIT_FAILURE) -> typer.Exit:
    """Print one line to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(exit_code)


def handle_errors(func: Callable[P, T]) -> Callable[P, T]:
    """Turn any LuxxonError into one line on stderr and its exit code; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except LuxxonError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", EXIT_INTERRUPTED) from None

    return wrapper


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """The one bridge from a typer command to the async implementation."""
    import asyncio  # here, not at the top: `--help` never needs an event loop

    return asyncio.run(coro)


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def configure_logging(verbose: bool = False, json_lines: bool = False) -> None:
    """One logging set-up, installed by the entry point only (library code never does)."""
    level = logging.DEBUG if verbose else logging.INFO
    handler: logging.Handler
    if json_lines:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_JsonFormatter())
    else:
        from rich.console import Console
        from rich.logging import RichHandler

        # logs go to stderr: stdout is for results (ids, JSON) that scripts read
        handler = RichHandler(console=Console(stderr=True), show_path=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    # every record passes the handler: the one place secrets are scrubbed from all loggers
    install_redaction(handler)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # third-party chatter stays at WARNING unless asked for
    for noisy in ("aioice", "aiortc", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


class _JsonFormatter(logging.Formatter):
    """JSON lines for journald and log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc"] = record.exc_info[0].__name__
        return json.dumps(entry)
