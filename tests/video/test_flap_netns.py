"""A link flap against a WHIP server that refuses a new POST until the old resource is DELETEd.

The stub's ingest runs in one namespace with `--refuse-until-delete`
(tests/link_ingest.py: while the input's last resource lives, a POST gets
403, as some production servers answer), `luxxon-agent publish` in the other.
The path is cut twice: blackholed by nft (no netlink event: radio loss), then
the publisher's veth set down (a modem detaching). After each, the publisher
must be live again within the issue's 3 s of the path coming back: the lost
resource DELETEd, a fresh offer answered, frames decoded at the ingest. Root
only (namespaces, nft).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.netns import NetnsLink, require_netns, start_ingest

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("luxxon-agent"))
LIVE_WITHIN_S = 3.0
"""From the path coming back to the first new frame at the ingest: the issue's target."""


def _lines(frames: Path, kind: str) -> list[list[str]]:
    return [line.split() for line in frames.read_text().splitlines() if line.startswith(kind)]


def _first_frame_after(frames: Path, after: float, timeout: float) -> float | None:
    """Arrival of the first frame decoded after `after` that was also drawn after it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for parts in _lines(frames, "F "):
            if float(parts[1]) > after and parts[2] != "-" and float(parts[2]) > after:
                return float(parts[1])
        time.sleep(0.05)
    return None


def _answers(frames: Path, start: float, end: float) -> list[tuple[str, int]]:
    return [(p[2], int(p[3])) for p in _lines(frames, "W ") if start <= float(p[1]) <= end]


def test_live_again_within_3_s_after_a_flap_against_a_403_until_delete_server(
    tmp_path: Path,
) -> None:
    require_netns()
    frames = tmp_path / "frames"
    with NetnsLink(subnet=71, name="ft") as link:
        start_ingest(link, str(frames), refuse_until_delete=True)
        env = os.environ | {
            "LUXXON_WHIP_URL": Path(str(frames) + ".url").read_text(),
            "XDG_STATE_HOME": str(tmp_path / "state"),
        }
        publisher = link.popen(
            link.client_ns,
            [CLI, "publish", "--source", "testsrc://?size=640x360&fps=30", "--json"],
            env=env,
            cwd=str(ROOT),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert _first_frame_after(frames, 0, 15) is not None, "never live"
        flaps = (
            # longer than the 5 s staleness timer: nothing else tells of a blackhole
            ("blackhole", 7.0, link.blackhole),
            ("link down", 5.0, lambda cut: link.set_client_link(not cut)),
        )
        for name, seconds, cut in flaps:
            time.sleep(2)
            cut_at = time.time()
            cut(True)
            time.sleep(seconds)
            cut(False)
            up_at = time.time()
            back = _first_frame_after(frames, up_at, LIVE_WITHIN_S + 5)
            assert publisher.poll() is None, f"publisher exited {publisher.returncode}"
            assert back is not None, f"{name}: no frame within {LIVE_WITHIN_S + 5} s"
            answers = _answers(frames, cut_at, back)
            assert back - up_at <= LIVE_WITHIN_S, (name, back - up_at, answers)
            # the lost resource was DELETEd and a fresh offer accepted
            assert ("DELETE", 200) in answers and ("POST", 201) in answers, (name, answers)
        link.stop(publisher)
