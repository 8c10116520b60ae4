"""Who the operator is: profiles, the wallet key, SIWE login and API keys.

Nothing heavy at import time: eth_account and keyring load inside the calls
that need them, so `luxxon --help` stays fast.
"""

from luxxon_agent.identity._api_key import (
    CREDENTIAL_NAME,
    ApiKeyStore,
    api_key_prefix,
    resolve_api_key,
)
from luxxon_agent.identity._profile import Profile, default_config_dir
from luxxon_agent.identity._secret_store import SecretStore, StoreKind, keyring_available
from luxxon_agent.identity._siwe import create_workspace_signed, siwe_login
from luxxon_agent.identity._wallet import WalletStore, address_of, sign_message

__all__ = [
    "ApiKeyStore",
    "CREDENTIAL_NAME",
    "Profile",
    "SecretStore",
    "StoreKind",
    "WalletStore",
    "address_of",
    "api_key_prefix",
    "create_workspace_signed",
    "default_config_dir",
    "keyring_available",
    "resolve_api_key",
    "sign_message",
    "siwe_login",
]
