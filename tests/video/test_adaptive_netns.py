"""The adaptive publisher through a link that narrows and opens again, in namespaces.

The stub's ingest (tests/link_ingest.py) runs in one namespace and
`luxxon-agent publish` in the other, its egress shaped with `tc tbf`
(tests/netns.py). Two paths:

- software: testsrc 720p30 through libx264 (the pattern needs about
  300 kbit/s), the link narrowed to 150 kbit/s as in issue 11;
- passthrough: the test RTSP camera as a 2.5 Mbit/s CBR camera
  (benchmarks/_cbr_camera.py) in the publisher's namespace, the link
  narrowed to 1 Mbit/s.

Each checks that frames keep reaching the ingest while the link is narrow,
that the publisher's sent rate falls under the link within seconds, that it
never reconnects, and (passthrough) that it switches to transcoding and
back. Root only (namespaces, tc, nft).
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path
from typing import Any

from tests.netns import (
    NetnsLink,
    read_json_line,
    require_netns,
    start_cbr_camera,
    start_ingest,
)

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("luxxon-agent"))
CAMERA_PORT = 8554
FALL_WITHIN_S = 5.0
"""From the step down to a sent rate under the link: the issue's 2 s target is the
benchmark's; here a loaded CI machine gets slack, the direction is what is tested."""


class Run:
    """One publisher and one ingest across a NetnsLink, and what they said."""

    def __init__(self, link: NetnsLink, work: Path, source: str) -> None:
        self.link = link
        self.frames = work / "frames"
        self.stats: list[dict[str, Any]] = []
        start_ingest(link, str(self.frames))
        if source.startswith("rtsp://"):
            start_cbr_camera(link, CAMERA_PORT)
        env = os.environ | {
            # the whipUrl is a credential: environment, never argv
            "LUXXON_WHIP_URL": Path(str(self.frames) + ".url").read_text(),
            "XDG_STATE_HOME": str(work / "state"),
        }
        self.log = work / "publisher.log"
        # the child keeps its own copy of the descriptor: ours can close at once
        with self.log.open("w") as log:
            self.publisher = link.popen(
                link.client_ns,
                [CLI, "publish", "--source", source, "--bitrate", "2000000", "--json"],
                env=env,
                cwd=str(ROOT),
                stderr=log,
            )

    def follow(self, seconds: float) -> list[dict[str, Any]]:
        """The publisher's stats lines over the next `seconds`, stamped with the wall clock."""
        lines: list[dict[str, Any]] = []
        end = time.time() + seconds
        while (left := end - time.time()) > 0:
            line = read_json_line(self.publisher, left)
            if line is None:
                assert self.publisher.poll() is None, (
                    f"publisher exited {self.publisher.returncode}"
                )
                continue
            line["at"] = time.time()
            lines.append(line)
        self.stats += lines
        return lines

    def arrivals(self, start: float, end: float) -> list[float]:
        """Arrival times of the frames the ingest decoded in [start, end)."""
        times = [
            float(line.split()[1])
            for line in self.frames.read_text().splitlines()
            if line.startswith("F ")
        ]
        return [t for t in times if start <= t < end]

    def switches(self) -> list[str]:
        """The publisher's log lines about its mode and rung: why a run went as it did."""
        lines = self.log.read_text().splitlines()
        return [line for line in lines if "video: " in line or "video ladder: " in line]

    def publisher_connections(self) -> int:
        counters = [line for line in self.frames.read_text().splitlines() if line.startswith("S ")]
        return int(counters[-1].split()[2])


def _fps_and_longest_gap(arrivals: list[float], start: float, end: float) -> tuple[float, float]:
    edges = [start, *arrivals, end]
    return len(arrivals) / (end - start), max(b - a for a, b in zip(edges, edges[1:], strict=False))


def _modes(lines: list[dict[str, Any]]) -> str:
    """The modes the stats lines went through, in order: "transcode x40, passthrough x12"."""
    runs = itertools.groupby(x["mode"] for x in lines)
    return ", ".join(f"{mode} x{len(list(group))}" for mode, group in runs)


