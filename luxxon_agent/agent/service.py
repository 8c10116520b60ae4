"""The systemd unit, rendered and installed by `luxxon-agent install-service`.

`examples/luxxon-agent.service` is `render_unit()` with the default paths
(a test keeps the two identical).
"""

from __future__ import annotations

import os
from pathlib import Path

from luxxon_agent.errors import ConfigError
from luxxon_agent.files import write_atomic

DEFAULT_EXECUTABLE = "/usr/local/bin/luxxon-agent"
DEFAULT_CONFIG = Path("/etc/luxxon-agent/agent.toml")
PASSPHRASE_CREDENTIAL = (
    "luxxon-device-key-passphrase:/etc/luxxon-agent/credentials/luxxon-device-key-passphrase"
)

UNIT_TEMPLATE = """\
# systemd unit for the Luxxon fleet agent.
#
#   sudo useradd --system --home /var/lib/luxxon-agent --shell /usr/sbin/nologin luxxon-agent
#   sudo usermod -aG video,dialout luxxon-agent          # cameras and serial GPS
#   sudo install -d -m 0700 /etc/luxxon-agent/credentials
#   sudo install -m 0600 api-key.txt /etc/luxxon-agent/credentials/luxxon-api-key
#   # the device key: keygen writes a keystore JSON (mode 0600) straight into place
#   # and prints its address, which the operator registers (`luxxon operators register`)
#   sudo luxxon-agent keygen --key-file /etc/luxxon-agent/credentials/luxxon-device-key
#   sudo luxxon-agent install-service && sudo systemctl enable --now luxxon-agent
#
# The agent reads both from $CREDENTIALS_DIRECTORY (LoadCredential= below). A
# keystore encrypted with `keygen --passphrase-file F` needs F installed as
# /etc/luxxon-agent/credentials/luxxon-device-key-passphrase and the commented
# LoadCredential= line enabled (systemd refuses to start on a missing file).
#
# The agent speaks sd_notify: READY=1 once up, STATUS= with one line per
# operator, WATCHDOG=1 while its own work moves (telemetry ticks into the
# spool, a publishing video sends frames); an unreachable API is no reason to
# restart, a process that is alive but stuck is restarted.

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
# exit 2: invalid configuration; exit 4: the API refused the key. A restart
# every 2 s would fix neither (see `journalctl -u luxxon-agent`); exit 3, a
# startup failure such as a busy status port, is restarted.
RestartPreventExitStatus=2 4
WatchdogSec=30
# SIGTERM: the agent DELETEs its WHIP resources and ends (or leaves) LIVE
# sessions: shutdown_timeout_seconds (10) + drain (60) + /end (20) = 90 s at most
TimeoutStopSec=100
KillSignal=SIGTERM
KillMode=mixed

User=luxxon-agent
Group=luxxon-agent
SupplementaryGroups=video dialout
StateDirectory=luxxon-agent
StateDirectoryMode=0700
# /run/luxxon-agent: for `[status] listen = "unix:/run/luxxon-agent/status.sock"`
RuntimeDirectory=luxxon-agent
RuntimeDirectoryMode=0700
ConfigurationDirectory=luxxon-agent
Environment=LUXXON_AGENT_AGENT_STATE_DIR=/var/lib/luxxon-agent
# Secrets never in the unit or the environment: systemd hands them over in
# $CREDENTIALS_DIRECTORY, readable by this service only.
LoadCredential=luxxon-api-key:/etc/luxxon-agent/credentials/luxxon-api-key
LoadCredential=luxxon-device-key:/etc/luxxon-agent/credentials/luxxon-device-key
#LoadCredential={passphrase_credential}

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
# cameras and serial GPS receivers; everything else in /dev is hidden.
# video4linux: /dev/video* and /dev/v4l-subdev*; media + dma_heap: what
# libcamera (Raspberry Pi CSI cameras) opens besides; ttyUSB/ttyACM: USB GPS;
# ttyAMA/ttyS: UART GPS (Pi, x86); ttyTHS: Jetson UARTs.
PrivateDevices=no
DevicePolicy=closed
DeviceAllow=char-video4linux rw
DeviceAllow=char-media rw
DeviceAllow=char-dma_heap rw
DeviceAllow=char-ttyUSB rw
DeviceAllow=char-ttyACM rw
DeviceAllow=char-ttyAMA rw
DeviceAllow=char-ttyS rw
DeviceAllow=char-ttyTHS rw

[Install]
WantedBy=multi-user.target
"""


def render_unit(executable: str = DEFAULT_EXECUTABLE, config: Path = DEFAULT_CONFIG) -> str:
    for value in (executable, str(config)):
        if any(c.isspace() for c in value) or "%" in value:
            raise ConfigError(f"{value!r}: paths with spaces or % need quoting; use another path")
    return UNIT_TEMPLATE.format(
        executable=executable, config=config, passphrase_credential=PASSPHRASE_CREDENTIAL
    )


def install_unit(path: Path, *, executable: str, config: Path, force: bool = False) -> Path:
    """Write the unit to `path`; refuses to replace an existing file unless `force`."""
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; use --force to overwrite it")
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(f"cannot write to {path.parent} (run with sudo, or --path elsewhere)")
    write_atomic(path, render_unit(executable, config).encode(), mode=0o644)
    return path
