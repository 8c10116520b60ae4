"""Device keys: keyring when there is one, else a 0600 keystore; never printed."""

from __future__ import annotations

import json
import os
import stat

import keyring
import pytest
from keyring.backends import fail
from typer.testing import CliRunner

from luxxon_agent.errors import AuthError, ConfigError
from luxxon_agent.identity.device_key import DeviceKeyStore
from luxxon_agent.secret import Secret
from luxxon_agent.telemetry import TelemetryPayload, recover_signer, sign_sample
from tests.cli.fake_keyrings import MemoryKeyring
from tests.telemetry.helpers import CHAIN, T0


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def no_keyring():
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)


def test_without_keyring_a_0600_keystore_in_a_0700_dir(tmp_path, no_keyring):
    path = tmp_path / "keys" / "device.json"
    store = DeviceKeyStore(path)
    assert store.backend == "file"
    key, created = store.load_or_generate()
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["address"].lower() == key.address[2:].lower()
    again, created = DeviceKeyStore(path).load_or_generate()
    assert not created and again.address == key.address
    assert key.private_key.reveal()[2:] not in repr(key)
    # the key signs samples that recover to its address
    payload = TelemetryPayload.from_reading("s", T0, 1.0, 2.0, 3.0, "gps")
    assert recover_signer("s", sign_sample(key.signer(), payload, CHAIN), CHAIN) == key.address
    with pytest.raises(ConfigError, match="already exists"):
        store.generate()
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        store.load()


def test_a_passphrase_encrypts_the_keystore(tmp_path, no_keyring):
    path = tmp_path / "device.json"
    key = DeviceKeyStore(path, passphrase=Secret("correct horse")).generate()
    assert DeviceKeyStore(path, passphrase=Secret("correct horse")).load() == key
    with pytest.raises(AuthError, match="passphrase"):
        DeviceKeyStore(path, passphrase=Secret("wrong")).load()


def test_the_keyring_is_used_when_there_is_one(tmp_path, memory_keyring):
    store = DeviceKeyStore(name="drone-7")
    assert store.backend == "keyring"
    key = store.generate()
    stored = memory_keyring.entries[("luxxon-agent", "device-key/drone-7")]
    assert stored == key.private_key.reveal()
    assert DeviceKeyStore(name="drone-7").load() == key
    # an explicit file path wins over the keyring (the agent's device_key_file)
    assert DeviceKeyStore(tmp_path / "k.json").backend == "file"


def test_keygen_prints_the_address_never_the_key(tmp_path, no_keyring):
    from luxxon_agent.cli.agent import app

    path = tmp_path / "device.json"
    runner = CliRunner()
    first = runner.invoke(app, ["keygen", "--key-file", str(path), "--json"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["created"] is True and str(path) in report["store"]
    key = DeviceKeyStore(path).load()
    assert key is not None and key.address == report["address"]
    second = runner.invoke(app, ["keygen", "--key-file", str(path)])
    assert second.exit_code == 0
    assert second.stdout.strip() == key.address
    for output in (first.output, second.output):
        assert key.private_key.reveal()[2:] not in output
