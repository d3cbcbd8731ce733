"""SM3 and HMAC-SM3.

SM3 goes through `hashlib` (the system OpenSSL 3 has SM3 in its default provider)
when it offers it: a copy of an empty hash object costs about 1.7 us for a 230-byte
request against 2.8 us for a `cryptography` Hash object made per call, and the host
digests every request. The result is checked against the GB/T 32905 vector at import;
without it, `cryptography` serves. HMAC-SM3 stays on `cryptography`, whose keyed
object copies fastest (`HMACSM3`).
"""
from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes, hmac as _hmac

_ABC = bytes.fromhex("66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0")


def _cryptography_sm3(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def _hashlib_sm3():
    """An SM3 function on a copied empty `hashlib` object, or None where OpenSSL lacks SM3."""
    try:
        empty = hashlib.new("sm3")
    except ValueError:
        return None

    def sm3(data: bytes) -> bytes:
        h = empty.copy()
        h.update(data)
        return h.digest()

    return sm3 if sm3(b"abc") == _ABC else None


sm3 = _hashlib_sm3() or _cryptography_sm3
sm3.__doc__ = "SM3 digest (32 bytes) of `data`."


class HMACSM3:
    """HMAC-SM3 under one key, its keyed state made once and copied per message (the key
    schedule is two SM3 compressions: a fresh HMAC object costs ~40% more)."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes):
        self._keyed = _hmac.HMAC(key, hashes.SM3())

    def __repr__(self) -> str:
        return "<HMACSM3>"

    def digest(self, data: bytes) -> bytes:
        h = self._keyed.copy()
        h.update(data)
        return h.finalize()


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    h = _hmac.HMAC(key, hashes.SM3())
    h.update(data)
    return h.finalize()


def hmac_sm3_verify(key: bytes, data: bytes, tag: bytes) -> bool:
    h = _hmac.HMAC(key, hashes.SM3())
    h.update(data)
    try:
        h.verify(tag)
        return True
    except Exception:
        return False
