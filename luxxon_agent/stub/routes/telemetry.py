"""`POST /sessions/:id/telemetry`: one signed position sample, checked, then stored once.

Checks, in order; the first that fails answers with its code and stores nothing:

  session visible to the caller ........ 404 SESSION_NOT_FOUND
  caller is the session's operator ..... 403 WORKSPACE_MISMATCH
  the very sample already stored ....... 200 duplicate: true (before every check below,
      so a retry whose first answer was lost succeeds after the session ended or the
      device was revoked)
  session LIVE (or PAUSED) ............. 409 INVALID_STATE
  startedAt ≤ capturedAt ≤ startedAt + maxDurationSeconds
                                         422 CAPTURED_OUT_OF_SESSION
  capturedAt ≤ now + max future skew ... 422 CAPTURED_IN_FUTURE
  signature well-formed, canonical ..... 400 INVALID_SIGNATURE
  signer = the workspace wallet, or a registered device key of the workspace:
      none ............................. 403 UNKNOWN_SIGNER
      only revoked ones ................ 403 DEVICE_REVOKED
      delegation expired at capturedAt . 403 DEVICE_EXPIRED
      a workspace-level session: the operator retired before capturedAt
                                         403 DEVICE_REVOKED
      a session held by an operator (per-operator dispatch): the signer is the
      wallet or that operator's device key, else 403 OPERATOR_MISMATCH

The same sample is the same (session, capturedAt), signature, point, accuracy
and source. A different sample for a (session, capturedAt) already stored
passes the checks, then answers 409 CONFLICT. A new sample answers 201.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from luxxon_agent.eip712 import normalize_address, recover_address, signature_bytes
from luxxon_agent.errors import SignatureError
from luxxon_agent.models import ErrorCode, TelemetryReceipt, TelemetrySample
from luxxon_agent.stub.auth import Operator
from luxxon_agent.stub.http_error import HttpError
from luxxon_agent.stub.openapi import Envelope, errors
from luxxon_agent.stub.routes.sessions import visible_session
from luxxon_agent.stub.runtime import LIVE_STATES, StubRuntime, ok, runtime
from luxxon_agent.stub.store import parse_ts, ts
from luxxon_agent.telemetry.signing import TelemetryPayload, datetime_to_ms, telemetry_digest

router = APIRouter(tags=["telemetry"])

SCHEMA = """
CREATE TABLE IF NOT EXISTS telemetry (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    captured_at_ms INTEGER NOT NULL,
    captured_at TEXT NOT NULL,
    lat REAL NOT NULL,
    lng REAL NOT NULL,
    accuracy_meters REAL NOT NULL,
    source TEXT NOT NULL,
    signature TEXT NOT NULL,
    signer TEXT NOT NULL,
    operator_id TEXT,
    received_at TEXT NOT NULL,
    PRIMARY KEY (session_id, captured_at_ms)
);
"""


def _authorised_signer(
    stub: StubRuntime,
    workspace_id: str,
    signer: str,
    captured_at: datetime,
    session_operator_id: str | None,
) -> str | None:
    """The operator id the signer acts as (None for the wallet itself); raises when refused.
    With `session_operator_id`, only that operator's device key (or the wallet) may sign."""
    wallet = stub.store.one("SELECT wallet_address FROM workspaces WHERE id = ?", (workspace_id,))
    if wallet is not None and normalize_address(wallet["wallet_address"]) == signer:
        return None
    rows = stub.store.all(
        "SELECT * FROM operators WHERE workspace_id = ? AND device_address = ?",
        (workspace_id, signer),
    )
    if not rows:
        raise HttpError(
            403,
            ErrorCode.UNKNOWN_SIGNER,
            "signed by neither the workspace wallet nor a registered device key",
            signer,
        )
    active = [row for row in rows if row["revoked_at"] is None]
    if not active:
        raise HttpError(403, ErrorCode.DEVICE_REVOKED, "this device key was revoked", signer)
    valid = [row for row in active if captured_at < datetime.fromisoformat(row["expires_at"])]
    if not valid:
        raise HttpError(
            403,
            ErrorCode.DEVICE_EXPIRED,
            "the device key's delegation had expired at capturedAt",
            signer,
        )
    if session_operator_id is None:
        # a workspace-level session: any operator of the workspace may sign, but not one
        # retired before the sample was taken (a retired operator's own LIVE session,
        # below, still takes its key: it runs to its end)
        serving = [
            row
            for row in valid
            if row["retired_at"] is None or captured_at < datetime.fromisoformat(row["retired_at"])
        ]
        if not serving:
            raise HttpError(
                403,
                ErrorCode.DEVICE_REVOKED,
                "the device key's operator was retired before capturedAt",
                signer,
            )
        return str(serving[0]["id"])
    if any(row["id"] == session_operator_id for row in valid):
        return session_operator_id
    # permanent, unlike UNKNOWN_SIGNER: the uploader drops the sample, never retries it
    raise HttpError(
        403,
        ErrorCode.OPERATOR_MISMATCH,
        "signed by another operator's device key than the session's operator",
        f"signer {signer}, session operator {session_operator_id}",
    )


