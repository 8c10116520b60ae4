"""The device key under systemd: a keystore credential opened with a passphrase credential."""

from __future__ import annotations

from pathlib import Path

import pytest

from luxxon_agent.agent.credentials import (
    DEVICE_KEY_CREDENTIAL,
    PASSPHRASE_CREDENTIAL,
    load_device_signer,
)
from luxxon_agent.errors import AuthError
from luxxon_agent.identity.device_key import DeviceKeyStore
from luxxon_agent.secret import Secret


def test_passphrase_from_credentials_directory_before_environment(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    store = DeviceKeyStore(
        creds / DEVICE_KEY_CREDENTIAL, passphrase=Secret("right horse"), use_keyring=False
    )
    key = store.generate()
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    with pytest.raises(AuthError, match="wrong or missing passphrase"):
        load_device_signer(None, env)
    # the environment still works (interactive use)...
    signer = load_device_signer(None, env | {"LUXXON_DEVICE_KEY_PASSPHRASE": "right horse"})
    assert signer.address == key.address
    # ...but systemd's credential file comes first, and needs no environment at all
    (creds / PASSPHRASE_CREDENTIAL).write_text("right horse\n")
    assert load_device_signer(None, env).address == key.address
    wrong = env | {"LUXXON_DEVICE_KEY_PASSPHRASE": "wrong"}
    assert load_device_signer(None, wrong).address == key.address
