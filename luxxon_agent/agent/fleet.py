"""OperatorRoster: per-operator dispatch, when the server advertises it.

With `per-operator-dispatch` in `GET /config` `features` (the stub's roadmap
extension, docs/api.md), each operator of a link is an operator of the server
too: its own availability and coverage (`PATCH /workspaces/:id/operators/:opId`),
its own heartbeat (`.../location`, a sequence per operator) and its own
sessions (accepted with its `operatorId`, paid on its own device key).

The roster knows which server operator each runner is: the operator registered
(`luxxon operators register`) for the runner's device address, neither revoked,
expired nor retired. A runner with none cannot be dispatched and says why. It
also remembers what it last told the server per operator, so an unchanged state
is not sent again; the Operator each heartbeat (and update) answers is checked
against it, so a revoke, an expiry, a retire or an availability changed behind
the agent's back is noticed within a heartbeat. The link asks it; it never runs
a loop of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from luxxon_agent.agent.context import ApiHealth
from luxxon_agent.agent.operator import OperatorRunner
from luxxon_agent.agent.statefile import StateFile
from luxxon_agent.clock import Clock
from luxxon_agent.errors import ApiError, LuxxonError, TransportError
from luxxon_agent.models import (
    AvailabilityState,
    ErrorCode,
    LocationHeartbeat,
    Operator,
    UpdateOperatorRequest,
)

logger = logging.getLogger(__name__)

RETIRED = "retired on the server"
REGISTER_AGAIN = "luxxon operators register a new one"


def refusal(operator: Operator, now: datetime) -> str | None:
    """Why the server will never dispatch this operator (retired, revoked, expired), or None."""
    if operator.retired_at is not None:
        return RETIRED
    if operator.revoked_at is not None:
        return f"device key revoked on the server ({REGISTER_AGAIN})"
    if operator.expires_at <= now:
        expired = operator.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"delegation expired at {expired} ({REGISTER_AGAIN})"
    return None


class FleetApi(Protocol):
    """The per-operator calls (AsyncLuxxonClient fits)."""

    async def list_operators(self, workspace_id: str) -> list[Operator]: ...

    async def update_operator(
        self, workspace_id: str, operator_id: str, request: UpdateOperatorRequest
    ) -> Operator: ...

    async def post_operator_location(
        self, workspace_id: str, operator_id: str, heartbeat: LocationHeartbeat
    ) -> Operator: ...


class OperatorRoster:
    def __init__(
        self,
        client: FleetApi,
        workspace_id: str,
        runners: list[OperatorRunner],
        device_addresses: Mapping[str, str],
        state: StateFile,
        api_health: ApiHealth,
        clock: Clock,
    ) -> None:
        self.client = client
        self.clock = clock
        self.workspace_id = workspace_id
        self.runners = runners
        self.device_addresses = {k: v.lower() for k, v in device_addresses.items()}
        self.state = state
        self.api_health = api_health
        self._ids: dict[str, str] = {}
        """Runner label -> the server operator's id."""
        self._problems: dict[str, str] = {}
        """Runner label -> why it has no server operator (unregistered, retired, revoked,
        expired)."""
        self._sent: dict[str, AvailabilityState] = {}

    # ---- who is who ----------------------------------------------------------------------

    async def refresh(self) -> None:
        """Match each runner to its registered operator (GET /workspaces/:id/operators)."""
        operators = await self.client.list_operators(self.workspace_id)
        self.api_health.ok()
        now = self.clock.now()
        usable: dict[str, Operator] = {}
        refused: dict[str, str] = {}
        """Device address -> why its (latest) operator is out, when none is usable."""
        for op in operators:
            reason = refusal(op, now)
            if reason is None:
                usable[op.device_address.lower()] = op
            else:
                refused[op.device_address.lower()] = reason
        claimed: dict[str, str] = {}
        for runner in self.runners:
            label = runner.label
            address = self.device_addresses.get(label)
            found = usable.get(address) if address else None
            self._ids.pop(label, None)
            if found is None:
                self._problems[label] = (refused.get(address) if address else None) or (
                    f"device key {address or '?'} is not a registered operator"
                    " (luxxon operators register)"
                )
            elif found.id in claimed:
                self._problems[label] = f"shares its device key with {claimed[found.id]}"
            else:
                claimed[found.id] = label
                self._ids[label] = found.id
                self._problems.pop(label, None)
        logger.info(
            "per-operator dispatch: %s",
            ", ".join(f"{r.label}={self._ids.get(r.label, 'none')}" for r in self.runners),
        )

    def operator_id(self, label: str) -> str | None:
        return self._ids.get(label)

    def label_of(self, operator_id: str) -> str | None:
        return next((label for label, id_ in self._ids.items() if id_ == operator_id), None)

    def problem(self, label: str) -> str | None:
        """Why the runner cannot be dispatched whatever its health, or None."""
        return self._problems.get(label)

    def released(self, label: str) -> None:
        """Its session is over: the server freed the operator by itself."""
        self._sent.pop(label, None)

    def sent(self, label: str) -> AvailabilityState | None:
        return self._sent.get(label)

    # ---- availability and heartbeat ---------------------------------------------------------

    async def set_availability(
        self, runner: OperatorRunner, desired: AvailabilityState, reason: str | None
    ) -> None:
        """Tell the server `desired` for this runner's operator (unless it was told already)."""
        operator_id = self._ids.get(runner.label)
        if operator_id is None or self._sent.get(runner.label) is desired:
            return
        coverage = runner.op.coverage
        request = (
            UpdateOperatorRequest(
                availability_state=desired,
                coverage_lat=coverage.lat,
                coverage_lng=coverage.lng,
                coverage_radius_meters=coverage.radius_m,
                kind=runner.op.device_kind,
            )
            if desired is AvailabilityState.ONLINE
            else UpdateOperatorRequest(availability_state=desired)
        )
        try:
            answer = await self.client.update_operator(self.workspace_id, operator_id, request)
        except (ApiError, TransportError) as exc:
            self.api_health.failed(exc)
            self._note_retired(runner.label, exc)
            logger.warning("%s: cannot go %s: %s", runner.label, desired.value, exc)
            return
        self.api_health.ok()
        previous = self._sent.get(runner.label)
        self._sent[runner.label] = desired
        if not self._still_as_sent(runner.label, answer):
            return
        # "OFFLINE: label: reason", as the workspace-level link words it
        if desired is AvailabilityState.OFFLINE:
            logger.warning(
                "operator %s: %s -> OFFLINE: %s: %s", operator_id, previous, runner.label, reason
            )
        else:
            logger.info("operator %s: %s -> %s: %s", operator_id, previous, desired, runner.label)

    async def heartbeat(self, runner: OperatorRunner, session_id: str | None) -> None:
        """POST the runner's fix as its operator's heartbeat (skipped without an accuracy)."""
        operator_id = self._ids.get(runner.label)
        if operator_id is None:
            return
        beat = runner.heartbeat(self.state, operator_id, session_id)
        if beat is None:
            return
        try:
            answer = await self.client.post_operator_location(self.workspace_id, operator_id, beat)
        except ApiError as exc:
            self.api_health.failed(exc)
            if self._note_retired(runner.label, exc):
                return
            if exc.status == 409:
                logger.warning(
                    "%s: heartbeat sequence %d refused as stale; jumping ahead",
                    runner.label,
                    beat.sequence,
                )
                self.state.skip_sequence(operator_id)
            else:
                logger.warning("%s: heartbeat: %s", runner.label, exc)
        except TransportError as exc:
            self.api_health.failed(exc)
            logger.warning("%s: heartbeat: %s", runner.label, exc)
        else:
            self.api_health.ok()
            self._still_as_sent(runner.label, answer)

    def _still_as_sent(self, label: str, operator: Operator) -> bool:
        """Check the server's Operator against what we told it; False (and the runner is
        out, with the reason, or its availability sent again) when it is not."""
        reason = refusal(operator, self.clock.now())
        if reason is not None:
            if self._ids.pop(label, None) is not None:
                logger.warning("%s: the operator takes no work: %s", label, reason)
            self._problems[label] = reason
            self._sent.pop(label, None)
            return False
        sent = self._sent.get(label)
        expected = {
            AvailabilityState.ONLINE: {AvailabilityState.ONLINE, AvailabilityState.BUSY},
            AvailabilityState.OFFLINE: {AvailabilityState.OFFLINE},
        }
        if sent is not None and operator.availability_state not in expected[sent]:
            logger.warning(
                "%s: the server has the operator %s, not %s; sending it again",
                label,
                operator.availability_state.value,
                sent.value,
            )
            self._sent.pop(label, None)
            return False
        return True

    def _note_retired(self, label: str, exc: LuxxonError) -> bool:
        """True (and the runner is out for good) when the server says it was retired."""
        if not isinstance(exc, ApiError) or exc.code != ErrorCode.OPERATOR_RETIRED:
            return False
        if self._ids.pop(label, None) is not None:
            logger.warning("%s: the operator was retired on the server; it takes no work", label)
        self._problems[label] = RETIRED
        self._sent.pop(label, None)
        return True
