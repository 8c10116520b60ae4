"""Video: WHIP publishing (RFC 9725) with aiortc, media sources by URL, and H.264 checks.

Nothing heavy is imported here: aiortc and av load when a connection or a
source is made, so `luxxon-agent --help` stays fast.
"""

from luxxon_agent.video.encoder import VideoOptions
from luxxon_agent.video.h264 import H264Profile
from luxxon_agent.video.loopback import LOOPBACK_ENV, pin_ice_to_loopback
from luxxon_agent.video.mediasource import MediaSource, open_media_source
from luxxon_agent.video.publish import default_state_path, publish
from luxxon_agent.video.publisher import Publisher, PublisherOptions
from luxxon_agent.video.stats import PublisherState, PublisherStats
from luxxon_agent.video.testsrc import read_burned_clock
from luxxon_agent.video.whip import IceServer, WhipClient, WhipResource, parse_ice_servers

__all__ = [
    "H264Profile",
    "IceServer",
    "LOOPBACK_ENV",
    "MediaSource",
    "Publisher",
    "PublisherOptions",
    "PublisherState",
    "PublisherStats",
    "VideoOptions",
    "WhipClient",
    "WhipResource",
    "default_state_path",
    "open_media_source",
    "parse_ice_servers",
    "pin_ice_to_loopback",
    "publish",
    "read_burned_clock",
]
