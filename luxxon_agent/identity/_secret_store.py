"""SecretStore: one secret per (profile, item) in the OS keyring, or a 0600 file without one.

keyring on a headless box has no backend (`keyring.backends.fail`) or one that
errors; then the secret goes to a file in the profile directory. Which store
was used is recorded in the profile so that a read looks in the same place.
"""

from __future__ import annotations

import logging
from typing import Literal

from luxxon_agent.files import write_atomic
from luxxon_agent.identity._profile import Profile
from luxxon_agent.secret import Secret

logger = logging.getLogger(__name__)

KEYRING_SERVICE = "luxxon"
StoreKind = Literal["keyring", "file"]


def keyring_available() -> str | None:
    """The usable keyring backend's name, or None (no backend, or the fail backend)."""
    import keyring
    from keyring.backends import fail
    from keyring.errors import KeyringError

    try:
        backend = keyring.get_keyring()
    except (KeyringError, RuntimeError) as exc:
        logger.info("keyring unavailable: %s", exc)
        return None
    if isinstance(backend, fail.Keyring) or backend.priority <= 0:
        return None
    return f"{type(backend).__module__}.{type(backend).__name__}"


class SecretStore:
    """Reads and writes one named secret of a profile (`item` e.g. "wallet", "api-key")."""

    def __init__(self, profile: Profile, item: str, filename: str) -> None:
        self.profile = profile
        self.item = item
        self.filename = filename

    @property
    def username(self) -> str:
        return f"{self.profile.name}/{self.item}"

    def kind(self) -> StoreKind | None:
        """Where the secret was stored, as recorded in the profile."""
        kind = self.profile.settings().get(f"{self.item}Store")
        return kind if kind in ("keyring", "file") else None

    def describe(self, kind: StoreKind | None = None) -> str:
        kind = kind or self.kind()
        if kind == "keyring":
            return f"keyring (service {KEYRING_SERVICE!r}, entry {self.username!r})"
        return f"file {self.profile.path(self.filename)} (mode 0600)"

    def save(self, text: Secret) -> StoreKind:
        """Store in the keyring if one works, else the file; returns which."""
        if keyring_available() and self._keyring_set(text):
            kind: StoreKind = "keyring"
        else:
            write_atomic(self.profile.path(self.filename), self._encode_file(text))
            kind = "file"
        self.profile.update_settings(**{f"{self.item}Store": kind})
        return kind

    def load(self) -> Secret | None:
        kind = self.kind()
        if kind == "keyring":
            return self._keyring_get()
        if kind == "file":
            try:
                text = self.profile.path(self.filename).read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                return None
            return self._decode_file(text) if text else None
        return None

    def _encode_file(self, secret: Secret) -> str:
        """File form of the secret; plain text here (a subclass may encrypt)."""
        return secret.reveal() + "\n"

    def _decode_file(self, text: str) -> Secret:
        return Secret(text)

    def _keyring_set(self, text: Secret) -> bool:
        import keyring
        from keyring.errors import KeyringError

        try:
            keyring.set_password(KEYRING_SERVICE, self.username, text.reveal())
        except KeyringError as exc:
            logger.warning("keyring refused the %s secret (%s); using a file", self.item, exc)
            return False
        return True

    def _keyring_get(self) -> Secret | None:
        import keyring
        from keyring.errors import KeyringError

        try:
            value = keyring.get_password(KEYRING_SERVICE, self.username)
        except KeyringError as exc:
            logger.warning("keyring read failed for %s: %s", self.username, exc)
            return None
        return Secret(value) if value else None
