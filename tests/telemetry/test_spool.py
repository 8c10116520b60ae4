"""Spool: capture order, dedup, bounds, pruning, and durability under SIGKILL."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest

from luxxon_agent.telemetry import SampleState, Spool
from luxxon_agent.telemetry.signing import datetime_to_ms
from tests.telemetry.helpers import T0, seconds, signed


def test_pending_comes_out_in_capture_order_and_each_second_once(tmp_path):
    with Spool(tmp_path / "s.db") as spool:
        times = seconds(T0, 6)
        for at in [times[3], times[0], times[5], times[1], times[4], times[2]]:
            assert spool.append("ses_a", signed("ses_a", at)) is True
        assert spool.append("ses_a", signed("ses_a", times[2])) is False  # same second again
        assert spool.append("ses_b", signed("ses_b", times[2])) is True  # other session
        pending = spool.pending(100)
        assert [p.captured_at_ms for p in pending] == sorted(p.captured_at_ms for p in pending)
        assert [p.session_id for p in pending].count("ses_a") == 6
        assert pending[0].sample() == signed("ses_a", times[0])
        assert [p.id for p in spool.pending(2)] == [p.id for p in pending[:2]]


def test_marks_stats_and_rejections(tmp_path):
    with Spool(tmp_path / "s.db") as spool:
        for at in seconds(T0, 5):
            spool.append("ses_a", signed("ses_a", at))
        rows = spool.pending(10)
        spool.mark_delivered([rows[0].id, rows[1].id])
        spool.mark_rejected([(rows[2].id, "INVALID_STATE")])
        stats = spool.stats("ses_a")
        assert (stats.spooled, stats.delivered, stats.rejected, stats.pending) == (5, 2, 1, 2)
        assert [r.id for r in spool.pending(10)] == [rows[3].id, rows[4].id]
        held = spool.samples("ses_a")
        assert [r.state for r in held][:3] == [
            SampleState.DELIVERED,
            SampleState.DELIVERED,
            SampleState.REJECTED,
        ]
        assert held[2].reason == "INVALID_STATE"
        assert spool.stats("nobody").spooled == 0


def test_size_is_bounded_oldest_undelivered_dropped_and_counted(tmp_path):
    with Spool(tmp_path / "s.db", max_pending=5, keep_done=3) as spool:
        for at in seconds(T0, 8):
            spool.append("ses_a", signed("ses_a", at))
        stats = spool.stats()
        assert (stats.pending, stats.dropped) == (5, 3)
        assert spool.pending(10)[0].captured_at_ms == datetime_to_ms(T0 + timedelta(seconds=3))
        spool.mark_delivered([r.id for r in spool.pending(10)])
        assert spool.prune() == 2
        kept = spool.samples("ses_a")
        assert [r.captured_at_ms for r in kept] == [
            datetime_to_ms(T0 + timedelta(seconds=s)) for s in (5, 6, 7)
        ]


def test_wal_and_full_sync_are_on(tmp_path):
    Spool(tmp_path / "s.db").close()
    with Spool(tmp_path / "s.db") as spool:
        assert spool._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


_WRITER = textwrap.dedent(
    """
    import sys
    from datetime import timedelta
    from luxxon_agent.telemetry import Spool
    from tests.telemetry.helpers import T0, signed

    spool = Spool(sys.argv[1])
    for i in range(100_000):
        spool.append("ses_k", signed("ses_k", T0 + timedelta(seconds=i)))
        print(i, flush=True)
    """
)


def test_sigkill_mid_writes_loses_at_most_the_sample_being_written(tmp_path):
    path = tmp_path / "spool.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    try:
        acknowledged = -1
        for line in writer.stdout:  # bounded: the writer stops at 100k and we stop at 150
            acknowledged = int(line)
            if acknowledged >= 150:
                break
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait(timeout=10)
        writer.stdout.close()
    assert acknowledged >= 150, "the writer died before writing"
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    offsets = [
        (ms - datetime_to_ms(T0)) // 1000
        for (ms,) in db.execute("SELECT captured_at_ms FROM samples ORDER BY captured_at_ms")
    ]
    db.close()
    # every acknowledged sample is there, with no hole; what was in flight may or may not be
    assert offsets == list(range(len(offsets)))
    assert len(offsets) >= acknowledged + 1
    with Spool(path) as spool:  # and the spool opens and carries on
        assert spool.append("ses_k", signed("ses_k", T0 - timedelta(seconds=1)))
        body = json.loads(spool.pending(1)[0].body)
        assert body["capturedAt"].endswith("07:59:59.000Z")


def test_unopenable_path_is_a_one_line_telemetry_error(tmp_path):
    from luxxon_agent.errors import TelemetryError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TelemetryError, match="cannot open the telemetry spool"):
        Spool(blocker / "spool.db")


def test_public_surface_is_sorted_and_complete():
    import luxxon_agent.telemetry as telemetry

    assert telemetry.__all__ == sorted(telemetry.__all__)
    assert all(hasattr(telemetry, name) for name in telemetry.__all__)
