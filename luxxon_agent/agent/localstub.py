"""LocalStub: `luxxon-agent stub` as a child process on a free loopback port.

Used by `luxxon-agent demo` and the agent's tests. The child runs in its own
session (a terminal's Ctrl-C reaches only us, so the agent can still end the
session against a live stub) and gets SIGTERM if we die (PR_SET_PDEATHSIG),
so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

from luxxon_agent.errors import EXIT_STARTUP_FAILURE, LuxxonError

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
AGENT_MODULE = "luxxon_agent.cli.agent"
"""`python -m luxxon_agent.cli.agent` is `luxxon-agent` (the console script's own entry point),
run with this interpreter whether or not the script is on PATH."""


class StubStartError(LuxxonError):
    exit_code = EXIT_STARTUP_FAILURE


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the kernel picks it; the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalStub:
    def __init__(
        self,
        *,
        db: Path,
        data_dir: Path,
        meter: str = "wallclock",
        port: int | None = None,
        with_video: bool = True,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        operator_dispatch: bool = True,
    ) -> None:
        self.db = db
        self.data_dir = data_dir
        self.meter = meter
        self.port = port or free_port()
        self.with_video = with_video
        self.operator_dispatch = operator_dispatch
        self.log_path = log_path or data_dir / "stub.log"
        self._env = dict(env or {})
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self, timeout: float = 45.0) -> None:
        args = [
            sys.executable, "-m", AGENT_MODULE, "stub",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--db", str(self.db), "--meter", self.meter,
        ]  # fmt: skip
        if not self.with_video:
            args.append("--no-video")
        if not self.operator_dispatch:
            args.append("--no-operator-dispatch")
        env = {**self._env, "XDG_DATA_HOME": str(self.data_dir), "LUXXON_ICE_LOOPBACK": "1"}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        await self._wait_healthy(timeout)

    async def _wait_healthy(self, timeout: float) -> None:
        assert self._proc is not None
        async with httpx.AsyncClient(timeout=2.0) as http:
            try:
                async with asyncio.timeout(timeout):
                    while True:
                        if self._proc.returncode is not None:
                            raise StubStartError(
                                f"the stub exited with {self._proc.returncode}: {self._last_line()}"
                            )
                        try:
                            response = await http.get(f"{self.base_url}/health")
                            if response.status_code == 200:
                                return
                        except httpx.TransportError:
                            pass  # not listening yet
                        await asyncio.sleep(0.1)
            except TimeoutError:
                await self.stop()
                raise StubStartError(
                    f"the stub did not answer within {timeout:.0f} s; see {self.log_path}"
                ) from None

    def _last_line(self) -> str:
        """The stub's last words (its log may live in a temp dir that is about to go)."""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return f"see {self.log_path}"
        return lines[-1][:300] if lines else f"see {self.log_path}"

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                await proc.wait()
        except TimeoutError:
            logger.warning("stub did not stop on SIGTERM; killing it")
            proc.kill()
            await proc.wait()

    async def kill(self) -> None:
        """SIGKILL (a crash), for tests."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
