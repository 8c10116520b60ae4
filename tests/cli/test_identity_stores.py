"""Profiles, the wallet store (keyring and scrypt keystore), API key resolution, SIWE signing."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

import luxxon_agent.identity as identity
from luxxon_agent.api import AsyncLuxxonClient
from luxxon_agent.errors import AuthError, ConfigError
from luxxon_agent.identity import (
    ApiKeyStore,
    Profile,
    WalletStore,
    create_workspace_signed,
    resolve_api_key,
    siwe_login,
)
from luxxon_agent.models import Role
from luxxon_agent.secret import Secret
from tests.cli.fake_keyrings import BrokenKeyring

KEY = "0x" + "4c" * 32
ADDRESS = Account.from_key(KEY).address
NOW = "2026-05-13T08:42:00.123Z"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def profile(tmp_path: Path) -> Profile:
    return Profile.open("test", config_dir=tmp_path)


def test_exported_members() -> None:
    assert identity.__all__ == sorted(identity.__all__)
    assert all(hasattr(identity, name) for name in identity.__all__)


def test_profile_name_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        Profile.open("../escape", config_dir=tmp_path)
    assert Profile.open(None, config_dir=tmp_path).name == "default"


def test_session_cookie_is_private_and_bound_to_its_server(profile: Profile) -> None:
    profile.save_session(Secret("cookie-value"), "http://127.0.0.1:9/api/v1")
    path = profile.path("session.json")
    assert mode(path) == 0o600
    assert profile.load_session("http://127.0.0.1:9/api/v1") == Secret("cookie-value")
    assert profile.load_session("https://api.luxxon.dev/api/v1") is None
    assert profile.clear_session() is True
    assert profile.load_session("http://127.0.0.1:9/api/v1") is None


def test_wallet_falls_back_to_scrypt_keystore_without_keyring(profile: Profile, no_keyring) -> None:
    asked: list[bool] = []

    def passphrase(new: bool) -> Secret:
        asked.append(new)
        return Secret("correct horse")

    store = WalletStore(profile, passphrase)
    address, kind = store.import_key(Secret(KEY))
    assert (address, kind) == (ADDRESS, "file")
    keystore_path = profile.path("keystore.json")
    assert mode(keystore_path) == 0o600
    keystore = json.loads(keystore_path.read_text())
    assert keystore["crypto"]["kdf"] == "scrypt"
    assert KEY[2:] not in keystore_path.read_text()
    assert store.private_key() == Secret(KEY)
    assert asked == [True, False]
    assert "keystore.json" in store.describe()

    wrong = WalletStore(profile, lambda new: Secret("wrong"))
    with pytest.raises(AuthError, match="passphrase"):
        wrong.private_key()


def test_wallet_in_keyring_when_one_works(profile: Profile, memory_keyring) -> None:
    store = WalletStore(profile)  # no passphrase source: the keyring path must not ask
    address, kind = store.import_key(Secret(KEY))
    assert kind == "keyring" and address == ADDRESS
    assert memory_keyring.entries[("luxxon", "test/wallet")] == KEY
    assert not profile.path("keystore.json").exists()
    assert store.private_key() == Secret(KEY)
    assert WalletStore(profile).address() == ADDRESS


def test_wallet_refuses_to_overwrite_another_key(profile: Profile, memory_keyring) -> None:
    store = WalletStore(profile)
    store.import_key(Secret(KEY))
    with pytest.raises(ConfigError, match="already has wallet"):
        store.create()
    address, _ = store.create(replace=True)
    assert address != ADDRESS and store.address() == address


def test_wallet_import_rejects_garbage(profile: Profile, memory_keyring) -> None:
    with pytest.raises(ConfigError, match="not a private key"):
        WalletStore(profile).import_key(Secret("0x1234"))


def test_missing_wallet_is_auth_error(profile: Profile, memory_keyring) -> None:
    with pytest.raises(AuthError, match="luxxon wallet new"):
        WalletStore(profile).private_key()


def test_broken_keyring_falls_back_to_file(profile: Profile, use_keyring) -> None:
    use_keyring(BrokenKeyring())
    store = ApiKeyStore(profile)
    assert store.save(Secret("lxxn_test_" + "a" * 30)) == "file"
    assert mode(profile.path("api-key")) == 0o600
    assert store.load() == Secret("lxxn_test_" + "a" * 30)


def test_api_key_resolution_order(profile: Profile, memory_keyring, tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    ApiKeyStore(profile).save(Secret("lxxn_test_stored"))
    assert memory_keyring.entries[("luxxon", "test/api-key")] == "lxxn_test_stored"

    key, source = resolve_api_key(profile, credentials_directory=str(creds))
    assert key == Secret("lxxn_test_stored") and "keyring" in source

    (creds / "luxxon-api-key").write_text("lxxn_live_credential\n")
    key, source = resolve_api_key(profile, credentials_directory=str(creds))
    assert key == Secret("lxxn_live_credential") and "credential" in source

    key, _ = resolve_api_key(profile, explicit="lxxn_live_flag", credentials_directory=str(creds))
    assert key == Secret("lxxn_live_flag")


def test_missing_api_key_is_one_line_auth_error(profile: Profile, no_keyring) -> None:
    with pytest.raises(AuthError) as info:
        resolve_api_key(profile, credentials_directory=None)
    text = str(info.value)
    assert "\n" not in text and "LUXXON_API_KEY" in text and "luxxon keys create" in text


def _signing_server(seen: dict[str, object]) -> httpx.MockTransport:
    """Issues challenges naming the wallet, and checks real signatures like a server would."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        path = request.url.path
        if path.endswith("/challenge"):
            message = (
                f"example.test wants you to sign in:\n{body['walletAddress']}\nNonce: nonce12345"
            )
            seen["message"] = message
            data = {"nonce": "nonce12345", "message": message, "expiresAt": NOW}
            return httpx.Response(200, json=data)
        recovered = Account.recover_message(
            encode_defunct(text=str(seen["message"])), signature=body["signature"]
        )
        seen["recovered"] = recovered
        if path.endswith("/login"):
            data = {"walletAddress": recovered, "memberships": [], "expiresAt": NOW}
            return httpx.Response(
                200, json=data, headers={"Set-Cookie": "lx_session=abc; HttpOnly"}
            )
        seen["create"] = body
        data = {
            "id": "ws_1",
            "slug": body["slug"],
            "name": body["name"],
            "walletAddress": recovered,
            "roles": body["roles"],
            "createdAt": NOW,
            "createdByWallet": recovered,
        }
        return httpx.Response(201, json=data)

    return httpx.MockTransport(handler)


