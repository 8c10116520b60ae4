"""The local Luxxon API server: `create_app(StubConfig)`.

The video seam is `VideoBackend` (stub/video.py); the meter seam is
`stub/metering.py`; extra route modules go in `app.ROUTE_MODULES`.
"""

from luxxon_agent.stub.app import ROUTE_MODULES, create_app
from luxxon_agent.stub.config import StubConfig, default_db_path
from luxxon_agent.stub.runtime import StubRuntime
from luxxon_agent.stub.video import MintOnlyVideoBackend, VideoBackend, VideoInput

__all__ = [
    "MintOnlyVideoBackend",
    "ROUTE_MODULES",
    "StubConfig",
    "StubRuntime",
    "VideoBackend",
    "VideoInput",
    "create_app",
    "default_db_path",
]
