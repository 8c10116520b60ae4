"""Profile: a named set of local state (base URL, wallet address, session cookie) on disk.

Layout under `<user config dir>/luxxon/profiles/<name>/`, every file mode 0600:
    profile.json     base URL, wallet address and which store holds the key (no secrets)
    session.json     the lx_session cookie and the base URL it belongs to
    keystore.json    wallet key, eth-account scrypt keystore (only without a keyring)
    api-key          API key plaintext (only without a keyring)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from luxxon_agent.errors import ConfigError
from luxxon_agent.files import write_atomic
from luxxon_agent.secret import Secret

DEFAULT_PROFILE = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def default_config_dir() -> Path:
    """`$XDG_CONFIG_HOME/luxxon` (or the platform's equivalent)."""
    import platformdirs

    return Path(platformdirs.user_config_dir("luxxon", appauthor=False))


@dataclass(frozen=True)
class Profile:
    """One named profile; cheap to build, touches the disk only when asked."""

    name: str
    directory: Path

    @classmethod
    def open(cls, name: str | None = None, config_dir: Path | None = None) -> Profile:
        name = name or DEFAULT_PROFILE
        if not _NAME.match(name):
            raise ConfigError(f"invalid profile name {name!r}: use letters, digits, . _ -")
        root = config_dir or default_config_dir()
        return cls(name, root / "profiles" / name)

    # ---- non-secret settings ----------------------------------------------------

    def settings(self) -> dict[str, Any]:
        return _read_json(self.directory / "profile.json")

    def update_settings(self, **values: Any) -> None:
        settings = self.settings()
        settings.update(values)
        write_atomic(self.directory / "profile.json", json.dumps(settings, indent=2) + "\n")

    def base_url(self) -> str | None:
        value = self.settings().get("baseUrl")
        return value if isinstance(value, str) else None

    # ---- the wallet session cookie -------------------------------------------------

    def save_session(self, cookie: Secret, base_url: str) -> None:
        payload = {"baseUrl": base_url, "lxSession": cookie.reveal()}
        write_atomic(self.directory / "session.json", json.dumps(payload) + "\n")

    def load_session(self, base_url: str) -> Secret | None:
        """The saved cookie, if it was issued by `base_url` (a cookie never crosses servers)."""
        data = _read_json(self.directory / "session.json")
        value = data.get("lxSession")
        if not isinstance(value, str) or not value or data.get("baseUrl") != base_url:
            return None
        return Secret(value)

    def clear_session(self) -> bool:
        path = self.directory / "session.json"
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    def path(self, filename: str) -> Path:
        return self.directory / filename


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON; fix or delete it") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object; fix or delete it")
    return data
