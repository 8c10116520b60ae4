from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from luxxon_agent.meter import earnings, wallclock_clean_seconds
from luxxon_agent.models import Session, SessionState, format_timestamp

T0 = datetime(2026, 5, 13, 8, 42, tzinfo=UTC)


def test_session_wire_form_is_camel_case_with_string_money_and_ms_timestamps():
    session = Session(
        id="s1",
        consumer_workspace_id="c1",
        state=SessionState.REQUESTED,
        max_duration_seconds=60,
        rate_per_second_micro_usdc=1500,
        hold_micro_usdc=90_000,
        created_at=T0,
        requested_lat=4.711,
        requested_lng=-74.072,
    )
    wire = session.to_wire()
    assert wire["ratePerSecondMicroUsdc"] == "1500"
    assert wire["createdAt"] == "2026-05-13T08:42:00.000Z"
    assert Session.model_validate(wire) == session


def test_naive_timestamps_and_negative_money_are_refused():
    with pytest.raises(ValidationError):
        Session.model_validate(
            {
                "id": "s",
                "consumerWorkspaceId": "c",
                "state": "LIVE",
                "maxDurationSeconds": 1,
                "ratePerSecondMicroUsdc": "-1",
                "holdMicroUsdc": "0",
                "createdAt": "2026-05-13T08:42:00",
                "requestedLat": 0,
                "requestedLng": 0,
            }
        )
    with pytest.raises(ValueError):
        format_timestamp(datetime(2026, 1, 1))


@given(
    seconds=st.integers(0, 10**7),
    rate=st.integers(0, 10**9),
    fee_bps=st.integers(0, 10_000),
)
def test_earnings_are_exact_integers_that_add_up(seconds, rate, fee_bps):
    result = earnings(seconds, rate, fee_bps)
    charged = seconds * rate
    assert result.charged_micro_usdc == charged
    assert result.operator_earned_micro_usdc == charged * (10_000 - fee_bps) // 10_000
    assert result.fee_micro_usdc + result.operator_earned_micro_usdc == charged
    assert 0 <= result.fee_micro_usdc


def test_wallclock_meter_subtracts_merged_disconnect_windows():
    end = T0 + timedelta(seconds=100)
    windows = [
        (T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)),
        (T0 + timedelta(seconds=15), T0 + timedelta(seconds=25)),  # overlaps the first
        (T0 - timedelta(seconds=5), T0 + timedelta(seconds=2)),  # clipped at start
    ]
    assert wallclock_clean_seconds(T0, end, windows) == 100 - 15 - 2
    assert wallclock_clean_seconds(T0, end) == 100
