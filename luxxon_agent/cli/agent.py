"""`luxxon-agent`: the fleet agent and its tools.

Each command group is a module with `register(app)`; add a new one to
`_COMMAND_MODULES`. Modules import only typer/rich at import time.
"""

from __future__ import annotations

import typer

from luxxon_agent.cli import device, gps, run, stub, video
from luxxon_agent.cli._common import command_group, skip_httpx_command_line

app = command_group(
    "Luxxon fleet agent: publish video and signed position for paid sessions.",
    name="luxxon-agent",
)

_COMMAND_MODULES = (stub, gps, video, device, run)

for _module in _COMMAND_MODULES:
    _module.register(app)


@app.command()
def version() -> None:
    """Print the version."""
    from luxxon_agent import __version__

    typer.echo(__version__)


def main() -> None:
    skip_httpx_command_line()
    app()


if __name__ == "__main__":  # `python -m luxxon_agent.cli.agent`, as agent/localstub.py runs it
    main()
