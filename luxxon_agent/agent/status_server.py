"""The status endpoint: a Starlette app served by uvicorn inside the agent's event loop.

    GET /status    the `AgentStatus` as JSON (redacted: the endpoint has no auth)
    GET /metrics   Prometheus text (luxxon_agent.agent.metrics), when enabled

It listens on `HOST:PORT` (loopback only, checked by the config) or
`unix:/path`. The socket is bound here, before uvicorn starts, so a busy
port is one clear `StatusEndpointError` and port 0 reports the port it got.
uvicorn's own signal handling is left out: the supervisor owns SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Callable, Iterator

import uvicorn
from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from luxxon_agent.agent.metrics import CONTENT_TYPE, metrics_registry
from luxxon_agent.agent.status import (
    METRICS_PATH,
    STATUS_PATH,
    UNIX_PREFIX,
    AgentStatus,
    StatusEndpointError,
)

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 2.0
"""How long a request in flight may take once the agent stops."""


def status_app(status: Callable[[], AgentStatus], *, metrics: bool) -> Starlette:
    """The endpoint's routes; anything else is 404, anything but GET/HEAD 405."""

    async def get_status(_request: Request) -> Response:
        return JSONResponse(status().to_dict())

    routes = [Route(STATUS_PATH, get_status, methods=["GET"])]
    if metrics:
        registry = metrics_registry(status)

        async def get_metrics(_request: Request) -> Response:
            return Response(generate_latest(registry), media_type=CONTENT_TYPE)

        routes.append(Route(METRICS_PATH, get_metrics, methods=["GET"]))
    return Starlette(routes=routes)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the supervisor owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class StatusServer:
    """Serves `status()` on `listen` (`HOST:PORT` or `unix:/path`) until `stop()`."""

    def __init__(self, listen: str, status: Callable[[], AgentStatus], metrics: bool) -> None:
        self.listen = listen
        self._app = status_app(status, metrics=metrics)
        self._socket: socket.socket | None = None
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._socket = _bind(self.listen)
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            log_config=None,  # the agent's logging stays as configured
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
        )
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._socket]), name="status endpoint"
        )
        logger.info("status endpoint on %s", self.address)

    @property
    def address(self) -> str:
        if self._socket is None or self.listen.startswith(UNIX_PREFIX):
            return self.listen
        host, port = self._socket.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        self._server = self._task = None
        if self._socket is not None:
            self._socket.close()
            if self.listen.startswith(UNIX_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.listen.removeprefix(UNIX_PREFIX))
            self._socket = None


def _bind(listen: str) -> socket.socket:
    """A listening socket for `listen`; `StatusEndpointError` naming it when that fails."""
    try:
        if listen.startswith(UNIX_PREFIX):
            path = listen.removeprefix(UNIX_PREFIX)
            _remove_stale_socket(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: str | tuple[str, int] = path
        else:
            host, _, port = listen.rpartition(":")
            host = host.strip("[]")
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            target = (host, int(port))
        try:
            sock.bind(target)
            sock.listen(64)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        raise StatusEndpointError(f"status endpoint {listen}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def _remove_stale_socket(path: str) -> None:
    """A socket file left by an agent that died; anything else there is left alone."""
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