def _assert_adapted(
    run: Run,
    narrowed: list[dict[str, Any]],
    shaped_at: float,
    opened_at: float,
    rate_bps: float,
    min_fps: float,
) -> None:
    """The sent rate (on the wire, retransmissions included) fell under the link in time,
    and frames kept reaching the ingest once the publisher had adapted."""
    under = next((x["at"] - shaped_at for x in narrowed if x["sent_bps"] < rate_bps), None)
    assert under is not None and under <= FALL_WITHIN_S, [round(x["sent_bps"]) for x in narrowed]
    fps, gap = _fps_and_longest_gap(
        run.arrivals(shaped_at + 6, opened_at), shaped_at + 6, opened_at
    )
    assert fps >= min_fps and gap < 2.5, (fps, gap)


def test_software_path_follows_a_step_down_and_back(tmp_path: Path) -> None:
    require_netns()
    narrow = 150_000
    with NetnsLink(subnet=61, name="as") as link:
        run = Run(link, tmp_path, "testsrc://?size=1280x720&fps=30")
        run.follow(8)
        assert run.arrivals(time.time() - 3, time.time()), "no frames before the step"
        link.shape(narrow)
        shaped_at = time.time()
        narrowed = run.follow(14)
        link.shape(None)
        opened_at = time.time()
        run.follow(10)
        link.stop(run.publisher)
        _assert_adapted(run, narrowed, shaped_at, opened_at, narrow, min_fps=5)
        assert any(x["rung"] != "720p30" for x in narrowed), "the ladder never stepped"
        fps_open, _ = _fps_and_longest_gap(
            run.arrivals(opened_at + 5, opened_at + 10), opened_at + 5, opened_at + 10
        )
        assert fps_open >= 10, fps_open
        assert run.stats[-1]["reconnects"] == 0
        assert run.publisher_connections() == 1


def test_passthrough_switches_to_transcoding_and_back(tmp_path: Path) -> None:
    require_netns()
    narrow = 1_000_000
    with NetnsLink(subnet=62, name="ap") as link:
        run = Run(link, tmp_path, f"rtsp://127.0.0.1:{CAMERA_PORT}/cam")
        before = run.follow(8)
        assert before[-1]["mode"] == "passthrough", before[-1]
        assert before[-1]["sent_bps"] > 2_000_000, before[-1]  # the camera's own rate
        link.shape(narrow)
        shaped_at = time.time()
        narrowed = run.follow(14)
        link.shape(None)
        opened_at = time.time()
        opened = run.follow(28)
        link.stop(run.publisher)
        assert any(x["mode"] == "transcode" for x in narrowed), [x["mode"] for x in narrowed]
        # the transcoder's rung is shown while it runs
        assert any(x["rung"] for x in narrowed if x["mode"] == "transcode"), narrowed[-1]
        _assert_adapted(run, narrowed, shaped_at, opened_at, narrow, min_fps=8)
        # back to the camera's stream untouched once the link took it again
        opened_clock = time.strftime("%H:%M:%S", time.localtime(opened_at))
        assert opened[-1]["mode"] == "passthrough", (
            f"{_modes(opened)} after the link opened at {opened_clock}; the publisher said:\n"
            + "\n".join(run.switches())
        )
        assert opened[-1]["mode_switches"] >= 2
        assert run.stats[-1]["reconnects"] == 0
        assert run.publisher_connections() == 1


def test_address_change_reoffers_at_once(tmp_path: Path) -> None:
    require_netns()
    with NetnsLink(subnet=63, name="aa") as link:
        ns, dev = link.client_ns, link.client_dev
        other = link.client_ip.rsplit(".", 1)[0] + ".7"
        # the address that takes over stays when the first one goes (it is a secondary)
        link.run(ns, ["sysctl", "-qw", f"net.ipv4.conf.{dev}.promote_secondaries=1"])
        run = Run(link, tmp_path, "testsrc://?size=640x360&fps=30")
        run.follow(6)
        link.run(ns, ["ip", "addr", "add", f"{other}/24", "dev", dev])
        run.follow(2)
        removed_at = time.time()
        link.run(ns, ["ip", "addr", "del", f"{link.client_ip}/24", "dev", dev])
        run.follow(8)
        link.stop(run.publisher)
        back = run.arrivals(removed_at + 0.3, removed_at + 8)
        assert back, "no frame after the address change"
        # a re-offer, at once: not the 5 s staleness timer, not a backoff
        assert back[0] - removed_at < 3.0, back[0] - removed_at
        assert run.stats[-1]["reconnects"] == 1
        assert "network changed" in (run.stats[-1]["last_error"] or "")
        assert run.publisher_connections() == 2
