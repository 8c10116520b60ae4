"""StateFile: the small on-disk memory that makes crash recovery possible.

It names the current session of each operator and the heartbeat sequence of
each workspace. For a LIVE session it also keeps what resuming it needs
without the API (`session`: the session as last seen, minus its URLs, and
`chain_id`, the EIP-712 chain the samples are signed for), so a restart
during a network outage samples into the spool at once. Writes are atomic
(temp file, fsync, rename, fsync of the directory), so a SIGKILL or power cut
leaves either the old or the new file, never a torn one. No secrets are
stored: a whipUrl is re-fetched with GET /sessions/:id/producer-token.

The heartbeat sequence must stay monotone across restarts even on a box
whose clock starts at 1970 until NTP syncs (a Raspberry Pi without RTC), so
`next_sequence` is `max(last + 1, now_ms)` and the file keeps a reserved
high-water mark, written ahead in blocks to spare SD cards a write every 2 s.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from luxxon_agent.files import write_atomic
from luxxon_agent.models import SessionState

logger = logging.getLogger(__name__)

STATE_VERSION = 1
SEQUENCE_RESERVE = 600_000
"""How far ahead (in sequence units, ms) the persisted high-water mark runs."""
SEQUENCE_SKIP = 3_600_000
"""How far to jump when the server already saw a larger heartbeat sequence (409)."""


@dataclass
class OperatorRecord:
    """What one operator was doing when the file was last written."""

    session_id: str | None = None
    state: str | None = None
    """Session state as last seen: ASSIGNED or LIVE (anything else is cleared)."""
    workspace_id: str | None = None
    session: dict[str, Any] | None = None
    """The session as last seen (`Session.model_dump(mode="json")`, no whip/whep URL):
    id, startedAt, maxDurationSeconds, requested point and geofence, for an offline resume."""
    chain_id: int | None = None
    """The server's EIP-712 chain id the session's samples are signed for."""

    def resumable(self) -> bool:
        """Enough is known to sample a LIVE session before the API answers."""
        return (
            self.state == SessionState.LIVE
            and self.session is not None
            and self.session.get("startedAt") is not None
            and self.chain_id is not None
        )


@dataclass
class State:
    operators: dict[str, OperatorRecord] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)
    """Workspace id (or, with per-operator dispatch, operator id) -> reserved heartbeat
    sequence high-water mark."""


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = self._load()
        self._last: dict[str, int] = dict(self.state.sequences)

    def _load(self) -> State:
        try:
            raw = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return State()
        except (OSError, ValueError) as exc:
            # a corrupt file cannot come from our atomic writes; keep it for a human
            backup = self.path.with_suffix(".corrupt")
            logger.error("state file %s unreadable (%s); moved to %s", self.path, exc, backup)
            os.replace(self.path, backup)
            return State()
        operators = {
            label: OperatorRecord(**{k: v for k, v in rec.items() if k in _RECORD_KEYS})
            for label, rec in raw.get("operators", {}).items()
        }
        sequences = {ws: int(seq) for ws, seq in raw.get("sequences", {}).items()}
        return State(operators=operators, sequences=sequences)

    def record(self, label: str) -> OperatorRecord:
        return self.state.operators.get(label, OperatorRecord())

    def set_session(
        self,
        label: str,
        session_id: str | None,
        state: SessionState | None,
        workspace_id: str | None,
        *,
        session: dict[str, Any] | None = None,
        chain_id: int | None = None,
    ) -> None:
        """Remember (or with None, forget) `label`'s session, durably, before acting on it."""
        new = OperatorRecord(
            session_id=session_id,
            state=state.value if state is not None else None,
            workspace_id=workspace_id,
            session=session if session_id else None,
            chain_id=chain_id if session_id else None,
        )
        if self.state.operators.get(label) == new:
            return
        self.state.operators[label] = new
        self.save()

    def next_sequence(self, workspace_id: str, now_ms: int) -> int:
        """A heartbeat sequence larger than every one sent before, across restarts."""
        last = self._last.get(workspace_id, 0)
        value = max(last + 1, now_ms)
        self._last[workspace_id] = value
        if value >= self.state.sequences.get(workspace_id, 0):
            self.state.sequences[workspace_id] = value + SEQUENCE_RESERVE
            self.save()
        return value

    def skip_sequence(self, workspace_id: str, by: int = SEQUENCE_SKIP) -> None:
        """The server saw a larger sequence than ours (409): jump past it."""
        self._last[workspace_id] = self._last.get(workspace_id, 0) + by

    def save(self) -> None:
        payload = {
            "version": STATE_VERSION,
            "operators": {k: asdict(v) for k, v in sorted(self.state.operators.items())},
            "sequences": dict(sorted(self.state.sequences.items())),
        }
        write_atomic(self.path, json.dumps(payload, indent=2).encode("utf-8") + b"\n")


_RECORD_KEYS = frozenset(OperatorRecord.__dataclass_fields__)
