"""The stub's real WHIP ingest: aiortc answers, decodes, keeps stats and the latest frame.

    backend.py  WhipIngest, the stub's VideoBackend: inputs, publishers, viewers, windows
    router.py   the WHIP/WHEP HTTP endpoints
    sdp.py      complete checking of an offer before it touches an input
    inputs.py   an input's state, and the read-only InputView handed out
    frames.py   the frame timeline, JPEG snapshot, keyframe counting, viewer track
    store.py    the ingest's tables in the stub's SQLite (survive a restart)

WHEP viewers get the latest decoded frames re-encoded by aiortc, and keep
playing across publisher reconnects; an input serves at most `MAX_VIEWERS` (8)
by default. Non-video tracks (a publisher's microphone) are read and discarded.
"""

from luxxon_agent.stub.ingest.backend import (
    MAX_VIEWERS,
    InputGone,
    ViewersFull,
    WhipIngest,
    create_video_backend,
)
from luxxon_agent.stub.ingest.inputs import IngestStats, InputView
from luxxon_agent.stub.ingest.sdp import BadOffer, check_offer

__all__ = [
    "MAX_VIEWERS",
    "BadOffer",
    "IngestStats",
    "InputGone",
    "InputView",
    "ViewersFull",
    "WhipIngest",
    "check_offer",
    "create_video_backend",
]
