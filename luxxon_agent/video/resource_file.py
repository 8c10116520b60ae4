"""The leftover-resource file: the last WHIP `Location` a publisher got, per whipUrl.

A publisher writes the resource URL it holds before it uses it, and clears
it after a successful DELETE, so a process restarted after a crash (SIGKILL,
power loss) DELETEs its predecessor's orphan instead of being refused with
403/409 until the server times it out. The whipUrl is named by its SHA-256
only: the file never stores the secret itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from luxxon_agent.files import write_atomic
from luxxon_agent.secret import Secret

logger = logging.getLogger(__name__)


def whip_url_digest(url: Secret) -> str:
    """SHA-256 of a whipUrl: names it in state files without storing the secret."""
    return hashlib.sha256(url.reveal().encode()).hexdigest()


class ResourceFile:
    """Reads and writes one leftover-resource file; `path=None` keeps nothing."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def load(self, whip_url: Secret) -> str | None:
        """The Location a previous run left for `whip_url`, or None."""
        if self.path is None or not self.path.exists():
            return None
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            # unreadable is the same as absent: the next POST may be refused once, no more
            logger.info("ignoring the WHIP state file %s: %s", self.path, exc)
            return None
        if not isinstance(saved, dict) or saved.get("whip_url_sha256") != whip_url_digest(whip_url):
            return None
        location = saved.get("location")
        return location if isinstance(location, str) and location else None

    def save(self, whip_url: Secret, location: str | None) -> None:
        """Record `location` (None: nothing held) for `whip_url`."""
        if self.path is None:
            return
        payload = {"whip_url_sha256": whip_url_digest(whip_url), "location": location}
        # the resource URL is as good as the whipUrl to an attacker: owner-only file
        write_atomic(self.path, json.dumps(payload))
