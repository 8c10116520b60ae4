"""EIP-712 typed-data digests, secp256k1 signing and recovery, Ethereum addresses.

The ground floor for every signature Luxxon makes or checks: telemetry,
operator delegations (identity, the CLI) and the stub's verifiers import it.

Only what the telemetry sample and the operator delegation need: structs of
`string`, `address`, `uintN` and `intN` fields, no arrays, no nested structs.
Hashing follows EIP-712 exactly (`encodeType`, `typeHash`, `hashStruct`,
`"\\x19\\x01" ‖ domainSeparator ‖ hashStruct(message)`), so the digest equals
what eth-account, ethers or viem compute for the same typed data; the tests
check that against eth-account and a hand-built eth_abi construction.

Signing and recovery call libsecp256k1 through coincurve directly (the same
library eth-account's eth-keys backend uses when installed): a sample is
signed in tens of microseconds, and no slow web3 import is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from eth_hash.auto import keccak

from luxxon_agent.errors import SignatureError
from luxxon_agent.secret import Secret

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""Order of the secp256k1 group; a canonical signature has s ≤ N/2 (EIP-2)."""


def _check_type(type_name: str) -> None:
    if type_name in ("string", "address"):
        return
    for prefix in ("uint", "int"):
        if type_name.startswith(prefix):
            bits = type_name[len(prefix) :]
            if bits.isdigit() and 8 <= int(bits) <= 256 and int(bits) % 8 == 0:
                return
    raise ValueError(f"unsupported EIP-712 field type {type_name!r}")


@dataclass(frozen=True)
class StructType:
    """An EIP-712 struct type: a name and its `(type, name)` fields, in order."""

    name: str
    fields: tuple[tuple[str, str], ...]
    encoded: str = field(init=False, repr=False)
    type_hash: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for type_name, _ in self.fields:
            _check_type(type_name)
        body = ",".join(f"{t} {n}" for t, n in self.fields)
        object.__setattr__(self, "encoded", f"{self.name}({body})")
        object.__setattr__(self, "type_hash", keccak(self.encoded.encode()))

    def hash_struct(self, values: Mapping[str, object]) -> bytes:
        """`keccak256(typeHash ‖ encodeData(values))`."""
        parts = [self.type_hash]
        parts.extend(encode_value(t, values[n]) for t, n in self.fields)
        return keccak(b"".join(parts))

    def eip712_types(self) -> list[dict[str, str]]:
        """The `types` entry of the JSON form (eth_signTypedData_v4)."""
        return [{"name": n, "type": t} for t, n in self.fields]

    def typed_data(
        self, domain_name: str, domain_version: str, chain_id: int, message: dict[str, object]
    ) -> dict[str, object]:
        """The eth_signTypedData_v4 JSON of `message`, this type being the primary one."""
        return {
            "types": {
                "EIP712Domain": DOMAIN_TYPE.eip712_types(),
                self.name: self.eip712_types(),
            },
            "primaryType": self.name,
            "domain": {"name": domain_name, "version": domain_version, "chainId": chain_id},
            "message": message,
        }

    def digest(
        self, domain_name: str, domain_version: str, chain_id: int, message: Mapping[str, object]
    ) -> bytes:
        """The 32 bytes a wallet signs for `message` under that domain."""
        separator = domain_separator(domain_name, domain_version, chain_id)
        return typed_data_digest(separator, self.hash_struct(message))


DOMAIN_TYPE = StructType(
    "EIP712Domain", (("string", "name"), ("string", "version"), ("uint256", "chainId"))
)


def encode_value(type_name: str, value: object) -> bytes:
    """One field's 32-byte `encodeData` word."""
    if type_name == "string":
        if not isinstance(value, str):
            raise TypeError(f"string field needs str, got {type(value).__name__}")
        return _string_hash(value)
    if type_name == "address":
        raw = address_bytes(value)
        return b"\x00" * 12 + raw
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{type_name} field needs int, got {type(value).__name__}")
    if type_name.startswith("uint"):
        bits = int(type_name[4:])
        if not 0 <= value < 1 << bits:
            raise ValueError(f"{value} does not fit {type_name}")
        return value.to_bytes(32, "big")
    bits = int(type_name[3:])
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        raise ValueError(f"{value} does not fit {type_name}")
    # two's complement, sign-extended to 256 bits
    return (value % (1 << 256)).to_bytes(32, "big")


@lru_cache(maxsize=256)
def _string_hash(value: str) -> bytes:
    # session ids and source labels repeat every second: hash each once
    return keccak(value.encode("utf-8"))