async def test_siwe_login_signs_the_message_as_given() -> None:
    seen: dict[str, object] = {}
    async with AsyncLuxxonClient("http://x/api/v1", transport=_signing_server(seen)) as client:
        result = await siwe_login(client, Secret(KEY))
        assert client.session_cookie == Secret("abc")
    assert seen["recovered"] == ADDRESS and result.wallet_address == ADDRESS


async def test_workspace_creation_is_signed_by_the_wallet() -> None:
    seen: dict[str, object] = {}
    async with AsyncLuxxonClient("http://x/api/v1", transport=_signing_server(seen)) as client:
        workspace = await create_workspace_signed(
            client, Secret(KEY), slug="acme", name="Acme", roles=[Role.SUPPLIER]
        )
    assert seen["recovered"] == ADDRESS and workspace.roles == [Role.SUPPLIER]
    assert seen["create"]["nonce"] == "nonce12345"  # type: ignore[index]


async def test_refuses_to_sign_a_challenge_for_another_wallet() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        message = "evil.test wants you to sign in:\n0x" + "11" * 20 + "\nNonce: nonce12345"
        return httpx.Response(
            200, json={"nonce": "nonce12345", "message": message, "expiresAt": NOW}
        )

    transport = httpx.MockTransport(handler)
    async with AsyncLuxxonClient("http://x/api/v1", transport=transport) as client:
        with pytest.raises(AuthError, match="not signing"):
            await siwe_login(client, Secret(KEY))
