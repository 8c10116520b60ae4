"""The ladder and the passthrough switch as decisions over time (no media, no network)."""

from __future__ import annotations

from luxxon_agent.video.ladder import (
    DOWN_MAX_WAIT_S,
    DOWN_SETTLE_S,
    FPS_UP_HOLD_S,
    PROBE_FAILED_S,
    PROBE_UP_HOLD_S,
    UP_HOLD_S,
    Ladder,
)
from luxxon_agent.video.passthrough import (
    DOWN_HOLD_S,
    PROBE_GRACE_S,
    PROBE_S,
    PassthroughMode,
    PassthroughSwitch,
)

CAMERA_BPS = 2_500_000


def test_ladder_steps_down_at_once_only_when_the_picture_suffers() -> None:
    ladder = Ladder(1280, 720, 30)
    # an easy picture (low QP) at 720p30 keeps its size on a narrow target
    assert ladder.choose(300_000, 0.0, output_bps=280_000, qp=22).label(720, 30) == "720p30"
    # a suffering one jumps straight to the rung that fits
    ladder.choose(300_000, 1.0, output_bps=300_000, qp=45)
    assert ladder.label == "360p15" and ladder.steps == 1
    # a target that has just fallen waits to settle (see the next test), but not for the
    # bottom rung: there is nothing below it to wait for
    ladder.choose(100_000, 1.5, output_bps=100_000, qp=45)
    assert ladder.label == "180p15" and ladder.steps == 2 and not ladder.deferring


def test_ladder_steps_down_once_when_the_falling_target_has_settled() -> None:
    """REMB cuts every 0.1-0.2 s while a link narrows: one step to the rung that fits
    when they stop, not a keyframe for each rung on the way down."""
    ladder = Ladder(1280, 720, 30)
    ladder.choose(1_700_000, 0.0, qp=30)
    target, now = 1_700_000.0, 0.0
    labels = []
    for _ in range(15):  # 8 % every 0.1 s, from 1.7 Mbit/s to 490 kbit/s
        now, target = now + 0.1, target * 0.92
        ladder.choose(target, now, qp=40)
        ladder.poll(now + 0.05)
        labels.append(ladder.label)
    # under 720p30's floor from 0.5 s on; the fall went on past DOWN_MAX_WAIT_S, so one
    # step then, to the rung of that moment
    waited = round(DOWN_MAX_WAIT_S / 0.1)
    assert labels[: 4 + waited] == ["720p30"] * (4 + waited), labels
    assert ladder.steps == 1 and ladder.label == "360p30", labels
    # a fall that recovers before it has settled steps nowhere
    ladder.choose(300_000, now + 0.5, qp=40)
    ladder.choose(450_000, now + 0.6, qp=40)
    ladder.poll(now + 1.5)
    assert ladder.label == "360p30" and ladder.steps == 1 and not ladder.deferring
    # a fall that has stopped for DOWN_SETTLE_S is taken then
    now += 2
    ladder.choose(300_000, now, qp=40)
    ladder.poll(now - 0.01 + DOWN_SETTLE_S)
    assert ladder.label == "360p30" and ladder.deferring
    ladder.poll(now + 0.01 + DOWN_SETTLE_S)
    assert ladder.label == "360p15" and ladder.steps == 2 and not ladder.deferring
    # a fall to the bottom rung is taken at once
    ladder.choose(100_000, now + 1.0, qp=40)
    assert ladder.label == "180p15" and ladder.steps == 3 and not ladder.deferring
    # an encoder that reopens anyway (a keyframe) takes a waiting step with it
    ladder = Ladder(1280, 720, 30)
    ladder.choose(1_700_000, 0.0, qp=30)
    ladder.choose(800_000, 0.1, qp=40)
    assert ladder.deferring and ladder.settle().label(720, 30) == "540p30"
    assert not ladder.deferring and ladder.steps == 1


