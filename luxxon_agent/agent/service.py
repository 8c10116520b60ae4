"""The systemd unit, rendered and installed by `luxxon-agent install-service`.

`examples/luxxon-agent.service` is `render_unit()` with the default paths
(a test keeps the two identical).
"""

from __future__ import annotations

import os
from pathlib import Path

from luxxon_agent.agent.statefile import write_atomic
from luxxon_agent.errors import ConfigError

DEFAULT_EXECUTABLE = "/usr/local/bin/luxxon-agent"
DEFAULT_CONFIG = Path("/etc/luxxon-agent/agent.toml")

UNIT_TEMPLATE = """\
# systemd unit for the Luxxon fleet agent.
#
#   sudo useradd --system --home /var/lib/luxxon-agent --shell /usr/sbin/nologin luxxon-agent
#   sudo usermod -aG video,dialout luxxon-agent          # cameras and serial GPS
#   sudo install -d -m 0700 /etc/luxxon-agent/credentials
#   sudo install -m 0600 api-key.txt /etc/luxxon-agent/credentials/luxxon-api-key
#   sudo install -m 0600 device-key.txt /etc/luxxon-agent/credentials/luxxon-device-key
#   sudo luxxon-agent install-service && sudo systemctl enable --now luxxon-agent
#
# The agent speaks sd_notify: READY=1 once up, STATUS= with one line per
# operator, WATCHDOG=1 only while the API answers, telemetry ticks and a LIVE
# publish moves bytes; a process that is alive but stuck is restarted.

[Unit]
Description=Luxxon fleet agent (live video + signed telemetry)
Documentation=https://github.com/luxxon/luxxon-agent/blob/main/docs/agent.md
Wants=network-online.target time-sync.target
After=network-online.target time-sync.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={executable} run --config {config}
Restart=always
RestartSec=2
WatchdogSec=30
TimeoutStopSec=30
# SIGTERM: the agent DELETEs its WHIP resources and ends (or leaves) LIVE sessions
KillSignal=SIGTERM
KillMode=mixed

User=luxxon-agent
Group=luxxon-agent
SupplementaryGroups=video dialout
StateDirectory=luxxon-agent
StateDirectoryMode=0700
ConfigurationDirectory=luxxon-agent
Environment=LUXXON_AGENT_AGENT_STATE_DIR=/var/lib/luxxon-agent
# Secrets never in the unit or the environment: systemd hands them over in
# $CREDENTIALS_DIRECTORY, readable by this service only.
LoadCredential=luxxon-api-key:/etc/luxxon-agent/credentials/luxxon-api-key
LoadCredential=luxxon-device-key:/etc/luxxon-agent/credentials/luxxon-device-key

# Hardening: the agent needs the network, its state dir, cameras and serial ports.
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
MemoryDenyWriteExecute=no
# (libav's codecs may need W^X exceptions on some builds, hence "no" above)
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
CapabilityBoundingSet=
AmbientCapabilities=
SystemCallArchitectures=native
SystemCallFilter=@system-service
UMask=0077
# cameras (V4L2) and serial GPS receivers; everything else in /dev is hidden
PrivateDevices=no
DevicePolicy=closed
DeviceAllow=char-video4linux rw
DeviceAllow=char-ttyUSB rw
DeviceAllow=char-ttyACM rw
DeviceAllow=char-ttyAMA rw

[Install]
WantedBy=multi-user.target
"""


def render_unit(executable: str = DEFAULT_EXECUTABLE, config: Path = DEFAULT_CONFIG) -> str:
    for value in (executable, str(config)):
        if any(c.isspace() for c in value) or "%" in value:
            raise ConfigError(f"{value!r}: paths with spaces or % need quoting; use another path")
    return UNIT_TEMPLATE.format(executable=executable, config=config)


def install_unit(path: Path, *, executable: str, config: Path, force: bool = False) -> Path:
    """Write the unit to `path`; refuses to replace an existing file unless `force`."""
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; use --force to overwrite it")
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(f"cannot write to {path.parent} (run with sudo, or --path elsewhere)")
    write_atomic(path, render_unit(executable, config).encode(), mode=0o644)
    return path
