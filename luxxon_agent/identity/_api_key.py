"""API key resolution and storage for the `luxxon` commands."""

from __future__ import annotations

from pathlib import Path

from luxxon_agent.errors import AuthError
from luxxon_agent.identity._profile import Profile
from luxxon_agent.identity._secret_store import SecretStore
from luxxon_agent.secret import Secret

CREDENTIAL_NAME = "luxxon-api-key"
"""File name of the key inside systemd's $CREDENTIALS_DIRECTORY (LoadCredential=)."""


API_KEY_PREFIX_LENGTH = 20
"""A key's public prefix, as the server lists it, is its first 20 characters."""


def api_key_prefix(key: Secret) -> str:
    """The part of a key that may be shown: what the server calls its `prefix`."""
    return key.reveal()[:API_KEY_PREFIX_LENGTH]


class ApiKeyStore(SecretStore):
    """The profile's API key: keyring entry `<profile>/api-key`, or a 0600 file."""

    def __init__(self, profile: Profile) -> None:
        super().__init__(profile, "api-key", "api-key")

    def stored_prefix(self) -> str | None:
        """The prefix of the key stored now (the one a `save` would replace), if any."""
        stored = self.load()
        return api_key_prefix(stored) if stored is not None else None


def resolve_api_key(
    profile: Profile,
    *,
    explicit: str | None = None,
    credentials_directory: str | None = None,
) -> tuple[Secret, str]:
    """The API key and where it came from, in this order:

    1. `explicit` (--api-key / LUXXON_API_KEY),
    2. `$CREDENTIALS_DIRECTORY/luxxon-api-key` (a systemd credential),
    3. the profile's stored key (keyring, or its 0600 file without a keyring).
    """
    if explicit and explicit.strip():
        return Secret(explicit.strip()), "--api-key/LUXXON_API_KEY"
    if credentials_directory:
        path = Path(credentials_directory) / CREDENTIAL_NAME
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            text = ""
        if text:
            return Secret(text), f"credential {path}"
    store = ApiKeyStore(profile)
    stored = store.load()
    if stored is not None:
        return stored, store.describe()
    raise AuthError(
        "no API key: pass --api-key or set LUXXON_API_KEY, provide a systemd credential "
        f"{CREDENTIAL_NAME}, or run `luxxon keys create` for profile {profile.name!r}"
    )
