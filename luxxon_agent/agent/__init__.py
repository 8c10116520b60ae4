"""The fleet agent: config, the per-operator supervisor, crash recovery, status, doctor, demo.

    config = load_config(Path("/etc/luxxon-agent/agent.toml"), os.environ)
    exit_code = asyncio.run(Supervisor(config, env=os.environ).serve())

See docs/agent.md. Heavy parts (aiortc, av, eth_account) load only inside the
calls that need them.
"""

from luxxon_agent.agent.config import (
    AgentConfig,
    AssignedOnRestart,
    OnSigterm,
    OperatorConfig,
    env_name,
    load_config,
)
from luxxon_agent.agent.sdnotify import SdNotifier
from luxxon_agent.agent.statefile import StateFile
from luxxon_agent.agent.status import StatusEndpointError, fetch_status

__all__ = [
    "AgentConfig",
    "AssignedOnRestart",
    "OnSigterm",
    "OperatorConfig",
    "SdNotifier",
    "StateFile",
    "StatusEndpointError",
    "env_name",
    "fetch_status",
    "load_config",
]
