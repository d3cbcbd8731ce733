"""Key blocks: a key wrapped together with its usage, algorithm and version.

The TR-31 idea (version "D": CMAC-derived keys, CBC encryption with the MAC as IV),
with SM4 as the wrapping cipher. Layout (ASCII):

    header (16)  "S" | length (4 digits) | usage code (2) | algorithm (1) |
                 mode (1: "N") | version (4 hex) | exportability (1: E/N) | "00"
    payload      hex of SM4-CBC_KBEK,IV=MAC( key length in bits (2 bytes) || key ||
                 random padding to 48 bytes )
    MAC          hex of CMAC-SM4_KBAK( header || clear payload ), 16 bytes

KBEK and KBAK are derived from the key block protection key (KBPK, an SM4 key with a
wrapping usage: TMK, ZMK or LMK) as CMAC-SM4_KBPK(01 | 0000 or 0001 | 00 | 0005 | 0080)
(counter, usage: encryption or MAC, separator, algorithm "SM4-128", length in bits).
The header is authenticated, so changing the usage, version or algorithm of a block
breaks it; unwrapping checks the tag before anything else is believed.
"""
from __future__ import annotations

import hmac
import os
from dataclasses import dataclass

from .errors import KeyBlockError, KeyUsageError
from .mac import cmac
from .model import Key, KeyAlgorithm, KeyUsage
from .symmetric import Algorithm, BlockCipher

HEADER_LEN = 16
PAYLOAD_LEN = 48  # fixed: hides the key length (16/24/32) behind the padding
TOTAL_LEN = HEADER_LEN + 2 * PAYLOAD_LEN + 32


@dataclass(frozen=True)
class KeyBlockHeader:
    usage: KeyUsage
    algorithm: KeyAlgorithm
    version: int
    exportable: bool = True

    def encode(self) -> bytes:
        return (
            f"S{TOTAL_LEN:04d}{self.usage.code}{self.algorithm.code}N"
            f"{self.version:04X}{'E' if self.exportable else 'N'}00"
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "KeyBlockHeader":
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise KeyBlockError("key block header is not ASCII") from None
        if len(text) != HEADER_LEN or text[0] != "S":
            raise KeyBlockError("key block header: unknown version id (expected 'S')")
        if text[1:5] != f"{TOTAL_LEN:04d}":
            raise KeyBlockError(f"key block header: length field {text[1:5]!r} is not {TOTAL_LEN}")
        try:
            algorithm = KeyAlgorithm.from_code(text[7])
            usage = KeyUsage.from_code(text[5:7])
            version = int(text[9:13], 16)
        except Exception as exc:
            raise KeyBlockError(f"key block header: {exc}") from None
        if text[13] not in "EN":
            raise KeyBlockError(f"key block header: exportability {text[13]!r} must be E or N")
        return cls(usage, algorithm, version, text[13] == "E")


def _derive(kbpk: Key, usage_indicator: bytes) -> bytes:
    return cmac(Algorithm.SM4, kbpk.material, b"\x01" + usage_indicator + b"\x00" + b"\x00\x05" + b"\x00\x80")


def _check_kbpk(kbpk: Key) -> None:
    if kbpk.algorithm is not KeyAlgorithm.SM4:
        raise KeyUsageError(f"key block protection key must be SM4, got {kbpk.algorithm.value}")
    if not kbpk.usage.wraps_keys:
        raise KeyUsageError(f"a {kbpk.usage.value} key may not wrap keys (TMK, ZMK or LMK only)")


def wrap(kbpk: Key, key: Key, exportable: bool = True) -> str:
    """Wrap `key` under `kbpk`; returns the ASCII key block."""
    _check_kbpk(kbpk)
    header = KeyBlockHeader(key.usage, key.algorithm, key.version, exportable).encode()
    material = key.material
    payload = (len(material) * 8).to_bytes(2) + material
    payload += os.urandom(PAYLOAD_LEN - len(payload))
    tag = cmac(Algorithm.SM4, _derive(kbpk, b"\x00\x01"), header + payload)
    encrypted = BlockCipher(Algorithm.SM4, _derive(kbpk, b"\x00\x00")).encrypt_cbc(payload, tag)
    return (header + encrypted.hex().upper().encode() + tag.hex().upper().encode()).decode()


def unwrap(kbpk: Key, block: str | bytes, expect_usage: KeyUsage | tuple[KeyUsage, ...] | None = None) -> Key:
    """Check the integrity of `block` under `kbpk` and return its key.

    With `expect_usage`, a key bound to any other usage is refused (KeyUsageError)."""
    _check_kbpk(kbpk)
    raw = block.encode("ascii", "replace") if isinstance(block, str) else bytes(block)
    if len(raw) != TOTAL_LEN:
        raise KeyBlockError(f"key block must be {TOTAL_LEN} characters, got {len(raw)}")
    header_raw = raw[:HEADER_LEN]
    header = KeyBlockHeader.decode(header_raw)
    try:
        encrypted = bytes.fromhex(raw[HEADER_LEN : HEADER_LEN + 2 * PAYLOAD_LEN].decode("ascii"))
        tag = bytes.fromhex(raw[HEADER_LEN + 2 * PAYLOAD_LEN :].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise KeyBlockError("key block payload or MAC is not hex") from None
    payload = BlockCipher(Algorithm.SM4, _derive(kbpk, b"\x00\x00")).decrypt_cbc(encrypted, tag)
    expected = cmac(Algorithm.SM4, _derive(kbpk, b"\x00\x01"), header_raw + payload)
    if not hmac.compare_digest(expected, tag):
        raise KeyBlockError("key block integrity check failed (tampered, or wrapped under another key)")
    bits = int.from_bytes(payload[:2])
    if bits % 8 or bits // 8 not in header.algorithm.key_sizes:
        raise KeyBlockError("key block holds a key of an impossible length")
    key = Key(header.algorithm, header.usage, payload[2 : 2 + bits // 8], header.version)
    if expect_usage is not None:
        key.require(*(expect_usage if isinstance(expect_usage, tuple) else (expect_usage,)))
    return key


def peek_header(block: str | bytes) -> KeyBlockHeader:
    """Read a block's header without unwrapping (for listings; nothing is verified)."""
    raw = block.encode("ascii", "replace") if isinstance(block, str) else bytes(block)
    return KeyBlockHeader.decode(raw[:HEADER_LEN])