def test_ladder_steps_up_with_margin_and_hold_and_backs_off_failed_probes() -> None:
    ladder = Ladder(1280, 720, 30)
    ladder.choose(100_000, 0.0, qp=45)
    assert ladder.label == "180p15"
    # above 360p15's floor but not by the margin: no step, however long
    for t in range(20):
        ladder.choose(260_000, 1.0 + t, qp=30)
    assert ladder.label == "180p15"
    ladder.choose(340_000, 30.0, qp=30)
    ladder.choose(340_000, 30.0 + UP_HOLD_S - 0.1, qp=30)
    assert ladder.label == "180p15"
    ladder.choose(340_000, 30.0 + UP_HOLD_S, qp=30)
    assert ladder.label == "360p15"
    # an easy picture probes one rung up without the target; undone soon, it waits longer
    ladder.choose(300_000, 40.0, qp=20)
    ladder.choose(300_000, 40.0 + PROBE_UP_HOLD_S - 0.1, qp=20)
    assert ladder.label == "360p15", "a probe waits longer than a step the target asks for"
    ladder.choose(300_000, 40.0 + PROBE_UP_HOLD_S, qp=20)
    assert ladder.label == "360p30"
    ladder.choose(300_000, 45.0, qp=45)  # the probe failed
    assert ladder.label == "360p15"
    ladder.choose(300_000, 46.0, qp=20)
    ladder.choose(300_000, 46.0 + PROBE_UP_HOLD_S, qp=20)
    assert ladder.label == "360p15", "a failed probe doubles the wait"
    ladder.choose(300_000, 46.0 + 2 * PROBE_UP_HOLD_S, qp=20)
    assert ladder.label == "360p30"
    assert PROBE_FAILED_S > PROBE_UP_HOLD_S > UP_HOLD_S


def test_a_step_up_in_frame_rate_only_waits_less_than_one_in_size() -> None:
    """360p15 -> 360p30 opens no new context and costs no keyframe: it waits one report
    (FPS_UP_HOLD_S), a step to a bigger picture UP_HOLD_S."""
    assert FPS_UP_HOLD_S < UP_HOLD_S
    ladder = Ladder(1280, 720, 30)
    ladder.choose(300_000, 0.0, qp=45)
    assert ladder.label == "360p15"
    ladder.choose(600_000, 10.0, qp=30)
    ladder.choose(600_000, 10.0 + FPS_UP_HOLD_S - 0.1, qp=30)
    assert ladder.label == "360p15"
    ladder.choose(600_000, 10.0 + FPS_UP_HOLD_S, qp=30)
    assert ladder.label == "360p30" and ladder.steps == 2
    # 360p30 -> 540p30 is a new picture size: the full hold
    ladder.choose(1_000_000, 20.0, qp=30)
    ladder.choose(1_000_000, 20.0 + FPS_UP_HOLD_S, qp=30)
    ladder.choose(1_000_000, 20.0 + UP_HOLD_S - 0.1, qp=30)
    assert ladder.label == "360p30"
    ladder.choose(1_000_000, 20.0 + UP_HOLD_S, qp=30)
    assert ladder.label == "540p30"
    # from 180p15 a target that reaches 360p30 is a new size too
    ladder = Ladder(1280, 720, 30)
    ladder.choose(100_000, 0.0, qp=45)
    ladder.choose(600_000, 10.0, qp=30)
    ladder.choose(600_000, 10.0 + FPS_UP_HOLD_S, qp=30)
    assert ladder.label == "180p15"
    ladder.choose(600_000, 10.0 + UP_HOLD_S, qp=30)
    assert ladder.label == "360p30"


def test_ladder_steps_up_only_once_the_link_has_carried_the_target() -> None:
    ladder = Ladder(1280, 720, 30)
    ladder.choose(300_000, 0.0, qp=45)
    assert ladder.label == "360p15"
    # the estimate ran a report ahead of the link: 600 kbit/s asked, 400 arrived
    for t in range(10):
        ladder.choose(600_000, 1.0 + t, qp=30, carried_bps=400_000)
    assert ladder.label == "360p15"
    # what arrived catches up: the hold is already served, the step comes at once; against
    # the target of a second ago (what the report's packets were sent under), not today's
    ladder.choose(700_000, 11.0, qp=30, carried_bps=0.95 * 600_000)
    assert ladder.label == "360p30"
    # a probe (an easy picture) is a guess about the picture, not the link: it does not wait
    ladder.choose(300_000, 12.0, qp=45)
    ladder.poll(12.01 + DOWN_SETTLE_S)
    assert ladder.label == "360p15"
    ladder.choose(300_000, 13.0, qp=20, carried_bps=100_000)
    ladder.choose(300_000, 13.0 + PROBE_UP_HOLD_S, qp=20, carried_bps=100_000)
    assert ladder.label == "360p30"


def test_ladder_steps_up_once_the_link_has_carried_what_this_rung_can_send() -> None:
    """A rung's encoder sends at most its ceiling (180p15: 325 kbit/s), so what the link
    carried can never show a target above it: measured in bench_link, 180p15 sent 200-310
    kbit/s while the target climbed to 600, and 360p15 came only at a 745 kbit/s target."""
    ladder = Ladder(1280, 720, 30)
    ladder.choose(200_000, 0.0, qp=45)
    assert ladder.label == "180p15"
    for t in range(5):  # the link carried less than 0.9 x the ceiling: no step
        ladder.choose(450_000, 1.0 + t, qp=45, carried_bps=280_000)
    assert ladder.label == "180p15"
    ladder.choose(450_000, 6.0, qp=45, carried_bps=300_000)
    assert ladder.label == "360p15"


