"""Today's publisher through a link that narrows and opens again, the tap observing.

The stub's ingest runs in one namespace, the Publisher (testsrc 720p30,
libx264, 2 Mbit/s cap; the pattern encodes to about 300 kbit/s) in the
other, with an observe-only RtcpTap on its sender. The link narrows to
150 kbit/s, as in the issue. The encoder does not follow the estimate yet,
so the link stays overloaded (and NACKs and PLIs make the publisher send
*more*): what is checked is that the estimate, from the ingest's receiver
reports, falls under the shaped rate within seconds and grows back to 80 % of
what the link carried before once it opens. The ingest's REMB counts only as it
falls (a cut at once); growth back is the receiver reports' alone, as against a
server that sends nothing else (aiortc's REMB recovers at GCC's 8 %/s).
Root only (namespaces, tc, nft).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.netns import NetnsLink, read_json_line, require_netns

ROOT = Path(__file__).resolve().parents[2]
CAP = 2_000_000
NARROW = 150_000
FALL_WITHIN_S = 4.0
"""Reports come every 0.5-1.5 s: two or three of them."""
RECOVER_WITHIN_S = 10.0
"""The issue's target for getting back to 80 % of capacity after a step up."""


def follow(proc: subprocess.Popen[str], seconds: float) -> list[dict[str, Any]]:
    """The publisher probe's lines over the next `seconds`."""
    lines: list[dict[str, Any]] = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        line = read_json_line(proc, left)
        if line is None:
            assert proc.poll() is None, f"publisher probe exited with {proc.returncode}"
            continue
        line["mono"] = time.monotonic()
        lines.append(line)
    return lines


def estimates(lines: list[dict[str, Any]]) -> list[tuple[float, float]]:
    return [(x["mono"], x["estimate"]["estimate_bps"]) for x in lines if x["estimate"]]


def test_estimate_follows_a_tbf_step_down_and_up(tmp_path: Path) -> None:
    require_netns()
    out = tmp_path / "frames"
    with NetnsLink(subnet=48, name="lp") as link:
        ingest = link.popen(
            link.server_ns,
            [sys.executable, "-m", "tests.link_ingest", "--host", link.server_ip,
             "--port", "8080", "--out", str(out)],
            cwd=str(ROOT),
        )  # fmt: skip
        assert ingest.stdout is not None
        assert ingest.stdout.readline().strip() == "ready"
        publisher = link.popen(
            link.client_ns,
            [sys.executable, "-m", "tests.link_publisher",
             "--source", "testsrc://?size=1280x720&fps=30", "--bitrate", str(CAP)],
            cwd=str(ROOT),
            stdin=subprocess.PIPE,
        )  # fmt: skip
        assert publisher.stdin is not None
        publisher.stdin.write(Path(str(out) + ".url").read_text() + "\n")
        publisher.stdin.close()

        # connected, reports flowing, the estimate at what the stream needs
        warmup = follow(publisher, 10)
        heard = [x for x in warmup if x["estimate"] and x["estimate"]["reports"] >= 2]
        assert heard, warmup[-3:]
        assert heard[-1]["estimate"]["rtt_s"] is not None
        # what the open link carried: the encoder's own rate, well under the cap
        before = heard[-1]["estimate"]["receive_bps"]
        assert before > 1.5 * NARROW, heard[-1]

        link.shape(NARROW)
        shaped_at = time.monotonic()
        narrow = follow(publisher, 8)
        under = [t - shaped_at for t, bps in estimates(narrow) if bps < NARROW]
        assert under and under[0] <= FALL_WITHIN_S, estimates(narrow)
        # the link really was narrower than the stream
        assert link.tbf_drops() > 0, [x["estimate"] for x in narrow]
        last = narrow[-1]["estimate"]
        assert last["loss"] > 0.1 or (last["queuing_delay_ms"] or 0) > 30, last

        link.shape(None)
        opened_at = time.monotonic()
        wide = follow(publisher, RECOVER_WITHIN_S)
        recovered = [t - opened_at for t, bps in estimates(wide) if bps >= 0.8 * before]
        assert recovered, ([round(bps) for _, bps in estimates(wide)], before)
        assert wide[-1]["state"] == "publishing"
        link.stop(publisher)
        link.stop(ingest)
    frames = [line for line in out.read_text().splitlines() if line.startswith("F ")]
    assert len(frames) > 100
