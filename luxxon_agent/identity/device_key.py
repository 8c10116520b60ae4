"""Device keys: the key a drone signs its telemetry with, created on the device.

A drone can be lost or captured, so the workspace wallet (which receives the
earnings) never lives on it. Each device makes its own secp256k1 key; the
operator's wallet then delegates to its address (`luxxon operators register`),
and the server accepts the device's telemetry signatures until the delegation
expires or is revoked.

Storage, in order of preference:
  1. the OS keyring (service "luxxon-agent", entry "device-key/<name>"), when a
     real backend exists and no file path was configured;
  2. an eth-account (V3) keystore file, mode 0600 in a 0700 directory. With a
     passphrase it is encrypted with pbkdf2; without one (a headless drone
     has nobody to type it) the file permissions are the protection, and
     the keystore format only makes the key importable into any Ethereum tool.
"""

from __future__ import annotations

import json
import logging
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from luxxon_agent.errors import AuthError, ConfigError
from luxxon_agent.files import write_atomic
from luxxon_agent.secret import Secret

if TYPE_CHECKING:
    from luxxon_agent.eip712 import KeySigner

logger = logging.getLogger(__name__)

KEYRING_SERVICE = "luxxon-agent"
APP_NAME = "luxxon-agent"
PASSPHRASE_ITERATIONS = 600_000
"""pbkdf2-sha256 rounds when a passphrase protects the file (OWASP 2023 guidance)."""
DeviceKeyBackend = Literal["keyring", "file"]


def default_device_key_path(name: str = "default") -> Path:
    """`<user data dir>/luxxon-agent/device-keys/<name>.json` (XDG_DATA_HOME honoured)."""
    from platformdirs import user_data_path

    return user_data_path(APP_NAME, appauthor=False) / "device-keys" / f"{name}.json"


@dataclass(frozen=True)
class DeviceKey:
    """A device's signing key and where it is kept. The key shows as *** in reprs."""

    address: str
    private_key: Secret
    location: str
    """Human description of the store: keyring entry or file path."""

    def signer(self) -> KeySigner:
        from luxxon_agent.eip712 import KeySigner

        return KeySigner(self.private_key)


class DeviceKeyStore:
    """Creates and loads one named device key.

    `path` forces the keystore file (the agent's `device_key_file`); without
    it the keyring is used when one works, else the default file path.
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        name: str = "default",
        passphrase: Secret | None = None,
        use_keyring: bool | None = None,
    ) -> None:
        if not name or "/" in name or name.startswith("."):
            raise ConfigError(f"device key name {name!r} must be a plain word like 'default'")
        self.name = name
        self._passphrase = passphrase
        self._path = path
        if use_keyring is None:
            use_keyring = path is None and _keyring_works()
        self.backend: DeviceKeyBackend = "keyring" if use_keyring else "file"

    @property
    def path(self) -> Path:
        return self._path or default_device_key_path(self.name)

    @property
    def keyring_entry(self) -> str:
        return f"device-key/{self.name}"

    def describe(self) -> str:
        if self.backend == "keyring":
            return f"keyring (service {KEYRING_SERVICE!r}, entry {self.keyring_entry!r})"
        return f"keystore file {self.path} (mode 0600)"

    def load(self) -> DeviceKey | None:
        """The stored key, or None when there is none yet."""
        raw = self._keyring_get() if self.backend == "keyring" else self._file_get()
        if raw is None:
            return None
        return self._device_key(raw)

    def generate(self, *, replace: bool = False) -> DeviceKey:
        """Make a new random key and store it; refuses to overwrite unless `replace`."""
        if not replace and self.load() is not None:
            raise ConfigError(
                f"a device key already exists in {self.describe()}; use --force to replace it"
            )
        raw = _random_private_key()
        if self.backend == "keyring":
            self._keyring_set(raw)
        else:
            self._file_set(raw)
        key = self._device_key(raw)
        logger.info("device key %s created in %s", key.address, self.describe())
        return key

    def load_or_generate(self) -> tuple[DeviceKey, bool]:
        """(key, created): the existing key, or a new one."""
        existing = self.load()
        if existing is not None:
            return existing, False
        return self.generate(), True

    def _device_key(self, raw: bytes) -> DeviceKey:
        from luxxon_agent.eip712 import KeySigner

        secret = Secret("0x" + raw.hex())
        return DeviceKey(
            address=KeySigner(raw).address, private_key=secret, location=self.describe()
        )

    # ---- keyring -------------------------------------------------------------------------

    def _keyring_get(self) -> bytes | None:
        import keyring
        from keyring.errors import KeyringError

        try:
            value = keyring.get_password(KEYRING_SERVICE, self.keyring_entry)
        except KeyringError as exc:
            raise AuthError(f"keyring read failed for {self.keyring_entry}: {exc}") from exc
        return _parse_hex_key(value) if value else None

    def _keyring_set(self, raw: bytes) -> None:
        import keyring
        from keyring.errors import KeyringError

        try:
            keyring.set_password(KEYRING_SERVICE, self.keyring_entry, "0x" + raw.hex())
        except KeyringError as exc:
            raise AuthError(f"keyring refused the device key: {exc}") from exc

    # ---- keystore file ---------------------------------------------------------------------

    def _file_get(self) -> bytes | None:
        path = self.path
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            return None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{path} is readable by other users (mode {stat.filemode(mode)}); "
                f"run: chmod 600 {path}"
            )
        try:
            keystore = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path} is not a keystore file: {exc}") from exc
        from eth_account import Account

        try:
            return bytes(Account.decrypt(keystore, self._passphrase_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthError(f"cannot decrypt {path}: wrong or missing passphrase") from exc

    def _file_set(self, raw: bytes) -> None:
        from eth_account import Account

        passphrase = self._passphrase_text()
        # without a passphrase the KDF protects nothing: don't spend seconds on it
        iterations = PASSPHRASE_ITERATIONS if passphrase else 1
        keystore = Account.encrypt(raw, passphrase, kdf="pbkdf2", iterations=iterations)
        write_atomic(self.path, json.dumps(keystore) + "\n")

    def _passphrase_text(self) -> str:
        return self._passphrase.reveal() if self._passphrase is not None else ""


def _keyring_works() -> bool:
    from luxxon_agent.identity import keyring_available

    return keyring_available() is not None


def _random_private_key() -> bytes:
    from luxxon_agent.eip712 import SECP256K1_N

    while True:  # loops again with probability ~2^-128
        raw = secrets.token_bytes(32)
        if 0 < int.from_bytes(raw, "big") < SECP256K1_N:
            return raw


def _parse_hex_key(text: str) -> bytes:
    value = text.strip().removeprefix("0x")
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise AuthError("the stored device key is not hex") from exc
    if len(raw) != 32:
        raise AuthError("the stored device key is not 32 bytes")
    return raw
