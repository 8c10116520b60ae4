"""create_app(StubConfig) -> FastAPI: the local Luxxon API server.

Route modules are listed in ROUTE_MODULES by import path. Each exposes `router`
(paths relative to /api/v1), may expose `root_router` (mounted at the app root,
for pages) and may declare `SCHEMA` (SQL run once at start) and `ADDED_COLUMNS` (table → column →
declaration, added to an older database);
handlers reach the store, config and video backend through
`luxxon_agent.stub.runtime.runtime(request)` and authenticate with the
dependencies of `luxxon_agent.stub.auth`.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import ModuleType

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from luxxon_agent.errors import ConfigError
from luxxon_agent.stub import metering, wallet_auth
from luxxon_agent.stub.auth import touch_after_success
from luxxon_agent.stub.config import StubConfig
from luxxon_agent.stub.http_error import install_error_handlers
from luxxon_agent.stub.limits import RequestGuard
from luxxon_agent.stub.openapi import install_openapi
from luxxon_agent.stub.runtime import StubRuntime
from luxxon_agent.stub.store import Store
from luxxon_agent.stub.video import MintOnlyVideoBackend, VideoBackend
from luxxon_agent.wire import API_PREFIX, CONSISTENCY_HEADER

ROUTE_MODULES: list[str] = [
    # first: the hot path (a telemetry backlog is thousands of requests), and routing
    # tries the modules in order; no other path overlaps its POST
    "luxxon_agent.stub.routes.telemetry",
    "luxxon_agent.stub.routes.system",
    "luxxon_agent.stub.routes.auth",
    "luxxon_agent.stub.routes.workspaces",
    "luxxon_agent.stub.routes.sessions",
    "luxxon_agent.stub.routes.wallet",
    "luxxon_agent.stub.routes.operators",
    "luxxon_agent.stub.pages",
]
"""Import paths of the route modules, mounted in this order under /api/v1."""

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _video_backend(config: StubConfig) -> VideoBackend:
    if not config.with_video:
        return MintOnlyVideoBackend(config.public_base_url)
    from luxxon_agent.stub.ingest import create_video_backend

    return create_video_backend(
        config.public_base_url, config.clock, transport_cc=config.transport_cc
    )


def create_app(config: StubConfig, *, video: VideoBackend | None = None) -> FastAPI:
    """A FastAPI app speaking the Luxxon API under /api/v1.

    `video` replaces the backend `config.with_video` would choose (tests inject one).
    The database is opened here, so the app also works without its lifespan
    (httpx.ASGITransport); the lifespan adds the expiry sweeper and closes the store.
    """
    if config.meter not in metering.supported_modes():
        raise ConfigError(f"meter {config.meter.value!r} is not available in this build")
    modules: list[ModuleType] = [importlib.import_module(name) for name in ROUTE_MODULES]
    schemas = [module.SCHEMA for module in modules if hasattr(module, "SCHEMA")]
    columns = {
        table: added
        for module in modules
        for table, added in getattr(module, "ADDED_COLUMNS", {}).items()
    }
    store = Store.open(config.db_path, schemas, columns)
    stub = StubRuntime(config, store, video or _video_backend(config))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        wallet_auth.preload()
        stub.start()
        try:
            yield
        finally:
            await stub.stop()
            store.close()

    app = FastAPI(
        title="Luxxon API (local stub)",
        version="1",
        openapi_url=f"{API_PREFIX}/docs-json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.stub = stub
    install_error_handlers(app)
    install_openapi(app, [(API_PREFIX, module.router) for module in modules])
    for module in modules:
        app.include_router(module.router, prefix=API_PREFIX)
        if hasattr(module, "root_router"):
            # pages and other non-API paths (optional `root_router`) sit at the app root
            app.include_router(module.root_router)
    if stub.video.router is not None:
        app.include_router(stub.video.router)

    app.add_middleware(_AfterSuccessMiddleware, stub=stub)
    # outermost: no route sees a body over the limit or a non-finite JSON number
    app.add_middleware(RequestGuard)
    return app


class _AfterSuccessMiddleware:
    """On a successful API response: the caller's key's lastUsedAt (auth.touch_after_success)
    and, for a write, X-Lx-Consistency-Token.

    Plain ASGI rather than `@app.middleware("http")`: Starlette's
    BaseHTTPMiddleware costs a task and a memory stream per request, which
    showed up as a large share of the telemetry drain's CPU.
    """

    def __init__(self, app: ASGIApp, stub: StubRuntime) -> None:
        self.app = app
        self.stub = stub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        write = scope["method"] in _WRITE_METHODS and scope["path"].startswith(API_PREFIX)

        async def send_with_token(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                touch_after_success(scope)
                if write:
                    headers = MutableHeaders(scope=message)
                    headers[CONSISTENCY_HEADER] = self.stub.consistency_token()
            await send(message)

        await self.app(scope, receive, send_with_token)
