"""Video over a link that moves: issue 11's profile, adaptive and not, side by side.

Run as root: .venv/bin/python benchmarks/bench_link.py [--only software|passthrough]
                                                        [--scale 0.2] [--repeat 3]
                                                        [--step-ups 8]

Two network namespaces on a veth pair (tests/netns.py): the stub's WHIP
ingest in the server one (tests/link_ingest.py, which logs every decoded
frame with its arrival time and burned-in clock), `luxxon-agent publish` in
the client one, whose egress is shaped through the profile:

    unshaped 20 s | 1 Mbit/s 30 s | 300 kbit/s 20 s | 1 Mbit/s + 5 % drop 20 s | unshaped 20 s

(`tc tbf`, 200 ms queue; drops by nft). Per phase it prints the fps decoded
at the ingest, frozen seconds (gaps of more than 200 ms without a new frame,
counted whole), staleness (arrival minus the burned-in clock, median and
p95; testsrc only, the RTSP camera has no clock), the publisher's sent
bitrate (its own stats, RTP payload) and reconnects. Each path runs twice:
adaptive, and with adaptation off (`--no-adapt`). Until `luxxon-agent
publish` has `--no-adapt`, today's publisher is the non-adaptive run and
the adaptive column says "not available": no number is made up.

Paths: software (testsrc 720p30 with `detail=high`, libx264, 2 Mbit/s cap:
the noise fills the cap, where the flat pattern needs about 300 kbit/s) and
passthrough (the test RTSP camera, 720p30 Constrained Baseline H.264, made
a 2.5 Mbit/s CBR camera of a moving zone plate by
benchmarks/_cbr_camera.py --detail, run in the client namespace; a picture
that needs its bits when transcoded, as a real scene does, where the test
camera's ball needs 180-400 kbit/s and the rest of its 2.5 Mbit/s is filler:
`--ball-camera` for that one). `--scale` shortens
every phase for a smoke run. `--repeat N` runs the adaptive profile N times and
prints each cell's median, then each run's fps, frozen seconds, staleness p95
and react side by side: one run's spread is as wide as most changes.
`--step-ups N` runs, instead, N of the step up each path is slowest at in one
adaptive publisher run (`step_up_profile`), and prints each step up's react.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from luxxon_agent.video.bandwidth import SENT_WINDOW_S  # noqa: E402
from tests.netns import (  # noqa: E402
    NetnsLink,
    netns_unavailable,
    start_cbr_camera,
    start_ingest,
)

CLI = str(Path(sys.executable).with_name("luxxon-agent"))
PORT = 8080
CAMERA_PORT = 8554
FROZEN_GAP_S = 0.2
CLOCK_SLACK_S = 0.05
CAPACITY_SHARE = 0.8
"""Issue 11: back to 80 % of capacity after a step up..."""
STEP_UP_WITHIN_S = 10.0
"""...within 10 s."""


def readable_clocks(arrivals: list[tuple[float, float | None]]) -> tuple[list[float | None], int]:
    """The burned-in clock of each frame, None where the strip was misread, and how many.

    A strip read wrong on a scaled-down picture is off by a power of two of
    milliseconds (8.2 s, 24.6 s and years were seen). Frames decode in order, so a
    true reading is never behind the last true one nor ahead of its own arrival;
    a reading that is, is a misread, not a stale frame (those keep the order).
    """
    clocks: list[float | None] = []
    misread = 0
    last: float | None = None
    for arrived, clock in arrivals:
        ok = (
            clock is not None
            and clock <= arrived + CLOCK_SLACK_S
            and (last is None or clock >= last - CLOCK_SLACK_S)
        )
        if ok:
            last = clock
        elif clock is not None:
            misread += 1
        clocks.append(clock if ok else None)
    return clocks, misread


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    rate_bps: float | None
    drop_percent: int = 0


PROFILE = (
    Phase("unshaped", 20, None),
    Phase("1 Mbit/s", 30, 1_000_000),
    Phase("300 kbit/s", 20, 300_000),
    Phase("1 Mbit/s 5 % drop", 20, 1_000_000, 5),
    Phase("unshaped again", 20, None),
)


def step_up_profile(path: str, cycles: int) -> tuple[Phase, ...]:
    """`--step-ups N`: the step up each path is slowest at, N times in one publisher run.

    One profile run gives one reading of a step up, and their spread (7-11 s, or none
    within the phase) is wider than most changes: this gives eight in four minutes.
    Software: 300 kbit/s 12 s then 1 Mbit/s + 5 % 13 s; passthrough: 1 Mbit/s + 5 % 17 s
    then unshaped 16 s (back to passthrough), after a lead-in of 10 s."""
    if path == "software":
        lead = Phase("1 Mbit/s", 10, 1_000_000)
        narrow, wide = (
            Phase("300 kbit/s", 12, 300_000),
            Phase("1 Mbit/s 5 % drop", 13, 1_000_000, 5),
        )
    else:
        lead = Phase("unshaped", 10, None)
        narrow, wide = (
            Phase("1 Mbit/s 5 % drop", 17, 1_000_000, 5),
            Phase("unshaped again", 16, None),
        )
    return (lead, *(narrow, wide) * cycles)


@dataclass
class PhaseResult:
    fps: float
    frozen_s: float
    stale_median_ms: float | None
    stale_p95_ms: float | None
    sent_kbps: float
    reconnects: int
    tbf_drops: int
    react_s: float | None
    """After a step down: seconds until everything sent (padding and repairs too) was
    under the link; after a step up: until the media (RTP payload) reached
    CAPACITY_SHARE of capacity (the link less its drops; unshaped: what the first
    unshaped phase sent). inf: never within the phase; None: no step."""
    media_wire_kbps: float = 0.0
    """The mean of `media_wire_bps` over the phase."""
    react_wire_s: float | None = None
    """After a step up, as `react_s` but with the media counted as the link counts it:
    on the wire (headers included), less padding and repairs (`media_wire_bps`)."""
    holes: int = 0
    """NACKed packets not sent again in the phase (refused by the retransmission budget,
    or gone from aiortc's history): each one freezes aiortc's receiver until a keyframe."""
    keyframes_refused: int = 0
    """Keyframe requests (PLIs, and the publisher's own for holes) the rate limit refused."""


@dataclass
class Run:
    phases: list[tuple[Phase, float, float]] = field(default_factory=list)
    """(phase, wall-clock start, end)."""
    stats: list[tuple[float, dict[str, object]]] = field(default_factory=list)
    drops: list[int] = field(default_factory=list)


def has_adaptation() -> bool:
    """Whether `luxxon-agent publish` can switch adaptation off (the video helper adds it)."""
    out = subprocess.run(
        [CLI, "publish", "--help"], capture_output=True, text=True, timeout=30
    ).stdout
    return "--no-adapt" in out


def read_stats(proc: subprocess.Popen[str], run: Run, until: float) -> None:
    """Collect the publisher's JSON stats lines until the wall clock reaches `until`."""
    assert proc.stdout is not None
    while (left := until - time.time()) > 0:
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
        if not ready:
            continue
        line = proc.stdout.readline()
        if not line:
            time.sleep(min(left, 0.5))  # exited: keep the phase clock going
            continue
        try:
            run.stats.append((time.time(), json.loads(line)))
        except ValueError:
            continue  # a log line


def run_profile(
    source: str,
    adaptive: bool,
    scale: float,
    subnet: int,
    profile: tuple[Phase, ...] = PROFILE,
    *,
    transport_cc: bool = False,
    ball_camera: bool = False,
) -> tuple[Run, Path]:
    work = Path(tempfile.mkdtemp(prefix="bench-link-"))
    frames = work / "frames"
    run = Run()
    # the publisher's log (mode switches, ladder steps) next to the frames, to read a run after
    with NetnsLink(subnet=subnet, name="bl") as link, (work / "publisher.log").open("w") as log:
        ingest = start_ingest(link, str(frames), PORT, transport_cc=transport_cc)
        if source.startswith("rtsp://"):
            start_cbr_camera(link, CAMERA_PORT, detail=not ball_camera)
        env = os.environ | {
            "LUXXON_WHIP_URL": Path(str(frames) + ".url").read_text(),
            "XDG_STATE_HOME": str(work / "state"),
        }
        # stats four times a second: the sent rate (over the last second) falls under the
        # link at some instant, which once-a-second lines would see up to a second late
        argv = [CLI, "publish", "--source", source, "--bitrate", "2000000", "--json"]
        argv += ["--stats-interval", "0.25"]
        if not adaptive and has_adaptation():
            argv.append("--no-adapt")
        publisher = link.popen(link.client_ns, argv, env=env, cwd=str(ROOT), stderr=log)
        # the profile starts with the first frame at the ingest
        deadline = time.time() + 30
        while "F " not in frames.read_text() and time.time() < deadline:
            read_stats(publisher, run, time.time() + 0.2)
        if "F " not in frames.read_text():
            raise RuntimeError("no frame reached the ingest within 30 s")
        for phase in profile:
            link.shape(phase.rate_bps, phase.drop_percent)
            start = time.time()
            before = link.tbf_drops()
            read_stats(publisher, run, start + phase.seconds * scale)
            run.drops.append(link.tbf_drops() - before if phase.rate_bps else 0)
            run.phases.append((phase, start, time.time()))
        link.stop(publisher)
        link.stop(ingest)
    with (work / "stats.jsonl").open("w") as out:
        out.writelines(f"{json.dumps({'t': t} | stats)}\n" for t, stats in run.stats)
    kind = "adaptive" if adaptive else "fixed"
    print(f"bench_link: the {kind} run's frames, log and stats are in {work}", file=sys.stderr)
    return run, frames


def media_wire_bps(stats: list[tuple[float, dict[str, object]]]) -> list[float | None]:
    """Each stats line's media rate on the wire: its `sent_bps` (the last second, as the
    link counts it: IP, UDP and SRTP included) less the padding and retransmitted bytes
    sent over the second before the line (from the deltas of their counters). None for
    the first second's lines.

    `react_s` compares RTP payload with the link's wire rate: with about 6 % of headers
    and the encoder under its target, the media reaches 80 % of a link only while the
    estimate runs about 5 % over it. This reading compares like with like."""
    readings: list[float | None] = []
    earlier = 0
    for t, line in stats:
        while earlier + 1 < len(stats) and stats[earlier + 1][0] <= t - SENT_WINDOW_S:
            earlier += 1
        then, before = stats[earlier]
        if t - then < SENT_WINDOW_S:
            readings.append(None)
            continue
        extra = sum(
            int(str(line.get(key) or 0)) - int(str(before.get(key) or 0))
            for key in ("padding_bytes", "retransmitted_bytes")
        )
        sent = float(str(line.get("sent_bps") or 0))
        readings.append(max(0.0, sent - extra * 8 / (t - then)))
    return readings


def counted(
    stats: list[tuple[float, dict[str, object]]], start: float, end: float, *keys: str
) -> int:
    """How much the publisher's counters `keys` (summed) grew from `start` to `end`, read
    from the last stats line before each."""

    def at(moment: float) -> int:
        before = [line for t, line in stats if t < moment]
        return sum(int(str(before[-1].get(key) or 0)) for key in keys) if before else 0

    return at(end) - at(start)


def summarize(run: Run, frames_path: Path, clocked: bool) -> list[PhaseResult]:
    """Per-phase figures; staleness only when the source burns in a clock (`clocked`)."""
    arrivals: list[tuple[float, float | None]] = []
    for line in frames_path.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "F":
            burned = float(parts[2]) if clocked and parts[2] != "-" else None
            arrivals.append((float(parts[1]), burned))
    clocks, misread = readable_clocks(arrivals)
    if misread:
        print(f"bench_link: {misread} misread clock strips left out of staleness", file=sys.stderr)
    arrivals = [(t, c) for (t, _), c in zip(arrivals, clocks, strict=True)]
    wire = list(zip((t for t, _ in run.stats), media_wire_bps(run.stats), strict=True))
    results: list[PhaseResult] = []
    previous: Phase | None = None
    for (phase, start, end), drops in zip(run.phases, run.drops, strict=True):
        inside = [(t, c) for t, c in arrivals if start <= t < end]
        times = [start, *(t for t, _ in inside), end]
        frozen = sum(b - a for a, b in zip(times, times[1:], strict=False) if b - a > FROZEN_GAP_S)
        stale = sorted((t - c) * 1000 for t, c in inside if c is not None)
        stats = [(t, s) for t, s in run.stats if start <= t < end]
        sent = [
            float(str(s.get("bitrate_bps", 0))) for _, s in stats if s.get("state") == "publishing"
        ]
        reconnects = [int(str(s.get("reconnects", 0))) for _, s in stats]
        media_wire = [(t, bps) for t, bps in wire if start <= t < end and bps is not None]
        payload_capacity, wire_capacity = step_up_capacity(previous, phase, results)
        results.append(
            PhaseResult(
                fps=len(inside) / (end - start),
                frozen_s=frozen,
                stale_median_ms=statistics.median(stale) if stale else None,
                stale_p95_ms=stale[math.ceil(0.95 * len(stale)) - 1] if stale else None,
                sent_kbps=statistics.mean(sent) / 1000 if sent else 0.0,
                reconnects=(max(reconnects) - min(reconnects)) if reconnects else 0,
                tbf_drops=drops,
                react_s=reaction(previous, phase, start, stats, payload_capacity),
                media_wire_kbps=(
                    statistics.mean(bps for _, bps in media_wire) / 1000 if media_wire else 0.0
                ),
                react_wire_s=reached(start, media_wire, wire_capacity),
                holes=counted(run.stats, start, end, "repairs_refused", "repairs_unavailable"),
                keyframes_refused=counted(run.stats, start, end, "keyframe_requests_refused"),
            )
        )
        previous = phase
    return results


def link_step(previous: Phase | None, phase: Phase) -> Literal["down", "up"] | None:
    """Which way the link's rate moved from `previous` to `phase`, "down" or "up" (an
    unshaped phase's is unbounded); None: the first phase, or the same rate."""
    if previous is None:
        return None
    before, now = previous.rate_bps or math.inf, phase.rate_bps or math.inf
    if now == before:
        return None
    return "down" if now < before else "up"


def step_up_capacity(
    previous: Phase | None, phase: Phase, earlier: list[PhaseResult]
) -> tuple[float | None, float | None]:
    """After a step up, the capacity to reach, for the payload and for the wire reading:
    the link less its drops (both), or unshaped, what the first (unshaped) phase sent,
    in each reading. None: not a step up."""
    if link_step(previous, phase) != "up":
        return None, None
    if phase.rate_bps is not None:
        link = phase.rate_bps * (1 - phase.drop_percent / 100)
        return link, link
    return earlier[0].sent_kbps * 1000, earlier[0].media_wire_kbps * 1000


def reached(
    start: float, readings: list[tuple[float, float]], capacity: float | None
) -> float | None:
    """Seconds from `start` to the first reading at CAPACITY_SHARE of `capacity` (inf:
    none; None: no capacity to reach)."""
    if capacity is None:
        return None
    times = [t for t, bps in readings if bps >= CAPACITY_SHARE * capacity]
    return times[0] - start if times else math.inf


def reaction(
    previous: Phase | None,
    phase: Phase,
    start: float,
    stats: list[tuple[float, dict[str, object]]],
    capacity: float | None,
) -> float | None:
    """PhaseResult.react_s from the publisher's per-second stats (1 s resolution)."""
    direction = link_step(previous, phase)
    if direction is None:
        return None
    if direction == "down" and phase.rate_bps is not None:
        # the wire rate, retransmissions and padding included
        times = [t for t, s in stats if float(str(s.get("sent_bps") or 0)) <= phase.rate_bps]
        return times[0] - start if times else math.inf
    payload = [(t, float(str(s.get("bitrate_bps") or 0))) for t, s in stats]
    return reached(start, payload, capacity)


def cell(result: PhaseResult | None) -> str:
    if result is None:
        return f"{'not available':<{CELL_WIDTH}}"

    stale = f"{optional(result.stale_median_ms, 0)}/{optional(result.stale_p95_ms, 0)}"
    return (
        f"{result.fps:5.1f} {result.frozen_s:6.1f} {stale:>11} {result.sent_kbps:6.0f} "
        f"{result.reconnects:3d} {result.tbf_drops:6d} {optional(result.react_s, 1):>5} "
        f"{optional(result.react_wire_s, 1):>5}"
    )


def optional(value: float | None, digits: int) -> str:
    """`value` to `digits` decimals, or "-" where there is none."""
    return "-" if value is None else f"{value:.{digits}f}"


CELL_HEAD = (
    f"{'fps':>5} {'frozen':>6} {'stale ms':>11} {'kbit/s':>6} {'rec':>3} {'drops':>6} "
    f"{'react':>5} {'wire':>5}"
)
"""The column heads over `cell`."""
CELL_WIDTH = len(CELL_HEAD)


REACT_LEGEND = (
    "react: s until all sent was under the link after a step down; until the media "
    f"(payload) reached {CAPACITY_SHARE:.0%} of capacity after a step up (inf: not in the "
    "phase); wire: the same step up with the media as the link counts it, headers in, "
    "padding and repairs out"
)


def report(title: str, adaptive: list[PhaseResult] | None, fixed: list[PhaseResult] | None) -> None:
    print(f"\n{title}")
    print(f"{'phase':<20} | {'adaptive':<{CELL_WIDTH}} | non-adaptive (today's publisher)")
    print(f"{'':<20} | {CELL_HEAD} | {CELL_HEAD}")
    for index, phase in enumerate(PROFILE):
        left = adaptive[index] if adaptive is not None else None
        right = fixed[index] if fixed is not None else None
        print(f"{phase.name:<20} | {cell(left)} | {cell(right)}")
    print(REACT_LEGEND)
    if adaptive is None:
        print("adaptive: not available (`luxxon-agent publish` has no --no-adapt yet)")


def report_step_ups(title: str, results: list[PhaseResult], profile: tuple[Phase, ...]) -> None:
    print(f"\n{title}; step ups")
    print(f"{'phase':<20} | {CELL_HEAD}")
    for phase, result in zip(profile, results, strict=True):
        print(f"{phase.name:<20} | {cell(result)}")
    print(REACT_LEGEND)
    ups = results[2::2]  # lead-in, narrow, wide, narrow, ...
    for reading, reacts in (
        ("payload", [result.react_s for result in ups]),
        ("wire", [result.react_wire_s for result in ups]),
    ):
        within = sum(1 for react in reacts if react is not None and react <= STEP_UP_WITHIN_S)
        print(
            f"react after each step up ({reading}), s: {' '.join(optional(r, 1) for r in reacts)} "
            f"({within} of {len(reacts)} within {STEP_UP_WITHIN_S:.0f} s)"
        )


def median_results(runs: list[list[PhaseResult]]) -> list[PhaseResult]:
    """Per phase, the median of each figure over `runs` (reconnects: the most in any)."""

    def median(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    results = []
    for phase in zip(*runs, strict=True):
        results.append(
            PhaseResult(
                fps=statistics.median(r.fps for r in phase),
                frozen_s=statistics.median(r.frozen_s for r in phase),
                stale_median_ms=median([r.stale_median_ms for r in phase]),
                stale_p95_ms=median([r.stale_p95_ms for r in phase]),
                sent_kbps=statistics.median(r.sent_kbps for r in phase),
                reconnects=max(r.reconnects for r in phase),
                tbf_drops=round(statistics.median(r.tbf_drops for r in phase)),
                react_s=median([r.react_s for r in phase]),
                media_wire_kbps=statistics.median(r.media_wire_kbps for r in phase),
                react_wire_s=median([r.react_wire_s for r in phase]),
                holes=round(statistics.median(r.holes for r in phase)),
                keyframes_refused=round(statistics.median(r.keyframes_refused for r in phase)),
            )
        )
    return results


def report_spread(runs: list[list[PhaseResult]]) -> None:
    """Each adaptive run's fps, frozen seconds, staleness p95 and react, phase by phase."""
    print(
        f"adaptive, each of {len(runs)} runs (fps | frozen s | stale p95 ms | react s | wire s"
        " | holes | keyframe requests refused):"
    )

    def joined(values: list[float | None], digits: int) -> str:
        return " ".join(optional(v, digits) for v in values)

    for index, phase in enumerate(PROFILE):
        results = [run[index] for run in runs]
        print(
            f"{phase.name:<20} | {joined([r.fps for r in results], 1)} | "
            f"{joined([r.frozen_s for r in results], 1)} | "
            f"{joined([r.stale_p95_ms for r in results], 0)} | "
            f"{joined([r.react_s for r in results], 1)} | "
            f"{joined([r.react_wire_s for r in results], 1)} | "
            f"{' '.join(str(r.holes) for r in results)} | "
            f"{' '.join(str(r.keyframes_refused) for r in results)}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("software", "passthrough"))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every phase's length")
    parser.add_argument(
        "--adaptive-only", action="store_true", help="skip the non-adaptive runs (for tuning)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run the adaptive profile N times and print medians, then each run",
    )
    parser.add_argument(
        "--step-ups",
        type=int,
        metavar="N",
        help="instead of the profile: N of the step up each path is slowest at, adaptive only",
    )
    parser.add_argument(
        "--transport-cc",
        action="store_true",
        help="the ingest sends transport-cc feedback (default: receiver reports and REMB)",
    )
    parser.add_argument(
        "--ball-camera",
        action="store_true",
        help="the camera before stop 35: a ball padded to 2.5 Mbit/s with filler, which "
        "transcoded needs 180-400 kbit/s (default: a zone plate that needs its bits)",
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.step_ups is not None and args.step_ups < 1:
        parser.error("--step-ups must be at least 1")
    reason = netns_unavailable()
    if reason is not None:
        print(f"bench_link: {reason}", file=sys.stderr)
        return 2
    paths = {
        "software": (
            "testsrc://?size=1280x720&fps=30&detail=high",
            "software: testsrc 720p30 detail=high, libx264, 2 Mbit/s cap",
        ),
        "passthrough": (
            f"rtsp://127.0.0.1:{CAMERA_PORT}/cam",
            "passthrough: RTSP camera 720p30 H.264, 2.5 Mbit/s CBR, "
            + ("ball and filler" if args.ball_camera else "zone plate")
            + " (no burned-in clock)",
        ),
    }
    adaptation = has_adaptation()
    feeds = {"transport_cc": args.transport_cc, "ball_camera": args.ball_camera}
    for index, (name, (source, title)) in enumerate(paths.items()):
        if args.only and name != args.only:
            continue
        if args.step_ups is not None:
            profile = step_up_profile(name, args.step_ups)
            run, frames = run_profile(source, True, args.scale, 50 + 2 * index, profile, **feeds)
            report_step_ups(title, summarize(run, frames, name == "software"), profile)
            continue
        runs = []
        for _ in range(args.repeat if adaptation else 0):
            run, frames = run_profile(source, True, args.scale, 50 + 2 * index, **feeds)
            runs.append(summarize(run, frames, name == "software"))
        fixed = None
        if not args.adaptive_only:
            run, frames = run_profile(source, False, args.scale, 51 + 2 * index, **feeds)
            fixed = summarize(run, frames, name == "software")
        if len(runs) > 1:
            title += f"; adaptive: median of {len(runs)} runs"
        report(title, median_results(runs) if runs else None, fixed)
        if len(runs) > 1:
            report_spread(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
