"""End to end: the real `luxxon` commands against `luxxon-agent stub` in a subprocess.

Every command runs as its own process with a private HOME/XDG tree, the keyring
forced to the fail backend (so the 0600 file fallbacks are used), and the
wallet passphrase from LUXXON_WALLET_PASSPHRASE. No output may contain a secret
(API key plaintext, wallet private key, whipUrl) unless the command asked for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from tests.stub.stub_process import stub_process

BIN = Path(sys.executable).parent
PASSPHRASE = "e2e wallet passphrase"
HEAVY = ("aiortc", "av", "web3", "eth_account")


def _command(name: str, module: str) -> list[str]:
    """The installed console script, or the same entry point through this interpreter."""
    script = BIN / name
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", f"from {module} import main; main()"]


LUXXON = _command("luxxon", "luxxon_agent.cli.luxxon")
LUXXON_AGENT = _command("luxxon-agent", "luxxon_agent.cli.agent")


@dataclass
class Stub:
    base_url: str
    db_path: Path


@contextlib.contextmanager
def serve_stub(root: Path, *options: str) -> Iterator[Stub]:
    """`luxxon-agent stub OPTIONS` on a free loopback port until the block ends."""
    with stub_process(root, *options) as origin:
        yield Stub(f"{origin}/api/v1", root / "stub.db")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process this test started, then SIGKILL it if it lingers."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stub]:
    """A stub that only mints video inputs (no WebRTC ingest): what most tests need."""
    with serve_stub(tmp_path_factory.mktemp("stub"), "--no-video") as served:
        yield served


@dataclass
class Operator:
    """One operator's terminal: its own HOME, profile and record of everything printed."""

    stub: Stub
    home: Path
    outputs: list[tuple[list[str], str, bool]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("LUXXON_") and key != "CREDENTIALS_DIRECTORY"
        }
        env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / "config"),
            XDG_DATA_HOME=str(self.home / "data"),
            PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
            LUXXON_WALLET_PASSPHRASE=PASSPHRASE,
            LUXXON_BASE_URL=self.stub.base_url,
        )
        return env

    @property
    def profile_dir(self) -> Path:
        return self.home / "config" / "luxxon" / "profiles" / "default"

    def run(
        self, *args: str, input: str | None = None, reveals: bool = False, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run `luxxon ARGS`; `reveals` marks a command asked to print a secret."""
        result = subprocess.run(
            [*LUXXON, *args],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.outputs.append((list(args), result.stdout + result.stderr, reveals))
        if ok:
            assert result.returncode == 0, f"luxxon {' '.join(args)}: {result.stderr}"
        return result

    def json(self, *args: str, reveals: bool = False) -> dict[str, object]:
        return json.loads(self.run("--json", *args, reveals=reveals).stdout)

    def json_list(self, *args: str) -> list[dict[str, object]]:
        return json.loads(self.run("--json", *args).stdout)

    def consumer_request(self, lat: float, lng: float) -> str:
        """`luxxon-agent stub request --dispatch`: the session id is the last word."""
        result = subprocess.run(
            [
                *LUXXON_AGENT,
                "stub",
                "request",
                "--lat",
                str(lat),
                "--lng",
                str(lng),
                "--duration",
                "600",
                "--dispatch",
                "--base-url",
                self.stub.base_url,
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split()[-1]

    def assert_no_secret_leaked(self, secrets: list[str]) -> None:
        for args, output, reveals in self.outputs:
            if reveals:
                continue
            for secret in secrets:
                assert secret not in output, f"`luxxon {' '.join(args)}` printed a secret"

    def set_up_supplier(self, slug: str, lat: float, lng: float) -> str:
        """Login, SUPPLIER workspace, operate key, ONLINE with coverage; returns its id."""
        login = self.run("login")
        assert "logged in" in login.stdout
        workspace = self.json(
            "workspaces", "create", "--slug", slug, "--name", slug.title(), "--supplier"
        )
        assert workspace["roles"] == ["SUPPLIER"]
        workspace_id = str(workspace["id"])
        key = self.run(
            "keys",
            "create",
            "--workspace",
            workspace_id,
            "--label",
            "fleet",
            "--environment",
            "TEST",
            "--scope",
            "sessions:operate",
            "--scope",
            "sessions:read",
            "--scope",
            "wallet:read",
        )
        assert "lxxn_test_" in key.stdout  # the 20-char prefix, not the plaintext
        assert "stored as profile default's API key in file" in key.stdout
        assert "api-key (mode 0600)" in key.stdout and "replacing" not in key.stdout
        online = self.json(
            "workspaces", "update", workspace_id, "--online", "--coverage", f"{lat},{lng},5000"
        )
        assert online["availabilityState"] == "ONLINE"
        return workspace_id


def stored_api_key(operator: Operator) -> str:
    path = operator.profile_dir / "api-key"
    assert path.stat().st_mode & 0o777 == 0o600
    return path.read_text().strip()


@dataclass
class Supplier:
    op: Operator
    workspace_id: str
    api_key: str
    private_key: str


@pytest.fixture(scope="module")
def supplier(stub: Stub, tmp_path_factory: pytest.TempPathFactory) -> Supplier:
    """The operator set-up, once per module: wallet new, login, SUPPLIER workspace, key, ONLINE."""
    op = Operator(stub, tmp_path_factory.mktemp("operator"))
    wallet = op.json("wallet", "new")
    assert wallet["store"] == "file"
    keystore = json.loads((op.profile_dir / "keystore.json").read_text())
    private_key = "0x" + bytes(Account.decrypt(keystore, PASSPHRASE)).hex()
    assert Account.from_key(private_key).address == wallet["address"]
    workspace_id = op.set_up_supplier("bogota-drones", 4.711, -74.072)
    api_key = stored_api_key(op)
    assert api_key.startswith("lxxn_test_")
    return Supplier(op, workspace_id, api_key, private_key)


def test_operator_set_up_and_session_lifecycle(supplier: Supplier, stub: Stub) -> None:
    op, workspace_id, api_key, private_key = (
        supplier.op,
        supplier.workspace_id,
        supplier.api_key,
        supplier.private_key,
    )
    session_id = op.consumer_request(4.711, -74.072)
    listed = op.run("sessions", "list")
    assert session_id in listed.stdout and "REQUESTED" in listed.stdout
    accepted = op.run("sessions", "accept", session_id)
    assert "ASSIGNED" in accepted.stdout

    started = op.json("sessions", "start", session_id, "--show-url", reveals=True)
    whip_url = str(started["whipUrl"])
    assert started["session"]["state"] == "LIVE"  # type: ignore[index]
    assert whip_url.startswith(stub.base_url.split("/api/")[0])
    # the rule: redacted unless --show-url, JSON included, on every command
    token_json = op.json("sessions", "producer-token", session_id)
    assert token_json["whipUrl"] == whip_url.split("/whip")[0] + "/***"

    token_human = op.run("sessions", "producer-token", session_id)
    assert "/***" in token_human.stdout and whip_url not in token_human.stdout
    shown = op.run("sessions", "producer-token", session_id, "--show-url", reveals=True)
    assert ["whipUrl", whip_url] in [line.split() for line in shown.stdout.splitlines()]

    # production sends no media-liveness extension, nor does a stub without ingest: no line
    shown_json = op.json("sessions", "show", session_id)
    assert shown_json["state"] == "LIVE" and "video" not in shown_json
    shown_human = op.run("sessions", "show", session_id).stdout.splitlines()
    assert ["state", "LIVE"] in [line.split() for line in shown_human]
    assert not [line for line in shown_human if line.split()[:1] == ["video"]]

    ended = op.json("sessions", "end", session_id)
    assert ended["state"] == "ENDED" and ended["chargedMicroUsdc"] is not None

    assert "session ended" in op.run("logout").stdout
    me = op.json("whoami")  # without the wallet session: the profile's stored API key
    assert me["kind"] == "api_key" and me["workspaceId"] == workspace_id

    op.assert_no_secret_leaked([api_key, private_key, private_key[2:], whip_url])


def test_cancel_all_cancels_assigned_oldest_first_and_keeps_live(
    supplier: Supplier, stub: Stub
) -> None:
    op, workspace_id, api_key = supplier.op, supplier.workspace_id, supplier.api_key
    private_key = supplier.private_key
    op.run("login")  # the lifecycle test logs out at its end
    # all three are dispatched while the workspace is ONLINE, then accepted (a fleet holds several)
    first, second, third = (op.consumer_request(4.711, -74.072) for _ in range(3))
    for session_id in (first, second, third):
        assert "ASSIGNED" in op.run("sessions", "accept", session_id).stdout
    live = op.json("sessions", "start", second)
    assert str(live["whipUrl"]).endswith("/***")
    token = op.json("sessions", "producer-token", second, "--show-url", reveals=True)
    whip_url = str(token["whipUrl"])
    assert whip_url.startswith("http") and not whip_url.endswith("/***")

    # the real command, in a probe that also reports what it imported
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, "sessions", "cancel-all"],
        env=op.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    op.outputs.append((["sessions", "cancel-all"], probe.stdout + probe.stderr, False))
    heavy_line = [line for line in probe.stderr.splitlines() if line.startswith("HEAVY=")]
    assert heavy_line == ["HEAVY="], probe.stderr
    lines = probe.stdout.strip().splitlines()
    assert lines[0] == "cancelled 2 sessions (oldest first):"
    assert [line.strip() for line in lines[1:]] == [first, third]

    states = {row["id"]: row["state"] for row in op.json_list("sessions", "list")}
    assert [states[first], states[second], states[third]] == ["CANCELLED", "LIVE", "CANCELLED"]
    with sqlite3.connect(f"file:{stub.db_path}?mode=ro", uri=True) as db:
        (state,) = db.execute(
            "SELECT availability_state FROM workspaces WHERE id = ?", (workspace_id,)
        ).fetchone()
    assert state == "ONLINE"

    again = op.run("sessions", "cancel-all")
    assert again.stdout.strip() == "nothing to cancel: no ASSIGNED sessions"

    shown_key = op.json(
        "keys",
        "create",
        "--workspace",
        workspace_id,
        "--label",
        "spare",
        "--environment",
        "TEST",
        "--scope",
        "sessions:read",
        "--no-store",
        "--show",
        reveals=True,
    )
    assert shown_key["plaintext"] != api_key and shown_key["storedIn"] is None
    assert stored_api_key(op) == api_key  # a spare key leaves the operate key in place

    secrets = [api_key, str(shown_key["plaintext"]), private_key[2:], whip_url]
    op.assert_no_secret_leaked(secrets)


def test_online_alone_then_key_rotation(supplier: Supplier) -> None:
    """`--online` without --coverage, and `keys create` naming the key it replaces."""
    op, workspace_id = supplier.op, supplier.workspace_id
    op.run("login")
    assert op.json("workspaces", "update", workspace_id, "--offline")["availabilityState"] == (
        "OFFLINE"
    )
    online = op.json("workspaces", "update", workspace_id, "--online")  # no --coverage
    assert online["availabilityState"] == "ONLINE"
    assert (online["coverageLat"], online["coverageLng"]) == (4.711, -74.072)

    bare = op.json("workspaces", "create", "--slug", "no-coverage", "--name", "Bare", "--supplier")
    refused = op.run("workspaces", "update", str(bare["id"]), "--online", ok=False)
    assert refused.returncode == 1 and refused.stdout == ""
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: ") and "going ONLINE needs coverageLat" in line

    # last in the module: the profile's key is rotated (the fixture then holds the new one)
    old_key = supplier.api_key
    scopes = ("sessions:operate", "sessions:read", "wallet:read")
    rotated = op.run(
        "keys",
        "create",
        "--workspace",
        workspace_id,
        "--label",
        "rotated",
        "--environment",
        "TEST",
        *(arg for scope in scopes for arg in ("--scope", scope)),
    )
    new_key = stored_api_key(op)
    assert new_key != old_key and new_key.startswith("lxxn_test_")
    assert f"replacing key {old_key[:20]} (still valid until revoked)" in rotated.stdout
    assert new_key not in rotated.stdout and old_key not in rotated.stdout
    supplier.api_key = new_key
    (new_key_id,) = [
        line.split()[1] for line in rotated.stdout.splitlines() if line.split()[:1] == ["id"]
    ]
    op.run("logout")
    me = op.json("whoami")  # without the wallet session: the stored key, now the new one
    assert me["kind"] == "api_key" and me["keyId"] == new_key_id
    op.assert_no_secret_leaked([old_key, new_key, supplier.private_key[2:]])


def test_new_wallet_registers_an_operator_right_after_creating_its_workspace(
    stub: Stub, tmp_path: Path
) -> None:
    """The first-day path: login before any workspace exists, create, then use it at once."""
    op = Operator(stub, tmp_path)
    wallet = op.json("wallet", "new")
    op.run("login")  # no workspace yet: the wallet session acts for none
    empty = op.run("workspaces", "list")
    assert empty.stdout.startswith("no workspaces yet: run `luxxon workspaces create")
    first = op.json("workspaces", "create", "--slug", "first-day", "--name", "One", "--supplier")
    second = op.json("workspaces", "create", "--slug", "second-day", "--name", "Two", "--supplier")
    first_id, second_id = str(first["id"]), str(second["id"])
    unselected = op.run("workspaces", "list")
    assert "none selected: run `luxxon workspaces select ID`" in unselected.stdout

    device = Account.create().address
    registered = op.json(
        "operators", "register", "--workspace", first_id, "--label", "drone-1",
        "--device-address", device, "--kind", "drone",
    )  # fmt: skip
    assert registered["workspaceId"] == first_id and registered["deviceAddress"] == device
    listed = op.json_list("workspaces", "list")
    assert [(row["workspaceId"], row["selected"]) for row in listed] == [
        (first_id, True),
        (second_id, False),
    ]
    # a command naming the other workspace moves the session there by itself
    assert op.json_list("operators", "list", "--workspace", second_id) == []
    human = op.run("workspaces", "list").stdout.splitlines()
    (marked,) = [line for line in human if line.split()[:1] == ["*"]]
    assert second_id in marked and "second-day" in marked

    selected = op.json("workspaces", "select", first_id)
    assert selected == {
        "workspaceId": first_id,
        "slug": "first-day",
        "name": "One",
        "walletAddress": wallet["address"],
    }
    (operator,) = op.json_list("operators", "list", "--workspace", first_id)
    assert operator["label"] == "drone-1"

    stranger = op.run("workspaces", "select", "ws_not_mine", ok=False)
    assert stranger.returncode == 1 and stranger.stdout == ""
    (line,) = stranger.stderr.strip().splitlines()
    assert line.startswith("error: WORKSPACE_MISMATCH: you do not act for this workspace")

    keystore = json.loads((op.profile_dir / "keystore.json").read_text())
    private_key = bytes(Account.decrypt(keystore, PASSPHRASE)).hex()
    cookie = json.loads((op.profile_dir / "session.json").read_text())["lxSession"]
    op.assert_no_secret_leaked([private_key, cookie])


MEDIA_WAIT_SECONDS = 60.0
TOLD_MEDIA = re.compile(
    r"publisher connected, (\d+) frames received, last \d+\.\d s ago \((\S+Z)\)"
)


def test_sessions_show_tells_the_stub_ingests_media_liveness(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """With the stub's WHIP ingest, `sessions show` says whether a picture is arriving."""
    with serve_stub(tmp_path_factory.mktemp("video-stub")) as video_stub:
        op = Operator(video_stub, tmp_path_factory.mktemp("video-operator"))
        op.json("wallet", "new")
        op.set_up_supplier("ingest-check", 4.711, -74.072)
        session_id = op.consumer_request(4.711, -74.072)
        op.run("sessions", "accept", session_id)
        op.run("sessions", "start", session_id)

        def video_json() -> dict[str, Any]:
            video = op.json("sessions", "show", session_id)["video"]
            assert isinstance(video, dict)
            return video

        def video_told() -> str:
            lines = op.run("sessions", "show", session_id).stdout.splitlines()
            (line,) = [line for line in lines if line.split()[:1] == ["video"]]
            return " ".join(line.split()[1:])

        assert video_json() == {"connected": False, "framesReceived": 0}
        assert video_told() == "no publisher connected, no frame received yet"

        # a real publisher (the agent's own), its whipUrl fetched from the API by session id
        publisher = subprocess.Popen(
            [
                *LUXXON_AGENT,
                "publish",
                "--session",
                session_id,
                "--loopback",
                "--source",
                "testsrc://?size=320x240&fps=15",
                "--seconds",
                "120",
            ],  # fmt: skip
            env=op.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + MEDIA_WAIT_SECONDS
            video = video_json()
            while not (video["connected"] and video["framesReceived"] >= 10):
                assert time.monotonic() < deadline, f"no media reached the ingest: {video}"
                assert publisher.poll() is None, "the publisher exited"
                time.sleep(0.5)
                video = video_json()
            told = TOLD_MEDIA.fullmatch(video_told())
            assert told is not None, video_told()
            # read after the JSON: as many frames or more, a frame as new or newer
            assert int(told[1]) >= video["framesReceived"]
            assert told[2] >= video["lastFrameAt"]
        finally:
            stop(publisher)
        op.assert_no_secret_leaked([stored_api_key(op)])


PROBE = f"""
import sys
sys.argv = ["luxxon", *sys.argv[1:]]
from luxxon_agent.cli.luxxon import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
sys.stderr.write("HEAVY=" + ",".join(heavy) + "\\n")
sys.exit(code)
"""
