"""Keyring backends for identity tests: in memory, broken, and absent (the fail backend)."""

from __future__ import annotations

from collections.abc import Iterator

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from tests.cli.fake_keyrings import MemoryKeyring


@pytest.fixture
def use_keyring() -> Iterator[object]:
    """Install a backend for one test and restore the previous one after."""
    previous = keyring.get_keyring()
    installed: list[KeyringBackend] = []

    def install(backend: KeyringBackend) -> KeyringBackend:
        keyring.set_keyring(backend)
        installed.append(backend)
        return backend

    yield install
    keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring(use_keyring) -> MemoryKeyring:  # type: ignore[no-untyped-def]
    return use_keyring(MemoryKeyring())


@pytest.fixture
def no_keyring(use_keyring) -> KeyringBackend:  # type: ignore[no-untyped-def]
    return use_keyring(fail.Keyring())
