"""SIGINT/SIGTERM for long-running commands: ask for a clean stop, a second Ctrl-C forces.

    stop = asyncio.Event()
    with stop_on_signals(stop):
        await work(stop)              # returns once `stop` is set

Handlers go on the running event loop, so they only set an Event or call a
callback between two steps of the loop, never in the middle of one.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals(
    stop: asyncio.Event,
    *,
    on_stop: Callable[[signal.Signals], None] | None = None,
    on_force: Callable[[], None] | None = None,
) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM call `on_stop(signal)` and then set `stop`.

    A SIGINT that arrives once `stop` is set calls `on_force` instead (when
    given): the second Ctrl-C of an impatient user. Outside the main thread
    the loop cannot take signal handlers; then none are installed and the
    caller stops the work by setting `stop` itself. Handlers are removed on exit.
    """

    def handle(sig: signal.Signals) -> None:
        if sig is signal.SIGINT and stop.is_set() and on_force is not None:
            on_force()
            return
        if on_stop is not None:
            on_stop(sig)
        stop.set()

    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, handle, sig)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread (tests in a thread): the caller stops us
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
