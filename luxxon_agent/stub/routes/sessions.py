"""Sessions: the consumer's create/dispatch, the operator's accept/start/end, cancel, frames.

Illegal transitions answer 409 INVALID_STATE and change nothing: every check
runs before the one transaction that writes, and nothing awaits in between.
"""

from __future__ import annotations

import json
import sqlite3
from email.utils import format_datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import field_validator

from luxxon_agent.errors import MediaError
from luxxon_agent.geo import haversine_meters
from luxxon_agent.models import (
    AcceptRequest,
    AvailabilityState,
    CancelAllResult,
    CreateSessionRequest,
    ErrorCode,
    ProducerToken,
    Role,
    Scope,
    Session,
    SessionState,
    StartResult,
)
from luxxon_agent.stub import fleet
from luxxon_agent.stub.auth import (
    AnyCaller,
    Operator,
    Principal,
    Requester,
    SessionReader,
)
from luxxon_agent.stub.http_error import HttpError
from luxxon_agent.stub.metering import meter_session
from luxxon_agent.stub.openapi import Envelope, errors
from luxxon_agent.stub.runtime import LIVE_STATES, PRE_LIVE_STATES, StubRuntime, ok, runtime
from luxxon_agent.stub.settlement import settle
from luxxon_agent.stub.store import ts

router = APIRouter(tags=["sessions"])

FRAME_AGE_HEADER = "X-Lx-Frame-Age-Ms"
"""Milliseconds since the frame served by /frame arrived (Age has whole seconds only)."""
FRAME_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The latest decoded frame; Last-Modified, Age and X-Lx-Frame-Age-Ms"
        " say how old it is",
        "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
    },
    **errors(404),
}


def visible_session(stub: StubRuntime, session_id: str, workspace_id: str | None) -> sqlite3.Row:
    """The session if the caller's workspace is its consumer or its operator; 404 otherwise,
    whether or not it exists, so other workspaces' ids leak nothing."""
    row = stub.store.one(
        "SELECT * FROM sessions WHERE id = ? AND (consumer_workspace_id = ?"
        " OR operator_workspace_id = ?)",
        (session_id, workspace_id, workspace_id),
    )
    if row is None:
        raise HttpError(404, ErrorCode.SESSION_NOT_FOUND, "no such session", session_id)
    return row


def invalid_state(row: sqlite3.Row, action: str) -> HttpError:
    return HttpError(
        409, ErrorCode.INVALID_STATE, f"cannot {action} a {row['state']} session", row["id"]
    )


def require_operator(row: sqlite3.Row, found: Principal) -> None:
    if row["operator_workspace_id"] != found.workspace_id:
        raise HttpError(
            403, ErrorCode.NOT_AUTHORIZED, "only the session's operator workspace may do this"
        )


def require_side(row: sqlite3.Row, found: Principal) -> None:
    """Either side may end or cancel: the operator with sessions:operate, the consumer
    with sessions:request."""
    sides = []
    if row["operator_workspace_id"] == found.workspace_id:
        sides.append(Scope.SESSIONS_OPERATE)
    if row["consumer_workspace_id"] == found.workspace_id:
        sides.append(Scope.SESSIONS_REQUEST)
    if not any(scope in found.scopes for scope in sides):
        needed = " or ".join(scope.value for scope in sides)
        raise HttpError(403, ErrorCode.NOT_AUTHORIZED, f"this API key lacks the {needed} scope")


def _session_row(stub: StubRuntime, session_id: str) -> sqlite3.Row:
    row = stub.store.one("SELECT * FROM sessions WHERE id = ?", (session_id,))
    if row is None:  # only called right after a write to this id
        raise HttpError(404, ErrorCode.SESSION_NOT_FOUND, "no such session", session_id)
    return row


def _session_ok(
    request: Request, stub: StubRuntime, session_id: str, found: Principal, status: int = 200
) -> JSONResponse:
    """The session as written just now, as the caller's side sees it."""
    session = stub.session(_session_row(stub, session_id), found.workspace_id)
    return ok(request, session, status=status)


