"""The resolution and frame-rate ladder: which picture fits the bitrate the link allows.

Lowering the bitrate alone keeps 720p30 and makes each frame a smear of
blocks; below some bits per pixel a smaller, or slower, picture looks better
and decodes on time. The rungs (for a 1280x720 30 fps source):

    720p30  from 1.2 Mbit/s      540p30  from 700 kbit/s
    360p30  from 400 kbit/s      360p15  from 250 kbit/s     180p15 below

Floors scale with the source's pixels per second, so a 640x480 camera steps
at proportionally lower rates. Down is immediate (the link is already too
narrow), except while the target is still falling: then it waits until the
target has settled, and takes one step to the rung that fits instead of a
keyframe for each rung on the way down, each into a full queue (a step to
the bottom rung, with nothing below it, does not wait). Up needs the
target to stay `UP_MARGIN` above the higher rung's floor for `UP_HOLD_S`
seconds (`FPS_UP_HOLD_S` for a step in frame rate only), so an estimate wobbling
around a floor does not flap between rungs.
A resolution step reopens the encoder (the receiver needs new parameter sets,
so it costs one keyframe); a frame-rate step does not.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

from luxxon_agent.video.sustained import Sustained

logger = logging.getLogger(__name__)

REFERENCE_PIXELS_PER_S = 1280 * 720 * 30
UP_MARGIN = 1.3
"""Stepping up needs the target this far above the higher rung's floor."""
UP_HOLD_S = 2.0
"""...for this long: two reports, each of which could have backed off. The estimate grows
25-50 % a second once a link opens, and each rung caps the encoder at the next one's
threshold: at 4 s a hold per rung was most of the time to 80 % of a step up (bench_link:
180p15 at a 325 kbit/s ceiling for 4 s while the target was twice that). The step goes as
far as the target of CARRIED_LAG_S ago reaches (at least one rung), not the target of the
moment: one grown past the link in its last second took 360p15 straight to 540p30 at 937
kbit/s on a 1 Mbit/s link, and its keyframe froze the picture 0.9 s (bench_link)."""
CARRIED_SHARE = 0.9
CARRIED_LAG_S = 1.0
"""...and the link to have carried this share of the target of CARRIED_LAG_S ago (what
it passed: what arrived, padding and repairs in it, random loss up to 10 % counted in; a
report measures packets sent up to a second before it, while the target grew 25-50 % a
second): the estimate grows to 1.5 x what arrived, a report ahead of what the link shows,
and a step up reopens the encoder, whose first second runs over its target. On a 1 Mbit/s
link with 5 % loss, a step to 540p30 at a 1.19 Mbit/s target (1.1 a second before) with
927 kbit/s arriving sent 1.5 Mbit/s and froze the picture 2.3 s (bench_link). Counted
without the random loss, the same link's 5 % held 360p15 at its 520 kbit/s ceiling for
2-3.5 s with the estimate past 900 kbit/s: growing 6 %/s or more, what arrived never
reached 0.9 x the target of a second before. Nor can the link show more than the rung's
encoder sends, its ceiling: the bar is the lesser of that target and the ceiling."""
FPS_UP_HOLD_S = 1.0
"""A step up in frame rate only (360p15 -> 360p30) waits this long instead: one report
after the one that crossed the bar, which could have backed off. It opens no new
context and costs no keyframe, so a step taken too soon costs one step back, which is
as free. Measured in bench_link's step up into the drop phase: the 2 s hold at 360p15
was a fifth of the 10 s to 80 % of the link (360p15's encoder sends at most its 520
kbit/s ceiling)."""
PROBE_UP_HOLD_S = 4.0
"""A probe (a step up without the target, below) waits this long first: it is a guess."""
APP_LIMITED_SHARE = 0.5
"""An encoder producing less than this share of its target is app-limited."""
PINNING_SHARE = 0.75
"""An encoder producing less than this share of its target pins the estimate: the
estimator grows to at most 1.5 x what arrived and the encoder gets 0.85 of the
estimate, so below about 0.78 x its target neither can move. A bigger rung is the
only way out: it is tried as for an easy picture."""
QP_HIGH = 35.0
"""Mean H.264 QP above which the picture suffers at this rung (libwebrtc's quality
scaler uses 37 for its high threshold; blocks show from about here at ultrafast)."""
QP_LOW = 27.0
"""Mean QP below which this rung's picture is easy: a bigger one may fit the same bits."""
PROBE_SETTLE_SHARE = 0.9
"""After a probing step up, and until the new rung's encoder reports its output or QP,
only a target under this share of the one the probe was taken at steps down: without
evidence the floors alone would undo the probe at once (two keyframes for nothing)."""
PROBE_FAILED_S = 10.0
"""A step down this soon after a probing step up undoes the probe."""
MAX_PROBE_HOLD_S = 64.0
FALLING_SHARE = 0.97
"""A target under this share of the one before it is falling."""
DOWN_SETTLE_S = 0.4
DOWN_MAX_WAIT_S = 1.0
"""A step down waits until the target has not fallen for DOWN_SETTLE_S, at most
DOWN_MAX_WAIT_S (a step to the bottom rung not at all: measured in bench_link's transcoded
300 kbit/s phase, the wait for REMB cuts of 7 % kept 360p30 at twice the link for 1.1 s
after the estimate had reached it): a step reopens the encoder, and its keyframe, sent
while the link is still narrowing, lands in a full queue. Measured on bench_link's step
from 2 Mbit/s to 1 Mbit/s: REMB cuts every 0.1-0.2 s for a second took the ladder
720p30 -> 540p30, a reopen at 540p for a keyframe, then 360p30, three keyframes of 24, 18
and 13 kB in one second while the link dropped packets; only the last got through whole."""


