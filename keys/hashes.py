"""SM3 and HMAC-SM3 through `cryptography`."""
from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac as _hmac


def sm3(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
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
