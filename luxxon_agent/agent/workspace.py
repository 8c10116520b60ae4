"""WorkspaceLink: the operators that share one API key, hence one workspace.

Availability, the location heartbeat (its sequence is per workspace) and
the intake of sessions are workspace-level in the API, so they live here;
each operator then serves its own session. The link:

- goes ONLINE with the first healthy free operator's coverage and device kind
  when one can serve, OFFLINE (reason logged and shown) when none can;
- sends `POST /workspaces/:id/location` about every 2 s with a sequence that
  stays monotone across restarts (`StateFile.next_sequence`);
- polls `GET /sessions`: ASSIGNED sessions of this workspace go to a free,
  healthy operator (preferring one whose coverage holds the point), REQUESTED
  ones are accepted when an operator's auto-accept policy allows it;
- recovers on start what the state file names (see `recover`); a LIVE session
  whose record says enough is resumed before the API is even reached
  (`resume_offline`), so an outage across a restart loses no sampling.

The link alone owns which operator holds which session: taking one, it puts
a `SessionAssigned` event on the supervisor's queue; the supervisor runs it
and calls `release(label)` when it is over (docs/architecture.md).

When the server advertises per-operator dispatch (`GET /config` `features`),
availability, coverage and heartbeat are per operator instead (an
`OperatorRoster`, agent/fleet.py): each free healthy operator is ONLINE on its
own, sessions offered or dispatched to an operator are served by it, and
accept names it, so the operators serve their sessions in parallel. Without
the feature the link behaves as described above, unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from luxxon_agent.agent.config import AgentConfig, AssignedOnRestart
from luxxon_agent.agent.context import (
    ApiHealth,
    ServerFacts,
    SessionApi,
    SessionContext,
    SessionPolicy,
)
from luxxon_agent.agent.fleet import FleetApi, OperatorRoster
from luxxon_agent.agent.operator import OperatorRunner
from luxxon_agent.agent.statefile import StateFile
from luxxon_agent.agent.status import Availability
from luxxon_agent.backoff import Backoff
from luxxon_agent.clock import Clock, sleep_or_event
from luxxon_agent.errors import ApiError, AuthError, TransportError
from luxxon_agent.models import (
    AvailabilityState,
    CancelAllResult,
    Feature,
    LocationHeartbeat,
    Me,
    Scope,
    Session,
    SessionState,
    UpdateWorkspaceRequest,
    Workspace,
)

logger = logging.getLogger(__name__)

CONNECT_BACKOFF = Backoff(initial=1.0, maximum=30.0)
REQUIRED_SCOPES = (Scope.SESSIONS_OPERATE, Scope.SESSIONS_READ)


class WorkspaceApi(SessionApi, FleetApi, Protocol):
    """The calls a link makes, besides its sessions' and, with per-operator dispatch,
    its roster's (AsyncLuxxonClient fits)."""

    async def me(self) -> Me: ...

    async def list_sessions(self, state: SessionState | None = None) -> list[Session]: ...

    async def accept(
        self,
        session_id: str,
        operator_workspace_id: str | None = None,
        *,
        operator_id: str | None = None,
    ) -> Session: ...

    async def cancel(self, session_id: str) -> Session: ...

    async def cancel_all_assignments(self) -> CancelAllResult: ...

    async def update_workspace(
        self, workspace_id: str, request: UpdateWorkspaceRequest
    ) -> Workspace: ...

    async def post_location(self, workspace_id: str, heartbeat: LocationHeartbeat) -> None: ...


def _key_workspace(me: Me) -> str:
    """The workspace of the operator API key GET /me describes; AuthError for anything else."""
    if me.kind != "api_key" or not me.workspace_id:
        raise AuthError(
            "the agent's credential is not a workspace API key; mint one with "
            "`luxxon keys create` and point api.key_file at it"
        )
    missing = [s.value for s in REQUIRED_SCOPES if s not in me.scopes]
    if missing:
        raise AuthError(f"the API key lacks scope(s) {', '.join(missing)}")
    return me.workspace_id


