"""Keep WebRTC media on 127.0.0.1: the one setting that makes two local aiortc peers meet.

aioice leaves loopback interfaces out of its ICE host candidates, so two
aiortc peers on one machine only find each other through the machine's other
addresses (or not at all in a network namespace without them). Pinning host
gathering to 127.0.0.1 keeps media on loopback. The stub, the publisher,
the tests and the demo call `pin_ice_to_loopback()`; `luxxon-agent publish`
does it when `LUXXON_ICE_LOOPBACK=1`.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

LOOPBACK_ENV = "LUXXON_ICE_LOOPBACK"
"""Environment variable the CLI reads: `1` pins ICE host candidates to loopback."""


def _loopback_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["127.0.0.1"] if use_ipv4 else []


def pin_ice_to_loopback() -> None:
    """Make aioice gather only the 127.0.0.1 host candidate, process-wide (idempotent).

    It replaces `aioice.ice.get_host_addresses`, which `Connection.gather_candidates`
    looks up at call time. Peer connections should also pass
    `RTCConfiguration(iceServers=[])` so no STUN server is asked for a public address.
    """
    import aioice.ice

    if aioice.ice.get_host_addresses is not _loopback_addresses:
        aioice.ice.get_host_addresses = _loopback_addresses
        logger.info("ICE host candidates pinned to 127.0.0.1")