@lru_cache(maxsize=64)
def domain_separator(name: str, version: str, chain_id: int) -> bytes:
    """`hashStruct(EIP712Domain{name, version, chainId})` (no verifyingContract, no salt)."""
    return DOMAIN_TYPE.hash_struct({"name": name, "version": version, "chainId": chain_id})


def typed_data_digest(separator: bytes, struct_hash: bytes) -> bytes:
    """The 32 bytes that are signed: `keccak256(0x19 0x01 ‖ domainSeparator ‖ hashStruct)`."""
    return keccak(b"\x19\x01" + separator + struct_hash)


# ---- addresses ---------------------------------------------------------------------


def address_bytes(value: object) -> bytes:
    """The 20 bytes of a `0x…` address string (any case); raises ValueError otherwise."""
    if not isinstance(value, str) or len(value) != 42 or not value.startswith(("0x", "0X")):
        raise ValueError(f"not an address: {value!r}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as exc:
        raise ValueError(f"not an address: {value!r}") from exc


def to_checksum_address(raw: bytes) -> str:
    """EIP-55 mixed-case form of a 20-byte address."""
    lower = raw.hex()
    hashed = keccak(lower.encode()).hex()
    pairs = zip(lower, hashed[:40], strict=True)
    return "0x" + "".join(c.upper() if c.isalpha() and int(h, 16) >= 8 else c for c, h in pairs)


def normalize_address(value: str) -> str:
    """Checksum form of an address given in any case."""
    return to_checksum_address(address_bytes(value))


def _address_of_public_key(uncompressed: bytes) -> str:
    return to_checksum_address(keccak(uncompressed[1:])[-20:])


# ---- signing ----------------------------------------------------------------------------


class KeySigner:
    """Signs 32-byte digests with one secp256k1 private key.

    The key stays inside; `repr()` shows only the address.
    """

    __slots__ = ("_key", "address")

    def __init__(self, private_key: Secret | bytes) -> None:
        from coincurve import PrivateKey

        raw = private_key if isinstance(private_key, bytes) else _key_bytes(private_key)
        if len(raw) != 32:
            raise SignatureError("a private key is 32 bytes")
        try:
            self._key = PrivateKey(raw)
        except ValueError as exc:
            raise SignatureError("not a valid secp256k1 private key") from exc
        self.address = _address_of_public_key(self._key.public_key.format(compressed=False))
        """Checksummed Ethereum address of the key."""

    def sign_digest(self, digest: bytes) -> bytes:
        """65 bytes `r ‖ s ‖ v` with v ∈ {27, 28} and low s, deterministic (RFC 6979)."""
        if len(digest) != 32:
            raise ValueError("a digest is 32 bytes")
        sig = self._key.sign_recoverable(digest, hasher=None)
        return sig[:64] + bytes([sig[64] + 27])

    def __repr__(self) -> str:
        return f"KeySigner({self.address})"


def _key_bytes(secret: Secret) -> bytes:
    text = secret.reveal().strip()
    if text.startswith(("0x", "0X")):
        text = text[2:]
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise SignatureError("a private key is 64 hex digits") from None


def signature_bytes(signature: str) -> bytes:
    """The 65 bytes of a `0x…` signature string; raises SignatureError otherwise."""
    text = signature[2:] if signature.startswith(("0x", "0X")) else signature
    if len(text) != 130:
        raise SignatureError("a signature is 65 bytes (130 hex digits)")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise SignatureError("a signature is hex") from None


def recover_address(digest: bytes, signature: bytes) -> str:
    """The checksummed address whose key made `signature` over `digest`.

    Accepts v only as 27 or 28 (what eth-account, ethers, viem and browser
    wallets produce) and refuses high-s signatures (EIP-2), so each signed
    payload has exactly one valid signature: the same (r, s) with v as 0/1
    would be a second encoding of it.
    """
    from coincurve import PublicKey

    if len(signature) != 65:
        raise SignatureError("a signature is 65 bytes")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    if signature[64] not in (27, 28):
        raise SignatureError("signature v must be 27 or 28")
    v = signature[64] - 27
    if not (0 < r < SECP256K1_N and 0 < s <= SECP256K1_N // 2):
        raise SignatureError("signature r/s out of range or s not canonical (EIP-2)")
    try:
        public = PublicKey.from_signature_and_message(
            signature[:64] + bytes([v]), digest, hasher=None
        )
    except ValueError as exc:
        raise SignatureError("signature does not recover to a public key") from exc
    return _address_of_public_key(public.format(compressed=False))
