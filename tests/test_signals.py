"""stop_on_signals: real signals to this process set the Event; a second SIGINT forces."""

from __future__ import annotations

import asyncio
import os
import signal

from luxxon_agent.signals import stop_on_signals


async def _deliver(sig: signal.Signals) -> None:
    os.kill(os.getpid(), sig)
    for _ in range(50):  # the loop runs the handler on its next iteration
        await asyncio.sleep(0.01)


def test_first_signal_stops_second_sigint_forces() -> None:
    seen: list[str] = []

    async def main() -> None:
        stop = asyncio.Event()
        with stop_on_signals(
            stop, on_stop=lambda sig: seen.append(sig.name), on_force=lambda: seen.append("force")
        ):
            await _deliver(signal.SIGTERM)
            assert stop.is_set()
            await _deliver(signal.SIGTERM)
            await _deliver(signal.SIGINT)

    asyncio.run(main())
    assert seen == ["SIGTERM", "SIGTERM", "force"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_on_force_a_second_sigint_only_stops() -> None:
    async def main() -> bool:
        stop = asyncio.Event()
        with stop_on_signals(stop):
            await _deliver(signal.SIGINT)
            await _deliver(signal.SIGINT)
            return stop.is_set()

    assert asyncio.run(main())