def _no_operator_dispatch(field: str) -> HttpError:
    return HttpError(
        400, ErrorCode.INVALID_INPUT, f"{field}: this server has no per-operator dispatch"
    )


def _workspace_of(stub: StubRuntime, found: Principal) -> sqlite3.Row:
    row = stub.store.one(
        "SELECT * FROM workspaces WHERE id = ? AND deleted_at IS NULL", (found.workspace_id,)
    )
    if row is None:
        raise HttpError(404, ErrorCode.WORKSPACE_NOT_FOUND, "no such workspace")
    return row


# ---- consumer side ------------------------------------------------------------------


class CreateSessionBody(CreateSessionRequest):
    """The request as it comes off the wire: the rate is a decimal string, as the schema
    says (Python callers of the shared model may pass an int)."""

    @field_validator("rate_per_second_micro_usdc", mode="before")
    @classmethod
    def _decimal_string(cls, value: object) -> object:
        if value is not None and not isinstance(value, str):
            raise ValueError('a decimal string of micro-USDC, such as "1000"')
        return value


@router.post("/sessions", status_code=201, response_model=Envelope[Session], responses=errors(404))
async def create_session(
    body: CreateSessionBody, request: Request, found: Requester
) -> JSONResponse:
    stub = runtime(request)
    workspace = _workspace_of(stub, found)
    if Role.CONSUMER.value not in json.loads(workspace["roles"]):
        raise HttpError(403, ErrorCode.NOT_AUTHORIZED, "only CONSUMER workspaces request sessions")
    rate = body.rate_per_second_micro_usdc or stub.config.default_rate_per_second_micro_usdc
    radius = body.geofence_radius_meters or stub.config.default_geofence_radius_meters
    session_id = stub.new_id("ses")
    with stub.store.transaction() as conn:
        conn.execute(
            "INSERT INTO sessions (id, consumer_workspace_id, state, max_duration_seconds,"
            " wait_timeout_seconds, rate_per_second_micro_usdc, hold_micro_usdc, requested_lat,"
            " requested_lng, geofence_radius_meters, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                session_id,
                found.workspace_id,
                SessionState.REQUESTED.value,
                body.max_duration_seconds,
                body.wait_timeout_seconds,
                rate,
                rate * body.max_duration_seconds,
                body.lat,
                body.lng,
                radius,
                ts(stub.now()),
            ),
        )
    return _session_ok(request, stub, session_id, found, status=201)


@router.post(
    "/sessions/{session_id}/dispatch",
    response_model=Envelope[Session],
    responses=errors(404, 409, 503),
)
async def dispatch(session_id: str, request: Request, found: Requester) -> JSONResponse:
    stub = runtime(request)
    row = visible_session(stub, session_id, found.workspace_id)
    if row["consumer_workspace_id"] != found.workspace_id:
        raise HttpError(403, ErrorCode.NOT_AUTHORIZED, "only the consumer dispatches a session")
    if row["state"] != SessionState.REQUESTED.value:
        raise invalid_state(row, "dispatch")
    now = stub.now()
    lat, lng = row["requested_lat"], row["requested_lng"]
    operator = (
        fleet.longest_idle_covering(stub.store, lat, lng, now)
        if stub.config.operator_dispatch
        else None
    )
    if operator is not None:
        chosen_id, operator_id = operator["workspace_id"], operator["id"]
    else:
        chosen_id, operator_id = _workspace_level_supplier(stub, lat, lng), None
    with stub.store.transaction() as conn:
        conn.execute(
            "UPDATE sessions SET operator_workspace_id = ?, operator_id = ?, dispatched_at = ?"
            " WHERE id = ?",
            (chosen_id, operator_id, ts(now), session_id),
        )
        if operator_id is not None:
            fleet.offered(conn, "operators", operator_id, now)
        else:
            fleet.offered(conn, "workspaces", chosen_id, now)
    return _session_ok(request, stub, session_id, found)


