"""The telemetry-anchored meter and what it pays."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from luxxon_agent.geo import haversine_meters
from luxxon_agent.meter import earnings, telemetry_clean_seconds
from tests.telemetry.helpers import T0

CENTER = (4.711, -74.072)
OUTSIDE = (4.713, -74.072)  # ~222 m north
START = T0 + timedelta(seconds=0.25)


@dataclass(frozen=True)
class S:
    captured_at: datetime
    lat: float
    lng: float
    accuracy_m: float = 3.0


def at(k: float) -> datetime:
    return T0 + timedelta(seconds=k)


def meter(samples, seconds=60, freshness=2.0, radius=200.0):
    return telemetry_clean_seconds(
        START,
        START + timedelta(seconds=seconds, milliseconds=400),
        samples,
        CENTER,
        radius,
        freshness,
    )


def test_haversine_is_right_to_the_metre():
    assert haversine_meters(0, 0, 1, 0) == pytest.approx(111_195, abs=1)
    assert haversine_meters(*CENTER, *OUTSIDE) == pytest.approx(222.4, abs=0.5)
    assert haversine_meters(*CENTER, *CENTER) == 0


def test_every_second_sampled_in_place_is_clean():
    assert meter([S(at(k), *CENTER) for k in range(1, 61)]) == (60, 0)
    assert meter([]) == (0, 60)


def test_ten_seconds_outside_the_geofence_fail_exactly():
    samples = [S(at(k), *(OUTSIDE if 20 <= k < 30 else CENTER)) for k in range(1, 61)]
    assert meter(samples) == (50, 10)


def test_freshness_window_forgives_one_missing_sample_not_two():
    one_gap = [S(at(k), *CENTER) for k in range(1, 61) if k != 10]
    assert meter(one_gap) == (60, 0)
    two_gap = [S(at(k), *CENTER) for k in range(1, 61) if k not in (10, 11)]
    assert meter(two_gap) == (59, 1)
    assert meter(two_gap, freshness=1.0) == (58, 2)
    five_gap = [S(at(k), *CENTER) for k in range(1, 61) if not 10 <= k < 15]
    assert meter(five_gap) == (56, 4)


def test_inaccurate_samples_do_not_count():
    samples = [S(at(k), *CENTER, accuracy_m=100.0) for k in range(1, 61)]
    assert meter(samples) == (60, 0)
    worse = [S(at(k), *CENTER, accuracy_m=100.01 if k > 30 else 5) for k in range(1, 61)]
    # seconds 0..29 by samples 1..30; second 30 by sample 30 still fresh; then nothing counts
    assert meter(worse) == (31, 29)


def test_the_newest_sample_decides_even_if_an_older_one_was_inside():
    samples = [S(at(1), *CENTER), S(at(1.2), *OUTSIDE)]
    assert meter(samples, seconds=1, freshness=5) == (0, 1)


def test_partial_last_second_is_not_billed_and_bad_arguments_refused():
    assert meter([S(at(k), *CENTER) for k in range(1, 5)], seconds=3) == (3, 0)
    with pytest.raises(ValueError):
        meter([], freshness=0)


@settings(max_examples=200, deadline=None)
@given(
    pattern=st.lists(st.sampled_from(["in", "out", "missing", "blurry"]), min_size=1, max_size=90),
    rate=st.integers(0, 10**7),
    fee_bps=st.integers(0, 10_000),
)
def test_meter_and_earnings_against_an_independent_model(pattern, rate, fee_bps):
    # samples at whole seconds k = 1..n, session from 0.25 s: with a 1 s window, second i
    # is covered by the sample at k = i + 1 and by nothing else
    samples = []
    for k, kind in enumerate(pattern, start=1):
        if kind == "in":
            samples.append(S(at(k), *CENTER))
        elif kind == "out":
            samples.append(S(at(k), *OUTSIDE))
        elif kind == "blurry":
            samples.append(S(at(k), *CENTER, accuracy_m=250))
    clean, failed = meter(samples, seconds=len(pattern), freshness=1.0)
    assert clean == pattern.count("in")
    assert clean + failed == len(pattern)
    split = earnings(clean, rate, fee_bps)
    exact = Fraction(clean * rate * (10_000 - fee_bps), 10_000)
    assert split.operator_earned_micro_usdc == int(exact)  # floor: exact is never negative
    assert split.fee_micro_usdc + split.operator_earned_micro_usdc == clean * rate
    assert 0 <= split.fee_micro_usdc - Fraction(clean * rate * fee_bps, 10_000) < 1
