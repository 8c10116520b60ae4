"""A condition that counts only once it has held for a while without a break.

The encoder's reopen rules, the ladder's steps up and the passthrough switch each
act on a condition only after it has lasted, so that one frame or one report does
not flap them.
"""

from __future__ import annotations


class Sustained:
    """Since when a condition has held; forgotten the moment it breaks."""

    def __init__(self) -> None:
        self._since: float | None = None

    def held(self, condition: bool, now: float, hold_s: float) -> bool:
        """Whether `condition` has been true at every call for `hold_s` up to `now`."""
        if not condition:
            self._since = None
            return False
        if self._since is None:
            self._since = now
        return now - self._since >= hold_s

    def reset(self) -> None:
        """Start over: the condition must hold again from the next call."""
        self._since = None
