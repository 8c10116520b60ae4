"""`luxxon` and `luxxon-agent` render help in one style, on every group and command."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from luxxon_agent.cli import agent, luxxon


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    # typer's click Group (typer vendors click): a group has subcommands, a command none
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, (*path, name))


APPS = {"luxxon": luxxon.app, "luxxon-agent": agent.app}
PATHS = [
    (name, path)
    for name, app in APPS.items()
    for path in _command_paths(typer.main.get_command(app))
]


def test_both_apps_have_their_groups_and_commands() -> None:
    paths = {(name, " ".join(path)) for name, path in PATHS}
    expected = {
        ("luxxon", "workspaces list"),
        ("luxxon", "workspaces select"),
        ("luxxon", "operators register"),
        ("luxxon", "sessions earnings"),
        ("luxxon-agent", "config check"),
        ("luxxon-agent", "stub"),
        ("luxxon-agent", "gps check"),
    }
    assert expected <= paths


@pytest.mark.parametrize(("name", "path"), PATHS, ids=[f"{n} {' '.join(p)}" for n, p in PATHS])
def test_help_is_plain_click_style(name: str, path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(APPS[name], [*path, "-h"], prog_name=name)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith(f"Usage: {' '.join((name, *path))} "), text
    assert "  -h, --help  " in text or "  -h, --help " in text
    # one renderer: no rich panels, no markup left for the reader to decode
    assert not any(char in text for char in "╭╮╰╯│─"), text
    assert "[/" not in text and "[bold" not in text
