"""Keyring backends for tests: one in memory, one that refuses to store."""

from __future__ import annotations

from keyring.backend import KeyringBackend
from keyring.errors import PasswordSetError


class MemoryKeyring(KeyringBackend):
    """A working keyring that keeps entries in a dict."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.entries.pop((service, username), None)


class BrokenKeyring(MemoryKeyring):
    """A keyring that exists but refuses to store (a locked Secret Service, say)."""

    def set_password(self, service: str, username: str, password: str) -> None:
        raise PasswordSetError("collection is locked")
