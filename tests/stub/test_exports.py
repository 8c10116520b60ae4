"""The stub package's public face matches its __all__, and the CLI stays light."""

from __future__ import annotations

import subprocess
import sys

import luxxon_agent.stub as stub


def test_all_is_sorted_and_exported() -> None:
    assert stub.__all__ == sorted(stub.__all__)
    for name in stub.__all__:
        assert hasattr(stub, name), name


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
