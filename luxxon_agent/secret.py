"""A wrapper for secrets so that logs, reprs and tracebacks cannot leak them."""

from __future__ import annotations


class Secret:
    """Holds a secret string; `str()` and `repr()` show only a redacted hint.

    Call `reveal()` at the one place the plaintext is really needed
    (an Authorization header, a WHIP POST, a keystore write).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError("a secret must be a non-empty string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secret is not picklable")


def redact_url(url: str) -> str:
    """Keep scheme and host of a URL whose path is a credential (a whipUrl)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***"
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}/***"
