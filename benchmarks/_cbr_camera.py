"""tests/video/rtsp_camera.py as a 2.5 Mbit/s constant-bitrate camera, for bench_link.

Usage: /usr/bin/python3 benchmarks/_cbr_camera.py [--detail] PORT [PROFILE [WIDTH HEIGHT]]

The test camera's moving ball encodes to about 180 kbit/s whatever its
x264 target, far from the 2.5 Mbit/s camera of issue 11. This runs that same
camera with its encoder switched to CBR at 2.5 Mbit/s (x264 `nal-hrd=cbr`
with filler data, as broadcast and many IP cameras send): on the wire it is a
2.5 Mbit/s stream. Its launch line is edited, not copied; if the camera's
encoder line changes, this fails instead of silently measuring something else.

The 2.5 Mbit/s is mostly filler: transcoded, the ball again needs about
180-400 kbit/s at 720p (libx264 at QP 5-17 under a 700 kbit/s target), so a
transcoder's media never fills a link it is allowed. `--detail` swaps the
ball for a moving zone plate that needs about 5 Mbit/s at QP 28 (a camera
whose 2.5 Mbit/s is picture, at about QP 33), so transcoding it fills its
target as a real scene would.
"""

import runpy
import sys
from pathlib import Path

import gi

gi.require_version("GstRtspServer", "1.0")
from gi.repository import GstRtspServer  # noqa: E402

TARGET = "bitrate=2000"
CBR = "bitrate=2500 vbv-buf-capacity=1000 option-string=nal-hrd=cbr:filler=1"
BALL = "pattern=ball"
ZONE_PLATE = "pattern=zone-plate kt=1 kx2=2 ky2=2"
CAMERA = Path(__file__).resolve().parents[1] / "tests" / "video" / "rtsp_camera.py"
set_launch = GstRtspServer.RTSPMediaFactory.set_launch


args = sys.argv[1:]
detail = "--detail" in args
if detail:
    args.remove("--detail")


def cbr_launch(factory: GstRtspServer.RTSPMediaFactory, launch: str) -> None:
    for needed in (TARGET, BALL):
        if needed not in launch:
            sys.exit(f"_cbr_camera: {CAMERA.name} no longer sets {needed!r}; update this wrapper")
    launch = launch.replace(TARGET, CBR)
    if detail:
        launch = launch.replace(BALL, ZONE_PLATE)
    set_launch(factory, launch)


GstRtspServer.RTSPMediaFactory.set_launch = cbr_launch
sys.argv = [str(CAMERA), *args]
runpy.run_path(str(CAMERA), run_name="__main__")