@dataclass(frozen=True)
class SessionAssigned:
    """A link took `session` for `runner`: the supervisor runs it with `context`."""

    link: WorkspaceLink
    runner: OperatorRunner
    session: Session
    context: SessionContext


@dataclass(frozen=True)
class OperatorView:
    """What the link decided about one operator, for the status."""

    workspace_id: str | None
    availability: Availability
    reason: str | None
    """Why the operator cannot serve, at the last check."""
    session_id: str | None
    operator_id: str | None = None
    """The server's operator it is, with per-operator dispatch."""


class WorkspaceLink:
    def __init__(
        self,
        client: WorkspaceApi,
        operators: list[OperatorRunner],
        config: AgentConfig,
        state: StateFile,
        clock: Clock,
        api_health: ApiHealth,
        assignments: asyncio.Queue[SessionAssigned],
        device_addresses: dict[str, str] | None = None,
    ) -> None:
        self.client = client
        self.operators = operators
        self.config = config
        self.state = state
        self.clock = clock
        self.api_health = api_health
        self.server = ServerFacts(client, api_health)
        self._assignments = assignments
        self.workspace_id: str | None = None
        self._sent: AvailabilityState | None = None
        self._held: dict[str, str] = {}
        """Operator label -> the session it serves (or is about to)."""
        self._reasons: dict[str, str | None] = {}
        """Operator label -> why it cannot serve (None: it can), at the last check."""
        self.recovered = False
        """Set once `recover()` went through (the state file's sessions are handled)."""
        self._changed = asyncio.Event()
        self._device_addresses = device_addresses or {}
        """Operator label -> the address of the device key that signs its telemetry."""
        self.roster: OperatorRoster | None = None
        """Set by `connect()` when the server advertises per-operator dispatch."""

    def __repr__(self) -> str:
        return f"WorkspaceLink({self.workspace_id or '?'}, {[o.label for o in self.operators]})"

    def view(self, label: str) -> OperatorView:
        session_id = self._held.get(label)
        reason = self._reasons.get(label)
        if session_id is not None:
            availability = Availability.BUSY
        elif label not in self._reasons:
            availability = Availability.STARTING
        elif reason:
            availability = Availability.OFFLINE
        elif self.roster is not None and self.roster.sent(label) is not AvailabilityState.ONLINE:
            availability = Availability.STARTING  # healthy, not yet ONLINE on the server
        else:
            availability = Availability.ONLINE
        operator_id = self.roster.operator_id(label) if self.roster else None
        return OperatorView(self.workspace_id, availability, reason, session_id, operator_id)

    def release(self, label: str) -> None:
        """The operator's session is over: it is free, and the server released the
        workspace to ONLINE by itself (our view of availability is stale)."""
        self._held.pop(label, None)
        self._sent = None
        if self.roster is not None:
            self.roster.released(label)
        self._changed.set()

    @property
    def _workspace(self) -> str:
        """The workspace id; known from `connect()` on, before which no loop runs."""
        assert self.workspace_id is not None, "the link is not connected"
        return self.workspace_id

    def _free(self, op: OperatorRunner) -> bool:
        return op.label not in self._held

    # ---- connect and recover ---------------------------------------------------------

    async def connect(self, stop: asyncio.Event) -> bool:
        """Learn the workspace from GET /me (retrying while the API is away); False if stopped."""
        attempt = 0
        while not stop.is_set():
            try:
                me = await self.client.me()
                server = await self.client.config()
                workspace_id = _key_workspace(me)
                # the roster is part of connecting: a link with a workspace id is connected
                # (the supervisor does not connect it again), and a fleet whose operator list
                # failed must retry here, not run on as workspace-level
                roster = (
                    await self._roster(workspace_id)
                    if server.has_feature(Feature.PER_OPERATOR_DISPATCH)
                    else None
                )
            except TransportError as exc:
                self.api_health.failed(exc)
                logger.warning("API not reachable (%s); retrying", exc)
            except ApiError as exc:
                self.api_health.failed(exc)
                if exc.status in (401, 403):
                    raise AuthError(f"the API refused the agent's key: {exc}") from None
                logger.warning("API error on connect: %s; retrying", exc)
            else:
                self.api_health.ok()
                self.server.learn(server)
                self.roster = roster
                self.workspace_id = workspace_id
                logger.info("%r connected (key %s)", self, me.key_id)
                return True
            if await sleep_or_event(self.clock, CONNECT_BACKOFF.delay(attempt), stop):
                return False
            attempt += 1
        return False

    async def _roster(self, workspace_id: str) -> OperatorRoster:
        roster = OperatorRoster(
            self.client,
            workspace_id,
            self.operators,
            self._device_addresses,
            self.state,
            self.api_health,
            self.clock,
        )
        await roster.refresh()
        return roster

    def resume_offline(self) -> None:
        """Resume at once the LIVE sessions the state file describes fully (no API call).

        The session run samples into the spool straight away and reconciles
        with the API (state, producer token, video, upload) when it answers;
        `recover()` then leaves these operators alone.
        """
        for op in self.operators:
            record = self.state.record(op.label)
            if not self._free(op) or not record.resumable():
                continue
            try:
                session = Session.model_validate(record.session)
            except ValueError as exc:
                logger.warning("%s: state file session unreadable (%s)", op.label, exc)
                continue
            self.server.assume_chain_id(record.chain_id)
            logger.info("%s: resuming LIVE session %s from the state file", op.label, session.id)
            self._take(op, session)

    async def recover(self) -> None:
        """Resume or clean up what the state file says each operator was doing."""
        for op in self.operators:
            record = self.state.record(op.label)
            if record.session_id is None or not self._free(op):
                continue  # nothing recorded, or taken by an earlier, interrupted recover()
            try:
                session = await self.client.get_session(record.session_id)
            except ApiError as exc:
                if exc.status == 404:
                    logger.info(
                        "%s: session %s is gone; forgetting it", op.label, record.session_id
                    )
                    self.state.set_session(op.label, None, None, None)
                    continue
                raise
            self.api_health.ok()
            if session.state.is_running:
                logger.info("%s: resuming LIVE session %s", op.label, session.id)
                self._take(op, session)
            elif session.state is SessionState.ASSIGNED:
                if self.config.assigned_on_restart_for(op.op) is AssignedOnRestart.START:
                    logger.info("%s: starting ASSIGNED session %s", op.label, session.id)
                    self._take(op, session)
                else:
                    logger.info("%s: cancelling ASSIGNED session %s (policy)", op.label, session.id)
                    await self._cancel(session.id)
                    self.state.set_session(op.label, None, None, None)
            else:
                logger.info(
                    "%s: session %s is %s; cleaning up", op.label, session.id, session.state
                )
                self.state.set_session(op.label, None, None, None)
        if self.config.agent.reclaim_stuck:
            await self._reclaim()
        self.recovered = True

    async def _reclaim(self) -> None:
        """Cancel ASSIGNED leftovers no operator here owns (a crash before the state write)."""
        owned = set(self._held.values())
        sessions = await self.client.list_sessions(SessionState.ASSIGNED)
        self.api_health.ok()
        leftovers = [
            s
            for s in sessions
            if s.state is SessionState.ASSIGNED
            and s.operator_workspace_id == self.workspace_id
            and s.id not in owned
        ]
        if not leftovers:
            return
        # cancel-all would also cancel the ASSIGNED sessions we just decided to start
        if owned & {s.id for s in sessions if s.state is SessionState.ASSIGNED}:
            for session in leftovers:
                await self._cancel(session.id)
            return
        result = await self.client.cancel_all_assignments()
        logger.info("reclaimed stuck workspace: cancelled %d ASSIGNED session(s)", result.count)

    async def _cancel(self, session_id: str) -> None:
        try:
            await self.client.cancel(session_id)
        except ApiError as exc:
            if exc.code not in ("INVALID_STATE", "SESSION_NOT_FOUND", "NOT_FOUND"):
                raise
            logger.info("cancel %s: %s", session_id, exc.code)

    # ---- running ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Availability, heartbeat and intake until `stop`; sessions run as their own tasks."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._availability_loop(stop), name=f"{self!r}.availability")
            group.create_task(self._heartbeat_loop(stop), name=f"{self!r}.heartbeat")
            group.create_task(self._intake_loop(stop), name=f"{self!r}.intake")

    def _take(self, op: OperatorRunner, session: Session) -> None:
        """`op` holds `session` from now on; the supervisor is told to run it."""
        self._held[op.label] = session.id
        context = SessionContext(
            client=self.client,
            clock=self.clock,
            state=self.state,
            server=self.server,
            api_health=self.api_health,
            policy=SessionPolicy(
                poll_seconds=self.config.agent.poll_seconds,
                on_sigterm=self.config.on_sigterm_for(op.op),
            ),
            workspace_id=self.workspace_id,
        )
        self._assignments.put_nowait(SessionAssigned(self, op, session, context))
        self._changed.set()

    def assess_health(self) -> None:
        """Judge every operator now (a fresh fix, the camera, the disk)."""
        for op in self.operators:
            problem = self.roster.problem(op.label) if self.roster else None
            self._reasons[op.label] = problem or op.unhealthy_reason()

    def _healthy(self, op: OperatorRunner) -> bool:
        return self._reasons.get(op.label) is None

    def _desired(self) -> tuple[AvailabilityState | None, str | None, OperatorRunner | None]:
        """What to tell the API: (state or None when BUSY is the server's call, reason, op)."""
        if self._held:
            return None, None, None  # the server holds us BUSY while a session is ours
        reasons: list[str] = []
        for op in self.operators:
            reason = self._reasons.get(op.label)
            if reason is None:
                return AvailabilityState.ONLINE, None, op
            reasons.append(f"{op.label}: {reason}")
        return AvailabilityState.OFFLINE, "; ".join(reasons), None

    async def _availability_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._changed.clear()
            self.assess_health()
            if self.roster is not None:
                await self._set_operators_availability(self.roster)
            else:
                desired, reason, op = self._desired()
                if desired is not None and desired is not self._sent:
                    await self._set_availability(desired, reason, op)
            # wakes early when told (a session ended, an operator was taken)
            if await sleep_or_event(
                self.clock, self.config.agent.poll_seconds, stop, self._changed
            ):
                break

    async def _set_operators_availability(self, roster: OperatorRoster) -> None:
        """Per operator: ONLINE while free and healthy, OFFLINE otherwise; one holding a
        session is left alone (the server holds it BUSY)."""
        for op in self.operators:
            if not self._free(op):
                continue
            reason = self._reasons.get(op.label)
            desired = AvailabilityState.OFFLINE if reason else AvailabilityState.ONLINE
            await roster.set_availability(op, desired, reason)

    async def _set_availability(
        self, desired: AvailabilityState, reason: str | None, op: OperatorRunner | None
    ) -> None:
        if desired is AvailabilityState.ONLINE and op is not None:
            request = UpdateWorkspaceRequest(
                availability_state=desired,
                coverage_lat=op.op.coverage.lat,
                coverage_lng=op.op.coverage.lng,
                coverage_radius_meters=op.op.coverage.radius_m,
                device_kind=op.op.device_kind,
            )
        else:
            request = UpdateWorkspaceRequest(availability_state=desired)
        try:
            await self.client.update_workspace(self._workspace, request)
        except (ApiError, TransportError) as exc:
            self.api_health.failed(exc)
            logger.warning("%r: cannot go %s: %s", self, desired.value, exc)
            return
        self.api_health.ok()
        previous, self._sent = self._sent, desired
        if desired is AvailabilityState.OFFLINE:
            logger.warning("%r: %s -> OFFLINE: %s", self, previous, reason)
        else:
            logger.info("%r: %s -> %s", self, previous, desired.value)

    async def go_offline(self, reason: str) -> None:
        """On the way out, once sessions are over: no dispatch to a stopped agent.

        Not while a session is left LIVE for the restart (the server keeps us BUSY).
        """
        recorded = [op for op in self.operators if self.state.record(op.label).session_id]
        if self.workspace_id is None:
            return
        if self.roster is not None:  # per operator: the others may still be serving
            for op in self.operators:
                if self._free(op) and op not in recorded:
                    await self.roster.set_availability(op, AvailabilityState.OFFLINE, reason)
            return
        if recorded or self._held:
            return
        await self._set_availability(AvailabilityState.OFFLINE, reason, None)

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        while not await sleep_or_event(self.clock, self.config.agent.heartbeat_seconds, stop):
            if self.roster is not None:
                for op in self.operators:
                    if not self._free(op) or self.roster.sent(op.label) is AvailabilityState.ONLINE:
                        await self.roster.heartbeat(op, self._held.get(op.label))
                continue
            serving = [op for op in self.operators if not self._free(op)]
            if not serving and self._sent is not AvailabilityState.ONLINE:
                continue  # the contract wants heartbeats while ONLINE (or serving)
            await self._heartbeat(serving)

    async def _heartbeat(self, serving: list[OperatorRunner]) -> None:
        for op in serving + self.operators:
            beat = op.heartbeat(self.state, self._workspace, self._held.get(op.label))
            if beat is not None:
                break
        else:
            return
        try:
            await self.client.post_location(self._workspace, beat)
        except ApiError as exc:
            self.api_health.failed(exc)
            if exc.status == 409:
                logger.warning(
                    "heartbeat sequence %d refused as stale; jumping ahead", beat.sequence
                )
                self.state.skip_sequence(self._workspace)
            else:
                logger.warning("heartbeat: %s", exc)
        except TransportError as exc:
            self.api_health.failed(exc)
            logger.warning("heartbeat: %s", exc)
        else:
            self.api_health.ok()

    async def _intake_loop(self, stop: asyncio.Event) -> None:
        while not await sleep_or_event(self.clock, self.config.agent.poll_seconds, stop):
            if not any(self._free(op) for op in self.operators):
                continue
            try:
                sessions = await self.client.list_sessions()
            except (ApiError, TransportError) as exc:
                self.api_health.failed(exc)
                logger.warning("intake: %s", exc)
                continue
            self.api_health.ok()
            # oldest first: the consumer who waited longest is served first
            for session in sorted(sessions, key=lambda s: s.created_at):
                if stop.is_set():
                    return
                await self._consider(session)

    def _dispatched_to(self, session: Session) -> list[OperatorRunner] | None:
        """The runners a session made out to one operator may go to (None: not made out)."""
        if session.operator_id is None:
            return None
        label = self.roster.label_of(session.operator_id) if self.roster else None
        return [op for op in self.operators if op.label == label and self._free(op)]

    async def _consider(self, session: Session) -> None:
        if session.id in self._held.values():
            return
        point = (session.requested_lat, session.requested_lng)
        healthy = [op for op in self.operators if self._free(op) and self._healthy(op)]
        covering = [op for op in healthy if op.op.coverage.contains(*point)]
        named = self._dispatched_to(session)
        if named is not None:  # per-operator dispatch: that operator if healthy, or nobody
            healthy = covering = [op for op in named if self._healthy(op)]
        if session.state is SessionState.ASSIGNED and (
            session.operator_workspace_id == self.workspace_id
        ):
            candidates = covering or healthy
            if candidates:
                logger.info("%s: dispatched session %s", candidates[0].label, session.id)
                self._take(candidates[0], session)
            return
        if session.state is not SessionState.REQUESTED:
            return
        for op in covering:
            policy = op.op.auto_accept
            if not policy.enabled:
                continue
            if session.rate_per_second_micro_usdc < policy.min_rate_micro_usdc:
                continue
            if session.max_duration_seconds > policy.max_duration_seconds:
                continue
            self._held[op.label] = session.id  # claimed before the await: no double accept
            operator_id = self.roster.operator_id(op.label) if self.roster else None
            accepted: Session | None = None
            try:
                accepted = await self.client.accept(
                    session.id, self.workspace_id, operator_id=operator_id
                )
            except (ApiError, TransportError) as exc:
                logger.info("%s: could not accept %s: %s", op.label, session.id, exc)
                return
            finally:
                if accepted is None:  # refused, cancelled or a bug: the claim goes too
                    self._held.pop(op.label, None)
            self.api_health.ok()
            logger.info("%s: auto-accepted session %s", op.label, session.id)
            self._take(op, accepted)
            return
