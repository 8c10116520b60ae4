"""StubRuntime: one stub's state (config, store, video backend) and the session rules
shared by routes and the expiry sweeper.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from luxxon_agent.errors import MediaError
from luxxon_agent.models import (
    ApiKey,
    AvailabilityState,
    Session,
    SessionState,
    SessionVideo,
    Workspace,
    WorkspaceMembership,
)
from luxxon_agent.stub import fleet
from luxxon_agent.stub.config import StubConfig
from luxxon_agent.stub.http_error import envelope
from luxxon_agent.stub.store import Store, parse_ts, ts
from luxxon_agent.stub.video import OpenInput, VideoBackend, VideoInput

logger = logging.getLogger(__name__)

ACTIVE_STATES = (SessionState.ASSIGNED.value, SessionState.LIVE.value, SessionState.PAUSED.value)
PRE_LIVE_STATES = (SessionState.REQUESTED.value, SessionState.ASSIGNED.value)
LIVE_STATES = (SessionState.LIVE.value, SessionState.PAUSED.value)


class StubRuntime:
    """Held in `app.state.stub`; route modules reach it through `runtime(request)`."""

    def __init__(self, config: StubConfig, store: Store, video: VideoBackend) -> None:
        self.config = config
        self.store = store
        self.video = video
        self._boot = secrets.token_hex(4)
        self._writes = 0
        self._background: list[asyncio.Task[None]] = []
        self._restore_video()

    # ---- small services ---------------------------------------------------------

    def now(self) -> datetime:
        return self.config.clock.now()

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{self.config.rng.getrandbits(96):024x}"

    def consistency_token(self) -> str:
        """Opaque and increasing; SQLite on one node is always consistent, so reads ignore it."""
        self._writes += 1
        return f"lxct_{self._boot}_{self._writes}"

    # ---- rows to API objects ----------------------------------------------------

    def workspace(self, row: sqlite3.Row) -> Workspace:
        return Workspace(
            id=row["id"],
            slug=row["slug"],
            name=row["name"],
            wallet_address=row["wallet_address"],
            roles=json.loads(row["roles"]),
            availability_state=row["availability_state"],
            coverage_lat=row["coverage_lat"],
            coverage_lng=row["coverage_lng"],
            coverage_radius_meters=row["coverage_radius_meters"],
            device_kind=row["device_kind"],
            last_seen_at=parse_ts(row["last_seen_at"]),
            created_at=parse_ts(row["created_at"]),
            created_by_wallet=row["created_by_wallet"],
            deleted_at=parse_ts(row["deleted_at"]),
        )

    def api_key(self, row: sqlite3.Row, plaintext: str | None = None) -> ApiKey:
        return ApiKey(
            id=row["id"],
            workspace_id=row["workspace_id"],
            prefix=row["prefix"],
            label=row["label"],
            environment=row["environment"],
            scopes=json.loads(row["scopes"]),
            last_used_at=parse_ts(row["last_used_at"]),
            revoked_at=parse_ts(row["revoked_at"]),
            grace_period_end=parse_ts(row["grace_period_end"]),
            created_at=parse_ts(row["created_at"]),
            created_by_wallet=row["created_by_wallet"],
            plaintext=plaintext,
        )

    def session(self, row: sqlite3.Row, viewer_workspace_id: str | None) -> Session:
        """The session as `viewer_workspace_id` sees it: the whipUrl only for its operator,
        and the stub's `video` extension (media arriving or not) for both sides."""
        live = row["state"] in LIVE_STATES
        is_operator = viewer_workspace_id == row["operator_workspace_id"]
        media = (
            self.video.media_status(row["video_backend_ref"]) if row["video_backend_ref"] else None
        )
        return Session(
            id=row["id"],
            consumer_workspace_id=row["consumer_workspace_id"],
            operator_workspace_id=row["operator_workspace_id"],
            state=row["state"],
            max_duration_seconds=row["max_duration_seconds"],
            wait_timeout_seconds=row["wait_timeout_seconds"],
            rate_per_second_micro_usdc=row["rate_per_second_micro_usdc"],
            hold_micro_usdc=row["hold_micro_usdc"],
            started_at=parse_ts(row["started_at"]),
            ended_at=parse_ts(row["ended_at"]),
            clean_seconds=row["clean_seconds"],
            failed_seconds=row["failed_seconds"],
            charged_micro_usdc=row["charged_micro_usdc"],
            settlement_tx_hash=row["settlement_tx_hash"],
            video_backend_ref=row["video_backend_ref"] if is_operator else None,
            created_at=parse_ts(row["created_at"]),
            requested_lat=row["requested_lat"],
            requested_lng=row["requested_lng"],
            geofence_radius_meters=row["geofence_radius_meters"],
            operator_id=row["operator_id"],
            whip_url=row["whip_url"] if live and is_operator else None,
            whep_url=row["whep_url"] if live else None,
            video=None
            if media is None
            else SessionVideo(
                connected=media.connected,
                last_frame_at=media.last_frame_at,
                frames_received=media.frames_received,
            ),
        )

    def memberships(self, wallet_address: str) -> list[WorkspaceMembership]:
        rows = self.store.all(
            "SELECT w.* FROM workspaces w JOIN workspace_members m ON m.workspace_id = w.id"
            " WHERE m.wallet_address = ? AND w.deleted_at IS NULL ORDER BY w.created_at, w.id",
            (wallet_address,),
        )
        return [
            WorkspaceMembership(
                workspace_id=r["id"], slug=r["slug"], name=r["name"], roles=json.loads(r["roles"])
            )
            for r in rows
        ]

    # ---- session rules ----------------------------------------------------------

    def operator_level(self, workspace_id: str) -> bool:
        """The workspace's availability is derived from its operators (stub/fleet.py)."""
        return self.config.operator_dispatch and fleet.is_operator_level(self.store, workspace_id)

    def free_operator_of(self, conn: sqlite3.Connection, row: sqlite3.Row) -> None:
        """The session (ended, cancelled or expired) no longer holds its operator, if any."""
        if row["operator_id"] is not None:
            fleet.free_operator(conn, row["operator_id"], row["id"], self.now())

    def release_session(self, conn: sqlite3.Connection, row: sqlite3.Row) -> None:
        """The session no longer holds its operator or its workspace."""
        self.free_operator_of(conn, row)
        self.release_if_idle(conn, row["operator_workspace_id"])

    def release_if_idle(self, conn: sqlite3.Connection, workspace_id: str | None) -> None:
        """BUSY → ONLINE once the workspace holds no ASSIGNED, LIVE or PAUSED session."""
        if workspace_id is None:
            return
        if self.operator_level(workspace_id):
            fleet.derive_workspace_availability(conn, workspace_id, self.now())
            return
        busy = conn.execute(
            f"SELECT 1 FROM sessions WHERE operator_workspace_id = ?"
            f" AND state IN ({','.join('?' * len(ACTIVE_STATES))}) LIMIT 1",
            (workspace_id, *ACTIVE_STATES),
        ).fetchone()
        if busy is None:
            self.release(conn, workspace_id)

    def release(self, conn: sqlite3.Connection, workspace_id: str) -> None:
        """BUSY → ONLINE unconditionally (an OFFLINE workspace stays OFFLINE); an
        operator-level workspace is derived from its operators instead."""
        if self.operator_level(workspace_id):
            fleet.derive_workspace_availability(conn, workspace_id, self.now())
            return
        conn.execute(
            "UPDATE workspaces SET availability_state = ?, idle_since = ?"
            " WHERE id = ? AND availability_state = ?",
            (
                AvailabilityState.ONLINE.value,
                ts(self.now()),
                workspace_id,
                AvailabilityState.BUSY.value,
            ),
        )

    def finish_pre_live(
        self, conn: sqlite3.Connection, rows: Iterable[sqlite3.Row], state: SessionState
    ) -> list[str]:
        """Move REQUESTED/ASSIGNED sessions to CANCELLED or EXPIRED; returns the video refs
        to close once the transaction has committed."""
        refs: list[str] = []
        for row in rows:
            conn.execute(
                "UPDATE sessions SET state = ?, ended_at = ? WHERE id = ?",
                (state.value, ts(self.now()), row["id"]),
            )
            if row["video_backend_ref"]:
                refs.append(row["video_backend_ref"])
        return refs

    async def close_inputs(self, refs: Iterable[str]) -> None:
        """Tear down video inputs after the state change committed; a failure is logged,
        not returned, because the session's new state already stands."""
        for ref in refs:
            try:
                await self.video.close_input(ref)
            except MediaError as exc:
                logger.warning("video input %s: close failed: %s", ref, exc)

    async def sweep_once(self) -> list[str]:
        """Expire every pre-LIVE session past createdAt + maxDurationSeconds; returns their ids."""
        now = self.now()
        candidates = self.store.all(
            f"SELECT * FROM sessions WHERE state IN ({','.join('?' * len(PRE_LIVE_STATES))})"
            " ORDER BY created_at, id",
            PRE_LIVE_STATES,
        )
        due = [
            row
            for row in candidates
            if parse_ts(row["created_at"]) + timedelta(seconds=row["max_duration_seconds"]) <= now
        ]
        if not due:
            return []
        with self.store.transaction() as conn:
            refs = self.finish_pre_live(conn, due, SessionState.EXPIRED)
            for row in due:
                self.release_session(conn, row)
        await self.close_inputs(refs)
        ids = [row["id"] for row in due]
        logger.info("expiry sweep: %d session(s) expired", len(ids))
        return ids

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except sqlite3.Error:
                # a locked or broken database: say so, and try again next period
                logger.exception("expiry sweep failed")
            await self.config.clock.sleep(self.config.sweep_interval_seconds)

    def _restore_video(self) -> None:
        """Hand the backend every input the store still calls open: after a restart on the
        same database, the whipUrls already given out must keep working."""
        rows = self.store.all(
            "SELECT id, video_backend_ref, whip_url, whep_url, assigned_at FROM sessions"
            f" WHERE state IN ({','.join('?' * len(ACTIVE_STATES))})"
            " AND video_backend_ref IS NOT NULL ORDER BY assigned_at, id",
            ACTIVE_STATES,
        )
        open_inputs = [
            OpenInput(
                session_id=row["id"],
                video=VideoInput(
                    ref=row["video_backend_ref"], whip_url=row["whip_url"], whep_url=row["whep_url"]
                ),
                created_at=parse_ts(row["assigned_at"]) or self.now(),
            )
            for row in rows
        ]
        self.video.restore(self.store, open_inputs)

    # ---- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Start the expiry sweeper and the loop watch (the app's lifespan calls this)."""
        if not self._background:
            loop = asyncio.get_running_loop()
            self._background = [
                loop.create_task(self._sweep_forever(), name="luxxon-stub-expiry-sweeper"),
                loop.create_task(watch_loop(), name="luxxon-stub-loop-watch"),
            ]

    async def stop(self) -> None:
        """Stop the background tasks, then close the video backend's connections; safe to
        call twice."""
        tasks, self._background = self._background, []
        for task in tasks:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise
        # `aclose` is optional in the VideoBackend protocol (stub/video.py)
        aclose = getattr(self.video, "aclose", None)
        if aclose is not None:
            await aclose()


