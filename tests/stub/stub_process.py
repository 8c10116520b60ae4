"""`luxxon-agent stub` as a subprocess on a free loopback port, for tests that need the
real command (its logging set-up, its uvicorn server)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.conftest import free_port

START_SECONDS = 30


@contextlib.contextmanager
def stub_process(root: Path, *options: str) -> Iterator[str]:
    """Run the stub with `options` (its database and log in `root`); yields its origin.

    It is stopped with SIGTERM (SIGKILL after 15 s); its log is `root / "stub.log"`."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    log_path = root / "stub.log"
    env = {**os.environ, "COLUMNS": "400", "HOME": str(root)}
    command = "from luxxon_agent.cli.agent import main; main()"
    with log_path.open("w") as log:
        stub = subprocess.Popen(
            [sys.executable, "-c", command, "stub", *options, "--port", str(port),
             "--db", str(root / "stub.db")],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            assert stub.poll() is None, log_path.read_text()[-2000:]
            try:
                if httpx.get(f"{origin}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the stub did not start"
            time.sleep(0.1)
        yield origin
    finally:
        stub.send_signal(signal.SIGTERM)
        try:
            stub.wait(timeout=15)
        except subprocess.TimeoutExpired:
            stub.kill()
            stub.wait(timeout=5)
