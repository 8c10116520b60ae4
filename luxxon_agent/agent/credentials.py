"""Where the agent finds its two secrets: the operator API key and the device key.

API key, first found wins:
1. the file named by `api_key_file` of the operator, or `[api] key_file`;
2. `$CREDENTIALS_DIRECTORY/luxxon-api-key` (systemd `LoadCredential=`);
3. `$LUXXON_API_KEY`.

Device key (signs telemetry; never the workspace wallet):
1. the file named by `[agent] device_key_file` (64 hex digits);
2. `$CREDENTIALS_DIRECTORY/luxxon-device-key`;
3. the identity package's device key store (`luxxon-agent keygen`).

A keystore encrypted with a passphrase (`keygen --passphrase-file`) is opened
with, first found wins:
1. `$CREDENTIALS_DIRECTORY/luxxon-device-key-passphrase` (systemd
   `LoadCredential=`: the passphrase never enters the environment);
2. `$LUXXON_DEVICE_KEY_PASSPHRASE` (interactive and development use).
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from luxxon_agent.errors import AuthError, ConfigError
from luxxon_agent.identity import CREDENTIAL_NAME as API_KEY_CREDENTIAL
from luxxon_agent.secret import Secret

if TYPE_CHECKING:
    from luxxon_agent.eip712 import KeySigner

DEVICE_KEY_CREDENTIAL = "luxxon-device-key"
PASSPHRASE_CREDENTIAL = "luxxon-device-key-passphrase"


def resolve_agent_key(key_file: Path | None, env: Mapping[str, str]) -> tuple[Secret, str]:
    """The API key and a description of where it came from (never the key)."""
    if key_file is not None:
        return Secret(_read_secret(key_file, "API key")), f"file {key_file}"
    creds = env.get("CREDENTIALS_DIRECTORY")
    if creds:
        path = Path(creds) / API_KEY_CREDENTIAL
        if path.exists():
            return Secret(_read_secret(path, "API key", trusted=True)), f"credential {path}"
    value = env.get("LUXXON_API_KEY", "").strip()
    if value:
        return Secret(value), "LUXXON_API_KEY"
    raise AuthError(
        "no API key: set [api] key_file, a systemd credential "
        f"{API_KEY_CREDENTIAL} (LoadCredential=), or LUXXON_API_KEY"
    )


def load_device_signer(key_file: Path | None, env: Mapping[str, str]) -> KeySigner:
    """The `KeySigner` of the device key (see module doc for the order).

    A key file holds either 64 hex digits or an eth-account keystore (what
    `luxxon-agent keygen` writes), decrypted with the passphrase of
    `device_key_passphrase` when it has one.
    """
    from luxxon_agent.eip712 import KeySigner
    from luxxon_agent.errors import SignatureError
    from luxxon_agent.identity.device_key import DeviceKeyStore

    passphrase = device_key_passphrase(env)
    path: Path | None = key_file
    trusted = False
    creds = env.get("CREDENTIALS_DIRECTORY")
    if path is None and creds and (Path(creds) / DEVICE_KEY_CREDENTIAL).exists():
        path, trusted = Path(creds) / DEVICE_KEY_CREDENTIAL, True
    if path is None:
        store = DeviceKeyStore(passphrase=passphrase)
        stored = store.load()
        if stored is None:
            raise AuthError(
                "no device key: run `luxxon-agent keygen`, set [agent] device_key_file, "
                f"or provide a systemd credential {DEVICE_KEY_CREDENTIAL}"
            )
        return stored.signer()
    text = _read_secret(path, "device key", trusted=trusted)
    if text.startswith("{"):
        loaded = DeviceKeyStore(path, passphrase=passphrase, use_keyring=False).load()
        if loaded is None:
            raise ConfigError(f"device key file {path} does not exist")
        return loaded.signer()
    try:
        return KeySigner(Secret(text))
    except SignatureError as exc:
        raise ConfigError(f"{path}: not a device key ({exc})") from None


def device_key_passphrase(env: Mapping[str, str]) -> Secret | None:
    """The device keystore's passphrase, if any (see module doc for the order)."""
    creds = env.get("CREDENTIALS_DIRECTORY")
    if creds:
        path = Path(creds) / PASSPHRASE_CREDENTIAL
        if path.exists():
            return Secret(_read_secret(path, "device key passphrase", trusted=True))
    text = env.get("LUXXON_DEVICE_KEY_PASSPHRASE")
    return Secret(text) if text else None


def _read_secret(path: Path, what: str, *, trusted: bool = False) -> str:
    """The file's text; refuses a group/world-readable file unless systemd made it."""
    try:
        info = path.stat()
        text = path.read_text("utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{what} file {path}: {exc.strerror}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO) and not trusted:
        raise ConfigError(f"{what} file {path} is readable by others: chmod 600 {path}")
    if not text:
        raise ConfigError(f"{what} file {path} is empty")
    return text
