"""RetryPolicy: which failures are retried, how often, and how long to wait."""

from __future__ import annotations

from dataclasses import dataclass, field

from luxxon_agent.backoff import Backoff

RETRY_STATUSES: frozenset[int] = frozenset({429, 502, 503, 504})
"""Statuses that mean "try again later" rather than "your request is wrong"."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retries for idempotent calls on connection errors and `statuses`.

    `attempts` counts every try, the first included (1 = never retry).
    A server's Retry-After replaces the backoff delay when it is longer;
    one longer than `max_retry_after` is not waited for: the error surfaces.
    """

    attempts: int = 4
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.25, maximum=8.0))
    statuses: frozenset[int] = RETRY_STATUSES
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")


DEFAULT_RETRY = RetryPolicy()