def test_ladder_steps_up_as_far_as_the_target_of_a_second_ago_reaches() -> None:
    """A target that shot up in its last second (an estimate growing 50 % a second past a
    link it has not met yet) takes one rung, not two: 360p15 -> 360p30, not 540p30."""
    ladder = Ladder(1280, 720, 30)
    ladder.choose(300_000, 0.0, qp=45)
    assert ladder.label == "360p15"
    now = 1.0
    for _ in range(round(UP_HOLD_S / 0.25)):  # 360p30's threshold held, 540p30's not
        ladder.choose(800_000, now, qp=30, carried_bps=800_000)
        now += 0.25
    ladder.choose(950_000, now, qp=30, carried_bps=800_000)
    assert ladder.label == "360p30" and ladder.steps == 2
    # sustained, the next one comes after its own hold
    for _ in range(round(UP_HOLD_S / 0.25) + 1):
        now += 0.25
        ladder.choose(950_000, now, qp=30, carried_bps=950_000)
    assert ladder.label == "540p30" and ladder.steps == 3


def _camera(switch: PassthroughSwitch, start: float, end: float) -> None:
    """A 2.5 Mbit/s camera's packets at 30 fps from `start` to `end`."""
    frames = round((end - start) * 30)
    for n in range(1, frames + 1):
        switch.add_packet(CAMERA_BPS // 8 // 30, start + n / 30)


def _switch_with_camera(transcode: bool = True) -> tuple[PassthroughSwitch, float]:
    switch = PassthroughSwitch(transcode=transcode)
    _camera(switch, 0.0, 4.0)
    assert abs((switch.camera_bps(4.0) or 0) - CAMERA_BPS) < 0.05 * CAMERA_BPS
    return switch, 4.0


def test_switch_goes_to_transcode_after_the_hold_and_back_with_hysteresis() -> None:
    switch, now = _switch_with_camera()
    assert switch.update(800_000, now) is PassthroughMode.PASSTHROUGH
    assert switch.update(800_000, now + DOWN_HOLD_S / 2) is PassthroughMode.PASSTHROUGH
    assert switch.update(800_000, now + DOWN_HOLD_S) is PassthroughMode.TRANSCODE
    assert "below the camera" in switch.reason and switch.switches == 1
    now += DOWN_HOLD_S
    switch.congested = True  # the link backed off meanwhile: no quiet-spell probe
    switch.update(800_000, now)
    switch.congested = False
    for t in range(7):  # wide again, but not yet for long enough (the camera goes on)
        _camera(switch, now + t, now + t + 1)
        switch.update(3_500_000, now + t + 1, output_bps=3_000_000)
    assert switch.mode is PassthroughMode.TRANSCODE
    for t in range(7, 10):
        _camera(switch, now + t, now + t + 1)
        switch.update(3_500_000, now + t + 1, output_bps=3_000_000)
    assert switch.mode is PassthroughMode.PASSTHROUGH and switch.switches == 2


def test_switch_without_transcoding_forwards_keyframes_and_probes() -> None:
    switch, now = _switch_with_camera(transcode=False)
    switch.padding = False  # a receiver that does not report our padding: nothing lifts it
    switch.update(500_000, now)
    assert switch.update(500_000, now + DOWN_HOLD_S) is PassthroughMode.KEYFRAMES
    now += DOWN_HOLD_S
    # keyframes only: the estimate cannot grow, so passthrough is tried after PROBE_S
    _camera(switch, now, now + PROBE_S)
    assert switch.update(500_000, now + PROBE_S - 0.5) is PassthroughMode.KEYFRAMES
    assert switch.update(500_000, now + PROBE_S) is PassthroughMode.PASSTHROUGH
    probe_at = now + PROBE_S
    # during the grace a low estimate alone does not undo the probe; congestion does
    _camera(switch, probe_at, probe_at + 3 + DOWN_HOLD_S)
    switch.update(500_000, probe_at + 1)
    assert switch.update(500_000, probe_at + 1 + DOWN_HOLD_S) is PassthroughMode.PASSTHROUGH
    switch.congested = switch.queue_or_loss = True  # lost, or queued
    switch.update(500_000, probe_at + 2.5)
    assert switch.update(500_000, probe_at + 2.5 + DOWN_HOLD_S) is PassthroughMode.KEYFRAMES
    assert PROBE_GRACE_S > 2.5 + DOWN_HOLD_S


def test_with_padding_a_stuck_estimate_is_no_reason_to_try_passthrough_blind() -> None:
    switch, now = _switch_with_camera(transcode=False)
    switch.update(500_000, now)
    assert switch.update(500_000, now + DOWN_HOLD_S) is PassthroughMode.KEYFRAMES
    now += DOWN_HOLD_S
    _camera(switch, now, now + 3 * PROBE_S)
    # padding would have lifted the estimate if the link took the camera: it did not
    assert switch.update(500_000, now + 3 * PROBE_S) is PassthroughMode.KEYFRAMES


def _until_switch(
    switch: PassthroughSwitch, start: float, end: float, target_bps: float
) -> float | None:
    """Feed the camera and `target_bps` every 0.5 s from `start`; when the mode changed
    (None: not before `end`)."""
    mode, now = switch.mode, start
    while now < end:
        _camera(switch, now, now + 0.5)
        now += 0.5
        if switch.update(target_bps, now) is not mode:
            return now
    return None


def _probing(switch: PassthroughSwitch, now: float) -> float:
    """Take the switch to TRANSCODE and through its first probe; when the probe began."""
    transcode_at = _until_switch(switch, now, now + 5, 800_000)
    assert transcode_at is not None and switch.mode is PassthroughMode.TRANSCODE
    probe_at = _until_switch(switch, transcode_at, transcode_at + 2 * PROBE_S, 2_100_000)
    assert probe_at is not None and "probing" in switch.reason, switch.reason
    return probe_at


def _next_probe_after(switch: PassthroughSwitch, back_at: float) -> float:
    """How long after `back_at` (back in TRANSCODE, the link quiet) the next probe came."""
    assert switch.mode is PassthroughMode.TRANSCODE
    switch.congested = switch.queue_or_loss = False
    again_at = _until_switch(switch, back_at, back_at + 3 * PROBE_S, 2_100_000)
    assert again_at is not None and "probing" in switch.reason, switch.reason
    return again_at - back_at


def test_only_a_probe_the_link_never_carried_doubles_the_wait_for_the_next() -> None:
    # (what the link passed, congestion after): congestion before the link passed the
    # camera's 2.5 Mbit/s is a refusal, however late (a deep buffer fills slowly); once it
    # has, congestion is the link narrowing, which says nothing against the next probe
    for passed_bps, congested_after, next_wait in (
        (2_000_000, 1.0, 2 * PROBE_S),
        (2_300_000, 6.0, 2 * PROBE_S),
        (2_700_000, 3.0, PROBE_S),
    ):
        switch, now = _switch_with_camera()
        probe_at = _probing(switch, now)
        switch.passed_bps = passed_bps
        assert _until_switch(switch, probe_at, probe_at + congested_after, 2_600_000) is None
        switch.congested = switch.queue_or_loss = True
        back_at = _until_switch(
            switch, probe_at + congested_after, probe_at + congested_after + 3, 1_500_000
        )
        assert back_at is not None
        waited = _next_probe_after(switch, back_at)
        assert next_wait <= waited <= next_wait + 0.5, (passed_bps, congested_after, waited)
    assert 6.0 < PROBE_GRACE_S


def test_a_probe_still_narrow_when_its_grace_ends_was_refused() -> None:
    """No congestion to undo it, but an estimate still under the camera's when the grace
    ends, and the link never passed the camera's rate: a refusal too, not a probe that
    held (which would have it back every PROBE_S)."""
    switch, now = _switch_with_camera()
    probe_at = _probing(switch, now)
    switch.passed_bps = 2_000_000
    back_at = _until_switch(switch, probe_at, probe_at + PROBE_GRACE_S + 3, 1_800_000)
    assert back_at is not None and back_at >= probe_at + PROBE_GRACE_S + DOWN_HOLD_S
    waited = _next_probe_after(switch, back_at)
    assert 2 * PROBE_S <= waited <= 2 * PROBE_S + 0.5, waited


def test_a_back_off_with_nothing_lost_and_no_queue_does_not_undo_a_probe() -> None:
    """Fewer bytes arrived than were sent over one report's span, with nothing lost and no
    queue: the span's edge at the probe's step up in rate, not a full link (bench_link: such
    a back-off undid a probe on an unshaped link 0.5 s in). Loss or a queue then does."""
    switch, now = _switch_with_camera()
    probe_at = _probing(switch, now)
    switch.congested, switch.queue_or_loss = True, False
    assert _until_switch(switch, probe_at, probe_at + 2, 1_800_000) is None
    switch.queue_or_loss = True
    assert _until_switch(switch, probe_at + 2, probe_at + 3, 1_800_000) is not None
    assert switch.mode is PassthroughMode.TRANSCODE