def _workspace_level_supplier(stub: StubRuntime, lat: float, lng: float) -> str:
    """Today's dispatch: the longest-idle ONLINE SUPPLIER workspace covering the point.
    An operator-level workspace is left out: its operators were asked first."""
    suppliers = stub.store.all(
        "SELECT * FROM workspaces WHERE availability_state = ? AND deleted_at IS NULL"
        " AND coverage_lat IS NOT NULL AND coverage_lng IS NOT NULL"
        " AND coverage_radius_meters IS NOT NULL"
        " ORDER BY idle_since IS NULL, idle_since, last_offered_at IS NOT NULL, last_offered_at,"
        " created_at, id",
        (AvailabilityState.ONLINE.value,),
    )
    chosen = next(
        (
            ws
            for ws in suppliers
            if Role.SUPPLIER.value in json.loads(ws["roles"])
            and haversine_meters(lat, lng, ws["coverage_lat"], ws["coverage_lng"])
            <= ws["coverage_radius_meters"]
            and not stub.operator_level(ws["id"])
        ),
        None,
    )
    if chosen is None:
        raise HttpError(
            503, ErrorCode.NO_COVERAGE, "no ONLINE supplier covers this point", f"{lat},{lng}"
        )
    return str(chosen["id"])


# ---- reads ----------------------------------------------------------------------------


@router.get("/sessions", response_model=Envelope[list[Session]])
async def list_sessions(
    request: Request,
    found: SessionReader,
    state: SessionState | None = None,
    operator_id: str | None = Query(
        None,
        alias="operatorId",
        min_length=1,
        max_length=64,
        description="Sessions of this operator",
    ),
) -> JSONResponse:
    stub = runtime(request)
    if operator_id is not None and not stub.config.operator_dispatch:
        raise _no_operator_dispatch("operatorId")
    sql = "SELECT * FROM sessions WHERE (consumer_workspace_id = ? OR operator_workspace_id = ?)"
    params: tuple[str | None, ...] = (found.workspace_id, found.workspace_id)
    if state is not None:
        sql += " AND state = ?"
        params += (state.value,)
    if operator_id is not None:
        sql += " AND operator_id = ?"
        params += (operator_id,)
    rows = stub.store.all(sql + " ORDER BY created_at DESC, id DESC", params)
    return ok(request, [stub.session(row, found.workspace_id) for row in rows])


@router.post("/sessions/cancel-all-assignments", response_model=Envelope[CancelAllResult])
async def cancel_all_assignments(request: Request, found: Operator) -> JSONResponse:
    """Seed, "Reclaim a stuck workspace": every ASSIGNED session of this operator workspace
    is cancelled, the workspace goes back to ONLINE, LIVE sessions are left alone. Each
    operator holding one of them is freed (and the workspace's state derived again)."""
    stub = runtime(request)
    assigned = stub.store.all(
        "SELECT * FROM sessions WHERE operator_workspace_id = ? AND state = ?"
        " ORDER BY created_at, id",
        (found.workspace_id, SessionState.ASSIGNED.value),
    )
    with stub.store.transaction() as conn:
        refs = stub.finish_pre_live(conn, assigned, SessionState.CANCELLED)
        for row in assigned:
            stub.free_operator_of(conn, row)
        stub.release(conn, str(found.workspace_id))
    await stub.close_inputs(refs)
    ids = [row["id"] for row in assigned]
    return ok(request, CancelAllResult(count=len(ids), cancelled=ids))


@router.get("/sessions/{session_id}", response_model=Envelope[Session], responses=errors(404))
async def get_session(session_id: str, request: Request, found: SessionReader) -> JSONResponse:
    stub = runtime(request)
    row = visible_session(stub, session_id, found.workspace_id)
    return ok(request, stub.session(row, found.workspace_id))


# ---- operator side --------------------------------------------------------------------


