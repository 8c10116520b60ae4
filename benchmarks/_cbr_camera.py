"""tests/video/rtsp_camera.py as a 2.5 Mbit/s constant-bitrate camera, for bench_link.

Usage: /usr/bin/python3 benchmarks/_cbr_camera.py PORT [PROFILE [WIDTH HEIGHT]]

The test camera's moving ball encodes to about 180 kbit/s whatever its
x264 target, far from the 2.5 Mbit/s camera of issue 11. This runs that same
camera with its encoder switched to CBR at 2.5 Mbit/s (x264 `nal-hrd=cbr`
with filler data, as broadcast and many IP cameras send): on the wire it is a
2.5 Mbit/s stream. Its launch line is edited, not copied; if the camera's
encoder line changes, this fails instead of silently measuring something else.
"""

import runpy
import sys
from pathlib import Path

import gi

gi.require_version("GstRtspServer", "1.0")
from gi.repository import GstRtspServer  # noqa: E402

TARGET = "bitrate=2000"
CBR = "bitrate=2500 vbv-buf-capacity=1000 option-string=nal-hrd=cbr:filler=1"
CAMERA = Path(__file__).resolve().parents[1] / "tests" / "video" / "rtsp_camera.py"
set_launch = GstRtspServer.RTSPMediaFactory.set_launch


def cbr_launch(factory: GstRtspServer.RTSPMediaFactory, launch: str) -> None:
    if TARGET not in launch:
        sys.exit(f"_cbr_camera: {CAMERA.name} no longer sets {TARGET!r}; update this wrapper")
    set_launch(factory, launch.replace(TARGET, CBR))


GstRtspServer.RTSPMediaFactory.set_launch = cbr_launch
sys.argv = [str(CAMERA), *sys.argv[1:]]
runpy.run_path(str(CAMERA), run_name="__main__")
