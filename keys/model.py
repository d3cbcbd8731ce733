"""Keys as typed values: algorithm, usage, version and check value, never shown.

A `Key` is what the rest of the system passes around. Its `repr`/`str` show the
algorithm, usage, version and KCV only; the bytes are reachable through `material`
for the code that must use them (ciphers, wrapping), and nowhere in text.
"""
from __future__ import annotations

import enum
import hmac
import os
from functools import cached_property

from .errors import InvalidKey, KeyUsageError
from .symmetric import Algorithm, BlockCipher


class KeyAlgorithm(str, enum.Enum):
    SM4 = "SM4"
    TDES = "TDES"
    AES = "AES"
    SM2 = "SM2"  # a private scalar; wrapped like the others, used by keys.sm2

    @property
    def symmetric(self) -> Algorithm:
        if self is KeyAlgorithm.SM2:
            raise InvalidKey("SM2 keys are not block-cipher keys")
        return Algorithm(self.value)

    @property
    def key_sizes(self) -> tuple[int, ...]:
        return (32,) if self is KeyAlgorithm.SM2 else self.symmetric.key_sizes

    @property
    def code(self) -> str:
        """One-character code in key block headers and envelopes."""
        return {"SM4": "S", "TDES": "T", "AES": "A", "SM2": "E"}[self.value]

    @classmethod
    def from_code(cls, code: str) -> "KeyAlgorithm":
        for alg in cls:
            if alg.code == code:
                return alg
        raise InvalidKey(f"unknown key algorithm code {code!r}")


class KeyUsage(str, enum.Enum):
    # terminal keys (China UnionPay POS naming)
    TMK = "TMK"  # terminal master key: wraps the working keys below
    TPK = "TPK"  # PIN encryption
    TAK = "TAK"  # message authentication (field 64)
    TDK = "TDK"  # data encryption (track data, PAN, sensitive private fields)
    # zone keys between the acquirer and a channel / issuer
    ZMK = "ZMK"
    ZPK = "ZPK"
    ZAK = "ZAK"
    # the HSM's own local master key
    LMK = "LMK"
    # issuer master keys for EMV application cryptograms, secure messaging, CVN
    IMK_AC = "IMK_AC"
    IMK_SMI = "IMK_SMI"
    IMK_SMC = "IMK_SMC"
    ICC_AC = "ICC_AC"  # a card's own AC master key, derived from IMK_AC (option A)
    # device keys
    SEAL = "SEAL"  # TEE sealed-storage key
    SIGN = "SIGN"  # SM2 signing key (host or device)
    ENC = "ENC"  # SM2 encryption key pair
    TOKEN = "TOKEN"  # keyed PAN tokens (HMAC-SM3): equal PANs, equal tokens, no PAN

    @property
    def wraps_keys(self) -> bool:
        return self in _KEY_ENCRYPTION_USAGES

    @property
    def code(self) -> str:
        return _USAGE_CODES[self]

    @classmethod
    def from_code(cls, code: str) -> "KeyUsage":
        try:
            return _CODE_USAGES[code]
        except KeyError:
            raise InvalidKey(f"unknown key usage code {code!r}") from None


_KEY_ENCRYPTION_USAGES = frozenset({KeyUsage.TMK, KeyUsage.ZMK, KeyUsage.LMK})
# Two-character codes for key block headers; TR-31's where one exists.
_USAGE_CODES = {
    KeyUsage.TMK: "K1", KeyUsage.TPK: "P0", KeyUsage.TAK: "M1", KeyUsage.TDK: "D0",
    KeyUsage.ZMK: "K0", KeyUsage.ZPK: "P1", KeyUsage.ZAK: "M0", KeyUsage.LMK: "KL",
    KeyUsage.IMK_AC: "E0", KeyUsage.IMK_SMI: "E2", KeyUsage.IMK_SMC: "E1", KeyUsage.ICC_AC: "E5",
    KeyUsage.SEAL: "S0", KeyUsage.SIGN: "S1", KeyUsage.ENC: "S2", KeyUsage.TOKEN: "T0",
}
_CODE_USAGES = {v: k for k, v in _USAGE_CODES.items()}


class Key:
    """A key with its binding. Equality is constant-time over all fields."""

    __slots__ = ("algorithm", "usage", "version", "_material", "__dict__")

    def __init__(self, algorithm: KeyAlgorithm | str, usage: KeyUsage | str, material: bytes, version: int = 1):
        algorithm = KeyAlgorithm(algorithm)
        usage = KeyUsage(usage)
        material = bytes(material)
        if len(material) not in algorithm.key_sizes:
            raise InvalidKey(
                f"{algorithm.value} {usage.value} key must be "
                f"{' or '.join(map(str, algorithm.key_sizes))} bytes, got {len(material)}"
            )
        if not 0 <= int(version) <= 0xFFFF:
            raise InvalidKey(f"key version must be 0..65535, got {version}")
        self.algorithm = algorithm
        self.usage = usage
        self.version = int(version)
        self._material = material

    @classmethod
    def generate(cls, algorithm: KeyAlgorithm | str, usage: KeyUsage | str, version: int = 1,
                 length: int | None = None) -> "Key":
        algorithm = KeyAlgorithm(algorithm)
        if algorithm is KeyAlgorithm.SM2:
            from .sm2 import SM2PrivateKey

            return cls(algorithm, usage, SM2PrivateKey.generate().private_bytes(), version)
        return cls(algorithm, usage, os.urandom(length or algorithm.key_sizes[0]), version)

    @property
    def material(self) -> bytes:
        return self._material

    @cached_property
    def cipher(self) -> BlockCipher:
        return BlockCipher(self.algorithm.symmetric, self._material)

    @cached_property
    def kcv(self) -> str:
        """Check value as 6 hex digits: E_K(zero block) for block-cipher keys,
        SM3 of the public key for SM2 keys."""
        if self.algorithm is KeyAlgorithm.SM2:
            from .hashes import sm3
            from .sm2 import SM2PrivateKey

            return sm3(SM2PrivateKey.from_bytes(self._material).public_key.to_bytes())[:3].hex().upper()
        return self.cipher.kcv(3).hex().upper()

    def require(self, *usages: KeyUsage) -> "Key":
        if self.usage not in usages:
            allowed = ", ".join(u.value for u in usages)
            raise KeyUsageError(f"key {self.usage.value} v{self.version} presented where {allowed} is required")
        return self

    def with_version(self, version: int) -> "Key":
        return Key(self.algorithm, self.usage, self._material, version)

    def __repr__(self) -> str:
        return f"<Key {self.algorithm.value} {self.usage.value} v{self.version} kcv={self.kcv}>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Key):
            return NotImplemented
        return (self.algorithm, self.usage, self.version) == (other.algorithm, other.usage, other.version) \
            and hmac.compare_digest(self._material, other._material)

    def __hash__(self) -> int:
        return hash((self.algorithm, self.usage, self.version, self.kcv))

    def __reduce__(self):
        raise TypeError("Key objects are not picklable: wrap them in a key block")
