"""The `luxxon` app in-process: input validation, wallet commands, redaction, lazy imports."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from typer.testing import CliRunner

from luxxon_agent.cli import luxxon
from luxxon_agent.cli._render import redact
from tests.conftest import free_port

KEY = "0x" + "5d" * 32
ADDRESS = Account.from_key(KEY).address


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LUXXON_WALLET_PASSPHRASE", "test passphrase")
    for name in ("LUXXON_API_KEY", "LUXXON_BASE_URL", "LUXXON_PROFILE", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    # logging as a fresh `luxxon` process has it (it configures none): a `luxxon-agent`
    # command run in-process by an earlier test leaves the root logger at INFO, and the
    # client's retry lines then reach the one-line errors these tests read
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    yield CliRunner()
    root.setLevel(level)


def one_line_error(result, code: int | None = None) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _keys_create(environment: str, scope: str, *extra: str) -> list[str]:
    """`luxxon keys create` args for workspace w, label l."""
    args = ["keys", "create", "--workspace", "w", "--label", "l", "--environment", environment]
    return [*args, "--scope", scope, *extra]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (_keys_create("TEST", "sessions:read", "--no-store"), "add --show"),
        (["workspaces", "update", "ws_1", "--online", "--coverage", "4.7,-74"], "three numbers"),
        (["workspaces", "update", "ws_1", "--coverage", "4.7,-74,a"], "three numbers"),
        (["workspaces", "update", "ws_1", "--coverage", "95,-74,100"], "coverageLat"),
        (["workspaces", "update", "ws_1", "--online", "--offline"], "one of"),
        (["workspaces", "update", "ws_1"], "nothing to update"),
        (["workspaces", "update", "ws_1", "--device-kind", "boat"], "deviceKind"),
        (["workspaces", "create", "--slug", "acme", "--name", "Acme"], "--supplier"),
        (["workspaces", "create", "--slug", "Bad Slug", "--name", "A", "--supplier"], "slug"),
        (_keys_create("PROD", "sessions:read"), "environment"),
        (_keys_create("TEST", "root"), "scopes"),
        (["sessions", "list", "--state", "BORED"], "--state must be one of"),
        (["sessions", "cancel-all"], "no API key"),
        (["--base-url", "ftp://x", "--api-key", "k", "sessions", "list"], "--base-url"),
        (["--profile", "../x", "sessions", "list"], "invalid profile name"),
        (["login"], "luxxon wallet new"),
        (["keys", "revoke", "--workspace", "w", "k"], "luxxon login"),
        (["workspaces", "list"], "luxxon login"),
        (["workspaces", "select", "ws_1"], "luxxon login"),
    ],
)
def test_bad_input_is_one_line_error(
    runner: CliRunner, no_keyring, args: list[str], needle: str
) -> None:
    result = runner.invoke(luxxon.app, args)
    assert needle in one_line_error(result)


def test_wallet_import_from_stdin_then_show_never_prints_the_key(
    runner: CliRunner, memory_keyring
) -> None:
    imported = runner.invoke(luxxon.app, ["wallet", "import"], input=KEY + "\n")
    assert imported.exit_code == 0, imported.output
    assert ADDRESS in imported.stdout and "keyring" in imported.stdout
    shown = runner.invoke(luxxon.app, ["--json", "wallet", "show"])
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["address"] == ADDRESS
    local_json = runner.invoke(luxxon.app, ["wallet", "show", "--json"])
    assert json.loads(local_json.stdout)["store"] == "keyring"
    for output in (imported.output, shown.output, local_json.output):
        assert KEY[2:] not in output


def test_wallet_new_without_keyring_says_it_uses_the_keystore(
    runner: CliRunner, no_keyring, tmp_path: Path
) -> None:
    created = runner.invoke(luxxon.app, ["--profile", "ops", "--json", "wallet", "new"])
    assert created.exit_code == 0, created.output
    report = json.loads(created.stdout)
    assert report["store"] == "file" and "keystore.json" in report["location"]
    keystore = tmp_path / "config" / "luxxon" / "profiles" / "ops" / "keystore.json"
    assert keystore.stat().st_mode & 0o777 == 0o600
    again = runner.invoke(luxxon.app, ["--profile", "ops", "wallet", "new"])
    assert "already has wallet" in one_line_error(again, 2)


def test_wallet_import_rejects_empty_stdin(runner: CliRunner, memory_keyring) -> None:
    result = runner.invoke(luxxon.app, ["wallet", "import"], input="\n")
    assert "no private key" in one_line_error(result)


def test_show_without_wallet_is_auth_error(runner: CliRunner, memory_keyring) -> None:
    result = runner.invoke(luxxon.app, ["wallet", "show"])
    assert "luxxon wallet new" in one_line_error(result, 4)


def test_unreachable_server_is_one_line_network_error(runner: CliRunner, no_keyring) -> None:
    closed = f"http://127.0.0.1:{free_port()}/api/v1"  # nothing listens there
    args = ["--base-url", closed, "--api-key", "lxxn_test_x", "sessions", "end", "s1"]
    result = runner.invoke(luxxon.app, args)
    line = one_line_error(result)
    assert "POST /sessions/s1/end" in line and "lxxn_test_x" not in result.output


def test_redact_cuts_whip_urls_only() -> None:
    payload = {
        "session": {"id": "s1", "whipUrl": "http://127.0.0.1:1/whip/secret-token"},
        "whipUrl": "http://127.0.0.1:1/whip/secret-token",
        "whepUrl": "http://127.0.0.1:1/whep/s1",
    }
    cut = redact(payload, show_urls=False)
    assert "secret-token" not in json.dumps(cut)
    assert cut["whipUrl"] == "http://127.0.0.1:1/***" and cut["whepUrl"] == payload["whepUrl"]
    assert redact(payload, show_urls=True) == payload


def _session_body(**extra: object) -> dict[str, object]:
    return {
        "id": "s1",
        "consumerWorkspaceId": "wc",
        "state": "LIVE",
        "maxDurationSeconds": 60,
        "ratePerSecondMicroUsdc": "100",
        "holdMicroUsdc": "6000",
        "createdAt": "2026-05-13T08:42:00.000Z",
        "requestedLat": 4.7,
        "requestedLng": -74.0,
        **extra,
    }


def test_session_video_extension_is_parsed_and_told_in_words() -> None:
    from datetime import UTC, datetime

    from luxxon_agent.cli._render import describe_video
    from luxxon_agent.models import Session

    assert Session.model_validate(_session_body()).video is None
    assert "video" not in Session.model_validate(_session_body()).to_wire()
    video = {"connected": True, "lastFrameAt": "2026-05-13T08:42:10.250Z", "framesReceived": 301}
    session = Session.model_validate(_session_body(video=video))
    assert session.video is not None and session.to_wire()["video"] == video
    now = datetime(2026, 5, 13, 8, 42, 12, tzinfo=UTC)
    assert describe_video(session.video, now=now) == (
        "publisher connected, 301 frames received, last 1.8 s ago (2026-05-13T08:42:10.250Z)"
    )
    waiting = Session.model_validate(
        _session_body(video={"connected": False, "framesReceived": 0})
    ).video
    assert waiting is not None
    assert describe_video(waiting, now=now) == "no publisher connected, no frame received yet"


FORBIDDEN = ("aiortc", "av", "web3", "eth_account")
PROBE = """
import sys
sys.argv = ["luxxon", *sys.argv[1:]]
from luxxon_agent.cli.luxxon import main
try:
    main()
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {forbidden!r})
sys.stderr.write("HEAVY=" + ",".join(heavy) + "\\n")
"""


def probe_imports(*args: str, env: dict[str, str] | None = None) -> tuple[list[str], str]:
    """Run `luxxon ARGS` in a fresh interpreter; return the heavy modules it imported."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(forbidden=set(FORBIDDEN)), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    marker = [line for line in result.stderr.splitlines() if line.startswith("HEAVY=")]
    assert marker, result.stderr
    heavy = [name for name in marker[0].removeprefix("HEAVY=").split(",") if name]
    return heavy, result.stdout


def test_help_imports_nothing_heavy() -> None:
    heavy, stdout = probe_imports("--help")
    assert "sessions" in stdout and "wallet" in stdout
    assert heavy == []
