"""Rendering for `luxxon`: rich for people, JSON for programs; whipUrls redacted by default.

Functions take plain JSON-ready dicts (wire form, camelCase) so that the human
and the `--json` output show the same fields.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from luxxon_agent.cli._common import print_json
from luxxon_agent.secret import redact_url

if TYPE_CHECKING:
    from rich.console import Console

    from luxxon_agent.models import SessionVideo

SECRET_URL_FIELDS = ("whipUrl",)

SESSION_COLUMNS = (
    "id",
    "state",
    "createdAt",
    "operatorWorkspaceId",
    "maxDurationSeconds",
    "ratePerSecondMicroUsdc",
)


def redact(payload: Any, show_urls: bool) -> Any:
    """A copy of `payload` with every whipUrl cut to scheme://host/*** unless `show_urls`."""
    if show_urls:
        return payload
    if isinstance(payload, Mapping):
        return {
            key: redact_url(value)
            if key in SECRET_URL_FIELDS and isinstance(value, str)
            else redact(value, show_urls)
            for key, value in payload.items()
        }
    if isinstance(payload, list):
        return [redact(item, show_urls) for item in payload]
    return payload


def describe_video(video: SessionVideo, *, now: datetime) -> str:
    """The stub's media liveness in words: is a publisher there, and is the picture moving?"""
    from luxxon_agent.models import format_timestamp

    link = "publisher connected" if video.connected else "no publisher connected"
    noun = "frame" if video.frames_received == 1 else "frames"
    if video.last_frame_at is None:
        return f"{link}, no frame received yet"
    age = max(0.0, (now - video.last_frame_at).total_seconds())
    return (
        f"{link}, {video.frames_received} {noun} received, last {age:.1f} s ago "
        f"({format_timestamp(video.last_frame_at)})"
    )


def _console() -> Console:
    from rich.console import Console

    # piped output is read by scripts and tests: never truncate ids to fit 80 columns
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Mapping):
        return " ".join(f"{key}={_text(item)}" for key, item in value.items())
    if isinstance(value, list):
        return "; ".join(_text(item) for item in value) if value else "-"
    return str(value)


def emit(payload: Any, *, as_json: bool, title: str | None = None) -> None:
    """One object: JSON, or aligned `key: value` lines under an optional title."""
    if as_json:
        print_json(payload)
        return
    console = _console()
    if title:
        console.print(f"[bold]{title}[/bold]")
    if isinstance(payload, Mapping):
        width = max((len(key) for key in payload), default=0)
        for key, value in payload.items():
            console.print(f"  {key.ljust(width)}  {_text(value)}", markup=False)
    else:
        console.print(_text(payload), markup=False)


def table(
    rows: Sequence[Mapping[str, Any]],
    columns: Iterable[str],
    *,
    as_json: bool,
    empty: str,
) -> None:
    """Many objects: a rich table (or JSON list); `empty` when there are none."""
    if as_json:
        print_json(list(rows))
        return
    if not rows:
        sys.stdout.write(empty + "\n")
        return
    from rich.table import Table

    columns = list(columns)
    grid = Table(show_edge=False, header_style="bold")
    for column in columns:
        grid.add_column(column, no_wrap=True)
    for row in rows:
        grid.add_row(*(_text(row.get(column)) for column in columns))
    _console().print(grid)


def message(text: str) -> None:
    """A plain line for people (never used with --json)."""
    sys.stdout.write(text + "\n")