@router.post(
    "/sessions/{session_id}/accept",
    response_model=Envelope[Session],
    responses=errors(404, 409, 502),
)
async def accept(
    session_id: str,
    request: Request,
    found: Operator,
    body: AcceptRequest | None = None,
) -> JSONResponse:
    stub = runtime(request)
    if body is not None and body.operator_workspace_id not in (None, found.workspace_id):
        raise HttpError(
            403,
            ErrorCode.WORKSPACE_MISMATCH,
            "operatorWorkspaceId is not the workspace you act for",
            body.operator_workspace_id,
        )
    row = visible_session(stub, session_id, found.workspace_id)
    require_operator(row, found)
    if row["state"] != SessionState.REQUESTED.value:
        raise invalid_state(row, "accept")
    operator = _accepting_operator(stub, row, found, body.operator_id if body else None)
    if operator is None:
        workspace = _workspace_of(stub, found)
        if workspace["availability_state"] == AvailabilityState.OFFLINE.value:
            raise HttpError(
                409,
                ErrorCode.INVALID_STATE,
                "workspace is OFFLINE; go ONLINE to accept",
                session_id,
            )
    try:
        video = stub.video.create_input(session_id)
    except MediaError as exc:
        raise HttpError(
            502, ErrorCode.VIDEO_ERROR, "could not create the video input", str(exc)
        ) from exc
    now = ts(stub.now())
    with stub.store.transaction() as conn:
        conn.execute(
            "UPDATE sessions SET state = ?, assigned_at = ?, video_backend_ref = ?,"
            " whip_url = ?, whep_url = ?, operator_id = ? WHERE id = ?",
            (
                SessionState.ASSIGNED.value,
                now,
                video.ref,
                video.whip_url,
                video.whep_url,
                None if operator is None else operator["id"],
                session_id,
            ),
        )
        if operator is None:
            conn.execute(
                "UPDATE workspaces SET availability_state = ? WHERE id = ?",
                (AvailabilityState.BUSY.value, found.workspace_id),
            )
        else:
            fleet.hold_session(conn, operator["id"], session_id)
            fleet.derive_workspace_availability(conn, operator["workspace_id"], stub.now())
    return _session_ok(request, stub, session_id, found)


def _accepting_operator(
    stub: StubRuntime, row: sqlite3.Row, found: Principal, named: str | None
) -> sqlite3.Row | None:
    """The operator that accepts the session, or None for a workspace-level accept.

    A session dispatched to an operator is accepted for that operator only; else the
    named one, else (an operator-level workspace) its longest-idle free ONLINE operator.
    """
    if named is not None and not stub.config.operator_dispatch:
        raise _no_operator_dispatch("operatorId")
    dispatched_to = row["operator_id"]
    if dispatched_to is not None:
        if named not in (None, dispatched_to):
            raise HttpError(
                409,
                ErrorCode.CONFLICT,
                "operatorId: the session was dispatched to another operator",
                dispatched_to,
            )
        named = dispatched_to
    now = stub.now()
    workspace_id = str(found.workspace_id)
    if named is not None:
        operator = stub.store.one(
            "SELECT * FROM operators WHERE id = ? AND workspace_id = ?", (named, workspace_id)
        )
        if operator is None:
            raise HttpError(404, ErrorCode.NOT_FOUND, "operatorId: no such operator", named)
        fleet.usable_operator(operator, now)
        return operator
    if not stub.operator_level(workspace_id):
        return None
    operator = fleet.longest_idle_in_workspace(stub.store, workspace_id, now)
    if operator is None:
        raise HttpError(
            409, ErrorCode.OPERATOR_BUSY, "no operator of the workspace is ONLINE and free"
        )
    return operator


@router.post(
    "/sessions/{session_id}/start", response_model=Envelope[StartResult], responses=errors(404, 409)
)
async def start(session_id: str, request: Request, found: Operator) -> JSONResponse:
    stub = runtime(request)
    row = visible_session(stub, session_id, found.workspace_id)
    require_operator(row, found)
    if row["state"] != SessionState.ASSIGNED.value:
        raise invalid_state(row, "start")
    with stub.store.transaction() as conn:
        conn.execute(
            "UPDATE sessions SET state = ?, started_at = ? WHERE id = ?",
            (SessionState.LIVE.value, ts(stub.now()), session_id),
        )
    updated = _session_row(stub, session_id)
    return ok(
        request,
        StartResult(
            session=stub.session(updated, found.workspace_id),
            video_backend_ref=updated["video_backend_ref"],
            whip_url=updated["whip_url"],
            whep_url=updated["whep_url"],
        ),
    )