@dataclass(frozen=True)
class Rung:
    scale: float
    """Share of the source's width and height."""
    fps_share: float
    """Share of the source's frame rate."""
    floor_bps: float
    """Lowest target (for the reference 720p30 source) this rung is used at."""

    def size(self, width: int, height: int) -> tuple[int, int]:
        """This rung's picture size for a source of `width` x `height` (even, >= 16)."""
        return _even(width * self.scale), _even(height * self.scale)

    def label(self, height: int, fps: float) -> str:
        return f"{_even(height * self.scale)}p{round(fps * self.fps_share)}"


RUNGS = (
    Rung(1.0, 1.0, 1_200_000),
    Rung(0.75, 1.0, 700_000),
    Rung(0.5, 1.0, 400_000),
    Rung(0.5, 0.5, 250_000),
    Rung(0.25, 0.5, 0),
)


def _even(value: float) -> int:
    return max(16, int(value) // 2 * 2)


class Ladder:
    """Picks the rung for a target bitrate, with hysteresis; logs each step once.

    The estimate cannot grow far past what is sent (it is capped at 1.5 x what
    arrived, and so is a receiver's REMB), so an encoder that needs less than
    its target (a simple picture) is *app-limited*: its target says nothing
    about the link. Then the ladder neither steps down (the picture fits) nor
    waits for a target that cannot come to step up: after `PROBE_UP_HOLD_S` it tries
    the next rung up, and waits twice as long each time such a try is undone
    within `PROBE_FAILED_S`.
    """

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        rungs: tuple[Rung, ...] = RUNGS,
        *,
        on_step: Callable[[], None] | None = None,
    ):
        self.width, self.height, self.fps = width, height, fps
        self.rungs = rungs
        self.index = 0
        self.steps = 0
        self._on_step = on_step
        """Called at each step: the publisher counts steps across its encoders."""
        self._scale = width * height * fps / REFERENCE_PIXELS_PER_S
        self._up = Sustained()
        self._probe_hold = PROBE_UP_HOLD_S
        self._probed_at: float | None = None
        self._probed_target = 0.0
        self._targets: collections.deque[tuple[float, float]] = collections.deque()
        self._last_target: float | None = None
        self._fell_at: float | None = None
        self._pending: tuple[int, float, float] | None = None
        """A step down that waits for the target to settle: (rung, target, since when)."""
        # choose() runs on the event loop, poll() in the encoder's worker thread
        self._lock = threading.Lock()

    @property
    def rung(self) -> Rung:
        return self.rungs[self.index]

    @property
    def label(self) -> str:
        return self.rung.label(self.height, self.fps)

    def floor(self, index: int) -> float:
        return self.rungs[index].floor_bps * self._scale

    @property
    def ceiling_bps(self) -> float:
        """The highest target this rung sees before the ladder steps up (none at the top)."""
        return self.floor(self.index - 1) * UP_MARGIN if self.index > 0 else math.inf

    def choose(
        self,
        target_bps: float,
        now: float,
        output_bps: float | None = None,
        qp: float | None = None,
        *,
        carried_bps: float | None = None,
    ) -> Rung:
        """The rung for `target_bps` at monotonic time `now`. `output_bps` is what the
        encoder actually produces, `qp` its mean quantiser (None: unknown; the floors alone
        decide), `carried_bps` what the link carried lately (None: unknown; a step up then
        does not wait for it). A picture that is easy at this rung (app-limited, or a low
        QP) neither steps down for a floor nor waits for one to step up."""
        with self._lock:
            return self._choose(target_bps, now, output_bps, qp, carried_bps)

    @property
    def deferring(self) -> bool:
        """Whether a step down waits for the target to settle (a keyframe asked for now
        would be spent on a rung about to go)."""
        return self._pending is not None

    def poll(self, now: float) -> Rung:
        """The rung now: a step down that waited is taken once the target has settled."""
        with self._lock:
            if self._pending is not None and self._settled(now, self._pending[2]):
                self._take_pending()
            return self.rung

    def settle(self) -> Rung:
        """The rung now, a step down that waits taken at once (the encoder reopens anyway)."""
        with self._lock:
            self._take_pending()
            return self.rung

    def _take_pending(self) -> None:
        if self._pending is not None:
            index, target, _ = self._pending
            self._pending = None
            self._step(index, target, "down")

    def _settled(self, now: float, since: float) -> bool:
        falling = self._fell_at is not None and now - self._fell_at < DOWN_SETTLE_S
        return not falling or now - since >= DOWN_MAX_WAIT_S

    def _choose(
        self,
        target_bps: float,
        now: float,
        output_bps: float | None,
        qp: float | None,
        carried_bps: float | None,
    ) -> Rung:
        if self._last_target is not None and target_bps < FALLING_SHARE * self._last_target:
            self._fell_at = now
        self._last_target = target_bps
        self._targets.append((now, target_bps))
        while len(self._targets) > 1 and self._targets[1][0] <= now - CARRIED_LAG_S:
            self._targets.popleft()
        limited = output_bps is not None and output_bps < APP_LIMITED_SHARE * target_bps
        if qp is not None:
            limited = limited or qp < QP_HIGH
            easy = qp < QP_LOW
        else:
            easy = limited
        fitting = next(
            (i for i in range(len(self.rungs)) if target_bps >= self.floor(i)),
            len(self.rungs) - 1,
        )
        settling = (
            self._probed_at is not None
            and qp is None
            and output_bps is None
            and target_bps >= PROBE_SETTLE_SHARE * self._probed_target
        )
        if fitting > self.index and not limited and not settling:
            self._up.reset()
            if self._probed_at is not None and now - self._probed_at < PROBE_FAILED_S:
                self._probe_hold = min(MAX_PROBE_HOLD_S, self._probe_hold * 2)
            self._probed_at = None
            since = self._pending[2] if self._pending is not None else now
            # the bottom rung has nothing below it to wait for
            if fitting == len(self.rungs) - 1 or self._settled(now, since):
                self._pending = None
                self._step(fitting, target_bps, "down")
            else:
                self._pending = (fitting, target_bps, since)
            return self.rung
        self._pending = None
        # the highest rung whose floor the target clears with the margin
        up = next((i for i in range(self.index) if target_bps >= self.floor(i) * UP_MARGIN), None)
        pinning = output_bps is not None and output_bps < PINNING_SHARE * target_bps
        probing = up is None and (easy or pinning) and self.index > 0
        if probing:
            up = self.index - 1
        if up is None:
            self._up.reset()
            return self.rung
        # the target CARRIED_LAG_S ago (the oldest known if younger), or now's if lower
        then = min(target_bps, self._targets[0][1])
        if probing:
            hold = self._probe_hold
        else:
            # as far as that target reaches, at least one rung: see UP_HOLD_S
            up = next(
                (i for i in range(up, self.index) if then >= self.floor(i) * UP_MARGIN),
                self.index - 1,
            )
            same_size = self.rungs[up].scale == self.rung.scale
            hold = FPS_UP_HOLD_S if same_size else UP_HOLD_S
        if not self._up.held(True, now, hold):
            return self.rung
        # this rung's encoder sends at most its ceiling, so the link can show no more
        shown = min(then, self.ceiling_bps)
        if probing or carried_bps is None or carried_bps >= CARRIED_SHARE * shown:
            self._up.reset()
            self._probed_at = now if probing else None
            self._probed_target = target_bps
            self._step(up, target_bps, "probe" if probing else "up")
        return self.rung

    def _step(self, index: int, target_bps: float, why: str) -> None:
        before = self.label
        self.index = index
        self.steps += 1
        if self._on_step is not None:
            self._on_step()
        logger.info(
            "video ladder: %s -> %s (%s, target %.0f kbit/s)",
            before,
            self.label,
            why,
            target_bps / 1000,
        )
