"""A local RTSP camera for the passthrough test, run with the system python3 (needs gi).

Usage: /usr/bin/python3 rtsp_camera.py PORT [PROFILE [WIDTH HEIGHT]]
Serves rtsp://127.0.0.1:PORT/cam: H.264 (constrained-baseline by default,
`high` for a stream that must be transcoded) of a moving test pattern,
640x360 at 30 fps unless a size is given (the benchmarks use 720p and 1080p).
Prints "ready" once listening.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

port = sys.argv[1]
profile = sys.argv[2] if len(sys.argv) > 2 else "constrained-baseline"
width, height = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else ("640", "360")
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
# ultrafast/zerolatency makes x264 emit Constrained Baseline whatever the caps say; a
# "high" camera needs CABAC and B-frames, as a real one has
encoder = (
    "x264enc tune=zerolatency speed-preset=ultrafast"
    if profile == "constrained-baseline"
    else "x264enc speed-preset=veryfast bframes=2"
)
factory.set_launch(
    "( videotestsrc is-live=true pattern=ball "
    f"! video/x-raw,width={width},height={height},framerate=30/1 "
    f"! {encoder} key-int-max=30 bitrate=2000 "
    f"! video/x-h264,profile={profile} ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
server.attach(None)
print("ready", flush=True)
GLib.MainLoop().run()