@router.get(
    "/sessions/{session_id}/producer-token",
    response_model=Envelope[ProducerToken],
    responses=errors(404, 409),
)
async def producer_token(session_id: str, request: Request, found: Operator) -> JSONResponse:
    stub = runtime(request)
    row = visible_session(stub, session_id, found.workspace_id)
    require_operator(row, found)
    if row["state"] not in LIVE_STATES:
        raise invalid_state(row, "fetch the producer token of")
    return ok(
        request, ProducerToken(video_backend_ref=row["video_backend_ref"], whip_url=row["whip_url"])
    )


# ---- either side ----------------------------------------------------------------------


@router.post(
    "/sessions/{session_id}/end", response_model=Envelope[Session], responses=errors(404, 409)
)
async def end(session_id: str, request: Request, found: AnyCaller) -> JSONResponse:
    stub = runtime(request)
    row = visible_session(stub, session_id, found.workspace_id)
    require_side(row, found)
    if row["state"] not in LIVE_STATES:
        raise invalid_state(row, "end")
    now = stub.now()
    operator = stub.store.one(
        "SELECT wallet_address FROM workspaces WHERE id = ?", (row["operator_workspace_id"],)
    )
    assert operator is not None  # foreign key
    result = meter_session(stub, row, now).result
    with stub.store.transaction() as conn:
        record = settle(
            conn,
            session=row,
            clean_seconds=result.clean_seconds,
            failed_seconds=result.failed_seconds,
            fee_bps=stub.config.fee_bps,
            chain_id=stub.config.chain_id,
            operator_wallet=operator["wallet_address"],
            event_id=stub.new_id("wev"),
            now=now,
        )
        conn.execute(
            "UPDATE sessions SET state = ?, ended_at = ?, clean_seconds = ?, failed_seconds = ?,"
            " charged_micro_usdc = ?, settlement_tx_hash = ? WHERE id = ?",
            (
                SessionState.ENDED.value,
                ts(now),
                result.clean_seconds,
                result.failed_seconds,
                record.charged_micro_usdc,
                record.tx_hash,
                session_id,
            ),
        )
        stub.release_session(conn, row)
    await stub.close_inputs([row["video_backend_ref"]])
    return _session_ok(request, stub, session_id, found)


@router.delete(
    "/sessions/{session_id}", response_model=Envelope[Session], responses=errors(404, 409)
)
async def cancel(session_id: str, request: Request, found: AnyCaller) -> JSONResponse:
    stub = runtime(request)
    row = visible_session(stub, session_id, found.workspace_id)
    require_side(row, found)
    if row["state"] not in PRE_LIVE_STATES:
        raise invalid_state(row, "cancel")
    with stub.store.transaction() as conn:
        refs = stub.finish_pre_live(conn, [row], SessionState.CANCELLED)
        stub.release_session(conn, row)
    await stub.close_inputs(refs)
    return _session_ok(request, stub, session_id, found)


@router.get("/sessions/{session_id}/frame", response_class=Response, responses=FRAME_RESPONSES)
async def frame(session_id: str, request: Request, found: SessionReader) -> Response:
    stub = runtime(request)
    row = visible_session(stub, session_id, found.workspace_id)
    ref = row["video_backend_ref"]
    jpeg = None
    if row["state"] in LIVE_STATES and ref:
        jpeg = stub.video.latest_frame_jpeg(ref)
    if jpeg is None:
        raise HttpError(
            404, ErrorCode.FRAME_NOT_AVAILABLE, "no frame yet (the first keyframe has not arrived)"
        )
    headers = {"Cache-Control": "no-store"}
    media = stub.video.media_status(ref)
    if media is not None and media.last_frame_at is not None:
        # how old the picture is: a consumer tells a frozen frame from a live one
        age = max(0.0, (stub.now() - media.last_frame_at).total_seconds())
        headers["Last-Modified"] = format_datetime(media.last_frame_at, usegmt=True)
        headers["Age"] = str(int(age))
        headers[FRAME_AGE_HEADER] = str(round(age * 1000))
    return Response(content=jpeg, media_type="image/jpeg", headers=headers)
