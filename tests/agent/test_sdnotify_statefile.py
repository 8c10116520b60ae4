"""sd_notify datagrams on a real socket; the atomic state file and its sequences."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from luxxon_agent.agent.sdnotify import SdNotifier
from luxxon_agent.agent.statefile import SEQUENCE_RESERVE, StateFile
from luxxon_agent.models import SessionState


@pytest.fixture
def notify_socket(tmp_path: Path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(2)
    yield str(path), sock
    sock.close()


def test_notify_path_socket(notify_socket) -> None:
    path, sock = notify_socket
    notifier = SdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
    assert notifier.enabled and notifier.watchdog_interval == 2.0
    assert notifier.ready("1 operator ONLINE")
    assert sock.recv(4096) == b"READY=1\nSTATUS=1 operator ONLINE"
    assert notifier.status("1 operator ONLINE")  # unchanged: nothing sent
    assert notifier.status("cam-1 LIVE")
    assert sock.recv(4096) == b"STATUS=cam-1 LIVE"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    notifier.close()


def test_notify_abstract_socket() -> None:
    name = f"luxxon-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        notifier = SdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.stopping("shutting down")
        assert sock.recv(4096) == b"STOPPING=1\nSTATUS=shutting down"
        notifier.close()
    finally:
        sock.close()


def test_notify_disabled_and_foreign_watchdog() -> None:
    notifier = SdNotifier({}, pid=10)
    assert not notifier.enabled and not notifier.ready("x")
    other = SdNotifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "11"}, pid=10)
    assert other.watchdog_interval is None
    mine = SdNotifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "10"}, pid=10)
    assert mine.watchdog_interval == 0.5


def test_state_file_round_trip_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.json"
    state = StateFile(path)
    state.set_session("cam-1", "ses_1", SessionState.LIVE, "ws_1")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = StateFile(path)
    assert again.record("cam-1").session_id == "ses_1"
    assert again.record("cam-1").state == "LIVE"
    assert again.record("nobody").session_id is None
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temp leftovers


def test_sequence_monotone_across_restart_and_clock_jump(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = StateFile(path)
    first = state.next_sequence("ws", now_ms=1_000_000)
    second = state.next_sequence("ws", now_ms=1_000_000)  # same ms: still increases
    assert second == first + 1
    writes = path.stat().st_mtime_ns
    state.next_sequence("ws", now_ms=1_000_500)
    assert path.stat().st_mtime_ns == writes  # within the reserved block: no write
    # restart with a clock that went back to 1970 (no RTC, before NTP)
    restarted = StateFile(path)
    after = restarted.next_sequence("ws", now_ms=5)
    assert after > 1_000_500
    assert after <= 1_000_000 + SEQUENCE_RESERVE + 1
    assert json.loads(path.read_text())["sequences"]["ws"] > after


def test_corrupt_state_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    state = StateFile(path)
    assert state.record("cam-1").session_id is None
    assert (tmp_path / "state.corrupt").read_text() == "{not json"
