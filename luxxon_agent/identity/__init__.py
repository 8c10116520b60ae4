"""Who the operator is: profiles, the wallet key, SIWE login and API keys.

Nothing heavy at import time: eth_account and keyring load inside the calls
that need them, so `luxxon --help` stays fast.
"""

from luxxon_agent.identity._api_key import (
    API_KEY_PREFIX_LENGTH,
    CREDENTIAL_NAME,
    ApiKeyStore,
    api_key_prefix,
    resolve_api_key,
)
from luxxon_agent.identity._profile import DEFAULT_PROFILE, Profile, default_config_dir
from luxxon_agent.identity._secret_store import SecretStore, keyring_available
from luxxon_agent.identity._siwe import create_workspace_signed, siwe_login
from luxxon_agent.identity._wallet import WalletStore, address_of, sign_message

__all__ = [
    "API_KEY_PREFIX_LENGTH",
    "ApiKeyStore",
    "CREDENTIAL_NAME",
    "DEFAULT_PROFILE",
    "Profile",
    "SecretStore",
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