def _same_sample(stored: sqlite3.Row, body: TelemetrySample, payload: TelemetryPayload) -> bool:
    """True when the stored row is exactly this sample (signature and fields)."""
    return (
        stored["signature"].lower() == body.signature.lower()
        and (stored["lat"], stored["lng"]) == (payload.lat, payload.lng)
        and stored["accuracy_meters"] == payload.accuracy_m
        and stored["source"] == payload.source
    )


@router.post(
    "/sessions/{session_id}/telemetry",
    response_model=Envelope[TelemetryReceipt],
    responses={
        201: {"model": Envelope[TelemetryReceipt], "description": "Stored (200: stored before)"},
        **errors(404, 409, 422),
    },
)
async def post_telemetry(
    session_id: str, body: TelemetrySample, request: Request, found: Operator
) -> JSONResponse:
    stub = runtime(request)
    row = visible_session(stub, session_id, found.workspace_id)
    if row["operator_workspace_id"] != found.workspace_id:
        raise HttpError(
            403, ErrorCode.WORKSPACE_MISMATCH, "only the session's operator posts telemetry"
        )
    stored = stub.store.one(
        "SELECT lat, lng, accuracy_meters, source, signature FROM telemetry"
        " WHERE session_id = ? AND captured_at_ms = ?",
        (session_id, datetime_to_ms(body.captured_at)),
    )
    try:
        payload: TelemetryPayload | None = TelemetryPayload.from_sample(session_id, body)
        malformed: ValueError | None = None
    except (ValueError, OverflowError) as exc:
        # refused below, after the state and time checks
        payload, malformed = None, ValueError(str(exc))
    if stored is not None and payload is not None and _same_sample(stored, body, payload):
        receipt = TelemetryReceipt(
            session_id=session_id, captured_at=body.captured_at, duplicate=True
        )
        return ok(request, receipt)
    if row["state"] not in LIVE_STATES:
        state = row["state"]
        raise HttpError(
            409, ErrorCode.INVALID_STATE, f"telemetry needs a LIVE session, not {state}"
        )
    now = stub.now()
    started = parse_ts(row["started_at"])
    assert started is not None  # every LIVE session has a startedAt
    captured = body.captured_at
    latest = started + timedelta(seconds=row["max_duration_seconds"])
    if not started <= captured <= latest:
        raise HttpError(
            422,
            ErrorCode.CAPTURED_OUT_OF_SESSION,
            "capturedAt lies outside the session",
            f"session runs from {ts(started)} for {row['max_duration_seconds']} s",
        )
    skew = timedelta(milliseconds=stub.config.telemetry_max_future_skew_ms)
    if captured > now + skew:
        raise HttpError(
            422,
            ErrorCode.CAPTURED_IN_FUTURE,
            "capturedAt is in the future (check the device clock)",
            f"server time {ts(now)}, allowed skew {stub.config.telemetry_max_future_skew_ms} ms",
        )
    unverifiable = "the signature cannot be verified"
    if payload is None:
        raise HttpError(400, ErrorCode.INVALID_SIGNATURE, unverifiable, str(malformed))
    try:
        signer = recover_address(
            telemetry_digest(payload, stub.config.chain_id), signature_bytes(body.signature)
        )
    except (SignatureError, ValueError) as exc:
        raise HttpError(400, ErrorCode.INVALID_SIGNATURE, unverifiable, str(exc)) from None
    operator_id = _authorised_signer(
        stub, str(found.workspace_id), signer, captured, row["operator_id"]
    )
    if stored is not None:  # not the same sample, or the duplicate check would have answered
        raise HttpError(
            409,
            ErrorCode.CONFLICT,
            "a different sample for this capturedAt is already stored",
            ts(captured),
        )
    with stub.store.transaction() as conn:
        conn.execute(
            "INSERT INTO telemetry (session_id, captured_at_ms, captured_at, lat, lng,"
            " accuracy_meters, source, signature, signer, operator_id, received_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                session_id,
                payload.captured_at_ms,
                ts(payload.captured_at),
                payload.lat,
                payload.lng,
                payload.accuracy_m,
                payload.source,
                body.signature,
                signer,
                operator_id,
                ts(now),
            ),
        )
    receipt = TelemetryReceipt(session_id=session_id, captured_at=captured, duplicate=False)
    return ok(request, receipt, status=201)
