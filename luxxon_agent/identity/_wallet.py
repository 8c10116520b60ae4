"""WalletStore: the operator's wallet key (keyring, or an eth-account scrypt keystore file)."""

from __future__ import annotations

import json
from collections.abc import Callable

from luxxon_agent.errors import AuthError, ConfigError
from luxxon_agent.identity._profile import Profile
from luxxon_agent.identity._secret_store import SecretStore, StoreKind
from luxxon_agent.secret import Secret

PassphraseSource = Callable[[bool], Secret]
"""Returns the keystore passphrase; the flag is True when a new keystore is written."""


class WalletStore(SecretStore):
    """The profile's wallet key; its address is kept in the clear in the profile settings."""

    def __init__(self, profile: Profile, passphrase: PassphraseSource | None = None) -> None:
        super().__init__(profile, "wallet", "keystore.json")
        self._passphrase = passphrase

    def address(self) -> str | None:
        value = self.profile.settings().get("walletAddress")
        return value if isinstance(value, str) else None

    def create(self, *, replace: bool = False) -> tuple[str, StoreKind]:
        """A new random key, stored; returns (address, store kind)."""
        from eth_account import Account

        account = Account.create()
        return self._store(Secret("0x" + bytes(account.key).hex()), account.address, replace)

    def import_key(self, private_key: Secret, *, replace: bool = False) -> tuple[str, StoreKind]:
        """Store an existing 32-byte hex key; returns (address, store kind)."""
        from eth_account import Account

        text = private_key.reveal().strip()
        try:
            account = Account.from_key(text)
        except (ValueError, TypeError) as exc:
            raise ConfigError("not a private key: expected 32 bytes of hex (0x...)") from exc
        return self._store(Secret("0x" + bytes(account.key).hex()), account.address, replace)

    def private_key(self) -> Secret:
        """The key itself, for signing; AuthError when the profile has none."""
        key = self.load()
        if key is None:
            raise AuthError(
                f"profile {self.profile.name!r} has no wallet: run `luxxon wallet new` or "
                "`luxxon wallet import`"
            )
        return key

    def _store(self, key: Secret, address: str, replace: bool) -> tuple[str, StoreKind]:
        existing = self.address()
        if existing and not replace and existing.lower() != address.lower():
            raise ConfigError(
                f"profile {self.profile.name!r} already has wallet {existing}; "
                "use another --profile (or --replace)"
            )
        kind = self.save(key)
        self.profile.update_settings(walletAddress=address)
        return address, kind

    def _ask(self, new: bool) -> Secret:
        if self._passphrase is None:
            raise ConfigError(
                "the wallet keystore needs a passphrase: set LUXXON_WALLET_PASSPHRASE"
            )
        return self._passphrase(new)

    def _encode_file(self, secret: Secret) -> str:
        from eth_account import Account
        from eth_typing import HexStr

        keystore = Account.encrypt(HexStr(secret.reveal()), self._ask(True).reveal(), kdf="scrypt")
        return json.dumps(keystore) + "\n"

    def _decode_file(self, text: str) -> Secret:
        from eth_account import Account

        try:
            keystore = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{self.profile.path(self.filename)} is not a keystore") from exc
        try:
            key = Account.decrypt(keystore, self._ask(False).reveal())
        except ValueError as exc:
            raise AuthError("wrong wallet passphrase (LUXXON_WALLET_PASSPHRASE or prompt)") from exc
        return Secret("0x" + bytes(key).hex())


def sign_message(private_key: Secret, message: str) -> str:
    """EIP-191 personal_sign of `message` exactly as given; 0x-hex signature."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    signed = Account.sign_message(encode_defunct(text=message), private_key=private_key.reveal())
    signature = str(signed.signature.hex())  # hexbytes < 1 kept the 0x, >= 1 drops it
    return signature if signature.startswith("0x") else "0x" + signature


def address_of(private_key: Secret) -> str:
    from eth_account import Account

    return str(Account.from_key(private_key.reveal()).address)
