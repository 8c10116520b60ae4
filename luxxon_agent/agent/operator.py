"""OperatorRunner: one physical device (camera + position) of the agent.

It follows its position source into a `LatestFix` and knows whether it can
serve right now (fresh fix, camera present, disk space). The workspace link
decides which session it holds and the supervisor runs that session; the
runner itself holds no session state.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from luxxon_agent.agent.config import AgentConfig, OperatorConfig
from luxxon_agent.agent.status import GpsStatus
from luxxon_agent.backoff import Backoff
from luxxon_agent.clock import Clock
from luxxon_agent.errors import LuxxonError

logger = logging.getLogger(__name__)

POSITION_BACKOFF = Backoff(initial=1.0, maximum=30.0)


class OperatorRunner:
    """Health and position of one operator."""

    def __init__(self, op: OperatorConfig, config: AgentConfig, clock: Clock) -> None:
        from luxxon_agent.position import LatestFix

        self.op = op
        self.config = config
        self.clock = clock
        self.latest = LatestFix(clock=clock)
        self.state_dir = config.agent.state_dir / op.label

    def __repr__(self) -> str:
        return f"OperatorRunner({self.op.label})"

    @property
    def label(self) -> str:
        return self.op.label

    # ---- health ------------------------------------------------------------------

    def unhealthy_reason(self) -> str | None:
        """Why this operator cannot take a session now, or None when it can."""
        if self.latest.current() is None:
            last = self.latest.last
            detail = getattr(last, "reason", None)
            return f"no GPS fix ({detail})" if detail else "no GPS fix"
        camera = camera_problem(self.op.video)
        if camera:
            return camera
        return disk_problem(self.config.agent.state_dir, self.config.agent.min_free_disk_mb)

    def gps(self) -> GpsStatus:
        """A snapshot of the current fix, for the status."""
        fix = self.latest.current()
        if fix is None:
            return GpsStatus()
        return GpsStatus(
            fix=True,
            lat=fix.lat,
            lng=fix.lng,
            accuracy_m=fix.accuracy_m,
            age_s=round((self.clock.now() - fix.time).total_seconds(), 2),
            source=str(fix.source),
        )

    # ---- position ------------------------------------------------------------------

    async def follow_position(self) -> None:
        """Feed `latest` from the position source for ever, reopening it when it fails."""
        from luxxon_agent.position import open_source

        attempt = 0
        while True:
            try:
                # `async with` closes the source on the way out
                async with open_source(self.op.position, clock=self.clock) as source:
                    async for report in source:
                        self.latest.update(report)
                        attempt = 0
                    logger.warning("%s: position source ended; reopening", self.label)
            except LuxxonError as exc:
                logger.warning("%s: position source: %s", self.label, exc)
            delay = POSITION_BACKOFF.delay(attempt)
            attempt += 1
            await self.clock.sleep(delay)


def camera_problem(video_url: str) -> str | None:
    """A cheap presence check of a local camera (device node or file); None when fine.

    A V4L2 device that is unplugged disappears from /dev/v4l/by-id and comes
    back under the same name, so checking the path picks up a replug.
    """
    parts = urlsplit(video_url)
    if parts.scheme in ("v4l2", "file"):
        path = Path(parts.netloc + parts.path) if parts.netloc else Path(parts.path)
        if not path.exists():
            return f"camera down ({path} missing)"
    return None


def free_disk_mb(path: Path) -> tuple[Path, int]:
    """The nearest existing directory at or above `path` (it may not exist yet), MB free there."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe, shutil.disk_usage(probe).free // (1024 * 1024)


def disk_problem(state_dir: Path, min_free_mb: int) -> str | None:
    _, free_mb = free_disk_mb(state_dir)
    if free_mb < min_free_mb:
        return f"disk full ({free_mb} MB free in {state_dir}, need {min_free_mb})"
    return None
