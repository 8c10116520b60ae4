"""LuxxonClient: the blocking face of AsyncLuxxonClient, for scripts and REPLs.

    with LuxxonClient(base_url, api_key=Secret(key)) as client:
        sessions = client.list_sessions()

Not a twin: every public coroutine method and property of AsyncLuxxonClient is
forwarded when this module is imported, with the same name, signature and
docstring, and runs to completion on one private event loop (asyncio.Runner).
One loop for the client's whole life matters: httpx's connection pool belongs
to the loop it was opened on, so `asyncio.run` per call would not do.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

from luxxon_agent.api._client import AsyncLuxxonClient

_LIFECYCLE = frozenset({"aclose"})


class LuxxonClient:
    """Blocking client; takes exactly the arguments of `AsyncLuxxonClient`.

    Use it as a context manager (or call `close()`): that closes the HTTP
    client and then the event loop. Not for code already inside an event loop:
    there, use AsyncLuxxonClient.
    """

    def __init__(self, base_url: str, **options: Any) -> None:
        self._client = AsyncLuxxonClient(base_url, **options)
        self._runner = asyncio.Runner()
        self._closed = False

    def _run(self, factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        if self._closed:
            raise RuntimeError("this LuxxonClient is closed")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # no loop running: the one case a blocking call is allowed
        else:
            # checked before the coroutine exists, so none is left never awaited
            raise RuntimeError("LuxxonClient blocks; inside an event loop use AsyncLuxxonClient")
        return self._runner.run(factory())

    def __enter__(self) -> LuxxonClient:
        self._run(self._client.__aenter__)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client, then the event loop; a second call does nothing."""
        if self._closed:
            return
        try:
            self._run(self._client.aclose)
        finally:
            self._closed = True
            self._runner.close()

    def __repr__(self) -> str:
        return repr(self._client).replace("AsyncLuxxonClient", "LuxxonClient", 1)


def _blocking(name: str, method: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: LuxxonClient, *args: Any, **kwargs: Any) -> Any:
        bound = getattr(self._client, name)
        return self._run(lambda: bound(*args, **kwargs))

    return call


def _forwarded(name: str, prop: property) -> property:
    return property(lambda self: getattr(self._client, name), doc=prop.__doc__)


def _forward_public_api() -> None:
    for name, member in vars(AsyncLuxxonClient).items():
        if name.startswith("_") or name in _LIFECYCLE:
            continue
        if inspect.iscoroutinefunction(member):
            setattr(LuxxonClient, name, _blocking(name, member))
        elif isinstance(member, property):
            setattr(LuxxonClient, name, _forwarded(name, member))


_forward_public_api()