LOOP_WATCH_PERIOD_S = 0.05
LOOP_HELD_LOG_S = 0.1
"""A wake-up this much later than asked is logged (WARNING) with how long the loop was held."""


async def watch_loop() -> None:
    """Wake every 50 ms and say when the event loop was held: a callback that ran long
    (parsing, logging, crypto on the loop) delays every request of the stub.

    The loop thread's own CPU time over the late interval is logged beside the delay:
    a busy machine that did not schedule the stub makes it late too, but only time
    spent running on the loop thread is a callback holding the loop."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + LOOP_WATCH_PERIOD_S
        cpu_before = time.thread_time()
        await asyncio.sleep(LOOP_WATCH_PERIOD_S)
        late = loop.time() - due
        if late > LOOP_HELD_LOG_S:
            on_cpu = time.thread_time() - cpu_before
            logger.warning("event loop held for %.3f s (%.3f s on the loop's CPU)", late, on_cpu)


def runtime(conn: HTTPConnection) -> StubRuntime:
    """The StubRuntime of the app serving this request."""
    stub: StubRuntime = conn.app.state.stub
    return stub


def json_data(model: Any) -> Any:
    """A model (or list of models) in wire form, for the envelope's `data`."""
    if isinstance(model, list):
        return [json_data(item) for item in model]
    return model.to_wire()


def ok(conn: HTTPConnection, data: Any, *, status: int = 200) -> JSONResponse:
    """The success envelope around `data` (a model, a list of models, or plain JSON)."""
    payload = json_data(data) if hasattr(data, "to_wire") or isinstance(data, list) else data
    return envelope(payload, runtime(conn).now(), status=status)
