"""`luxxon`: the operator's terminal tool (being built)."""

from __future__ import annotations

import typer

app = typer.Typer(name="luxxon", no_args_is_help=True, add_completion=False)


@app.callback()
def _root() -> None:
    """Luxxon operator tool: wallet, workspaces, API keys, sessions, earnings."""


def main() -> None:
    app()
