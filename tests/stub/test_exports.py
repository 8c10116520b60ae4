"""The stub's CLI stays light (its __all__ is checked in tests/test_exported_members.py)."""

from __future__ import annotations

import subprocess
import sys


def test_cli_help_does_not_import_the_server() -> None:
    code = (
        "import sys; from luxxon_agent.cli import stub; "
        "heavy = ('fastapi', 'siwe', 'web3', 'aiortc', 'uvicorn'); "
        "heavy = [m for m in heavy if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
