"""The SM2 digital envelope for remote key download.

The host encrypts a fresh key to the terminal's SM2 public key and signs the whole
envelope with its own SM2 key. Layout (big-endian, lengths in bytes):

    magic "KEV1" (4) | terminal id length (1) | terminal id (ASCII) |
    usage code (2) | algorithm code (1) | key version (2) | KCV (3) |
    nonce (16) | issued at, ms since the epoch (8) |
    ciphertext length (2) | SM2 ciphertext C1||C3||C2 of the key |
    signature r||s (64), SM2-with-SM3 over everything before it

The terminal verifies the signature first, then checks that the envelope names it,
that it is fresh (issued within `max_age_s`, not in the future beyond `max_skew_s`),
that the nonce is the one it asked for (when it asked) and has not been seen, and that
the key version is newer than what it holds; only then does it decrypt, and it checks
the KCV of what it decrypted.
"""
from __future__ import annotations

import hmac
import os
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass

from .errors import DecryptionError, EnvelopeError, InvalidSignature
from .model import Key, KeyAlgorithm, KeyUsage
from .sm2 import SM2PrivateKey, SM2PublicKey

MAGIC = b"KEV1"
NONCE_LEN = 16
SIG_LEN = 64


@dataclass(frozen=True)
class EnvelopeHeader:
    terminal_id: str
    usage: KeyUsage
    algorithm: KeyAlgorithm
    version: int
    kcv: str
    nonce: bytes
    issued_at_ms: int


def seal(host_key: SM2PrivateKey, terminal_pub: SM2PublicKey, terminal_id: str, key: Key,
         nonce: bytes | None = None, now: float | None = None) -> bytes:
    """Encrypt `key` to the terminal and sign the envelope with the host key."""
    tid = terminal_id.encode("ascii")
    if not 1 <= len(tid) <= 64:
        raise EnvelopeError("terminal id must be 1 to 64 ASCII characters")
    nonce = os.urandom(NONCE_LEN) if nonce is None else nonce
    if len(nonce) != NONCE_LEN:
        raise EnvelopeError(f"envelope nonce must be {NONCE_LEN} bytes")
    issued = int((time.time() if now is None else now) * 1000)
    ciphertext = terminal_pub.encrypt(key.material)
    body = (
        MAGIC + bytes([len(tid)]) + tid + key.usage.code.encode() + key.algorithm.code.encode()
        + struct.pack(">H", key.version) + bytes.fromhex(key.kcv) + nonce + struct.pack(">Q", issued)
        + struct.pack(">H", len(ciphertext)) + ciphertext
    )
    return body + host_key.sign(body)


def parse(envelope: bytes) -> tuple[EnvelopeHeader, bytes, bytes, bytes]:
    """Split an envelope into (header, ciphertext, signed body, signature); shape only."""
    try:
        if envelope[:4] != MAGIC:
            raise EnvelopeError("not a key envelope (bad magic)")
        n = envelope[4]
        tid = envelope[5 : 5 + n].decode("ascii")
        p = 5 + n
        usage = KeyUsage.from_code(envelope[p : p + 2].decode("ascii"))
        alg = KeyAlgorithm.from_code(envelope[p + 2 : p + 3].decode("ascii"))
        (version,) = struct.unpack(">H", envelope[p + 3 : p + 5])
        kcv = envelope[p + 5 : p + 8].hex().upper()
        nonce = envelope[p + 8 : p + 8 + NONCE_LEN]
        p += 8 + NONCE_LEN
        (issued,) = struct.unpack(">Q", envelope[p : p + 8])
        (clen,) = struct.unpack(">H", envelope[p + 8 : p + 10])
        p += 10
        ciphertext = envelope[p : p + clen]
        body, signature = envelope[: p + clen], envelope[p + clen :]
        if len(ciphertext) != clen or len(signature) != SIG_LEN:
            raise EnvelopeError("envelope is truncated or has trailing bytes")
    except EnvelopeError:
        raise
    except Exception as exc:  # struct/index/decode errors from a malformed envelope
        raise EnvelopeError(f"envelope is malformed: {type(exc).__name__}") from None
    return EnvelopeHeader(tid, usage, alg, version, kcv, nonce, issued), ciphertext, body, signature


class ReplayGuard:
    """What a terminal remembers between envelopes: nonces seen (bounded) and the
    newest key version installed per usage."""

    def __init__(self, capacity: int = 1024):
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._capacity = capacity
        self.versions: dict[KeyUsage, int] = {}

    def check(self, header: EnvelopeHeader) -> None:
        if header.nonce in self._seen:
            raise EnvelopeError("envelope replayed: nonce already used")
        held = self.versions.get(header.usage)
        if held is not None and header.version <= held:
            raise EnvelopeError(
                f"envelope replayed or stale: {header.usage.value} v{header.version} is not newer than v{held}"
            )

    def record(self, header: EnvelopeHeader) -> None:
        self._seen[header.nonce] = None
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        self.versions[header.usage] = header.version


def open_envelope(terminal_key: SM2PrivateKey, host_pub: SM2PublicKey, envelope: bytes, terminal_id: str,
                  guard: ReplayGuard | None = None, expected_nonce: bytes | None = None,
                  max_age_s: float = 300.0, max_skew_s: float = 30.0, now: float | None = None) -> Key:
    header, ciphertext, body, signature = parse(envelope)
    try:
        host_pub.verify(signature, body)
    except InvalidSignature:
        raise EnvelopeError("envelope signature does not verify under the host key") from None
    if header.terminal_id != terminal_id:
        raise EnvelopeError("envelope is addressed to another terminal")
    now_ms = (time.time() if now is None else now) * 1000
    if header.issued_at_ms > now_ms + max_skew_s * 1000:
        raise EnvelopeError("envelope is dated in the future")
    if now_ms - header.issued_at_ms > max_age_s * 1000:
        raise EnvelopeError(f"envelope is stale (older than {max_age_s:.0f} s)")
    if expected_nonce is not None and not hmac.compare_digest(expected_nonce, header.nonce):
        raise EnvelopeError("envelope does not answer this terminal's challenge (nonce mismatch)")
    if guard is not None:
        guard.check(header)
    try:
        material = terminal_key.decrypt(ciphertext)
    except DecryptionError:
        raise EnvelopeError("envelope key does not decrypt with this terminal's key") from None
    key = Key(header.algorithm, header.usage, material, header.version)
    if key.kcv != header.kcv:
        raise EnvelopeError("envelope key check value mismatch")
    if guard is not None:
        guard.record(header)
    return key
