"""Payment passcodes at rest: peppered in the HSM, then salted and stretched with scrypt.

A 6-digit passcode has a million values: a salted slow hash alone only costs a thief of
the database a few hours per customer. So the passcode first goes through the HSM as
an HMAC-SM3 keyed token (`HSM.token`, a TOKEN key that never leaves it): without the HSM
the stored hashes cannot be tested at all. scrypt (n=2^14, r=8, p=1: 16 MiB, ~60 ms)
then makes each guess slow even for someone who can call the HSM.

Stored form (ASCII): `scrypt$14$8$1$<salt hex>$<hash hex>`, so the cost can be raised
later while old records still verify.
"""
from __future__ import annotations

import hashlib
import hmac
import os

PEPPER_KEY = "host/FACE_PEPPER"
LOG2_N, R, P, SALT_BYTES, HASH_BYTES = 14, 8, 1, 16, 32
MIN_DIGITS, MAX_DIGITS = 6, 12


class PasscodeError(ValueError):
    """A passcode that may not be set; the text never holds the passcode."""


def check_new(passcode: str) -> None:
    """Refuse what a stranger would try first: wrong length, non-digits, 111111, 123456."""
    if not isinstance(passcode, str) or not passcode.isascii() or not passcode.isdigit():
        raise PasscodeError("passcode must be decimal digits only")
    if not MIN_DIGITS <= len(passcode) <= MAX_DIGITS:
        raise PasscodeError(f"passcode must be {MIN_DIGITS} to {MAX_DIGITS} digits, got {len(passcode)}")
    steps = {(int(b) - int(a)) % 10 for a, b in zip(passcode, passcode[1:])}
    if steps in ({0}, {1}, {9}):
        raise PasscodeError("passcode must not be one repeated digit or a run like 123456 or 654321")


def _stretch(token: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(token, salt=salt, n=1 << log2_n, r=r, p=p, maxmem=256 * r * (1 << log2_n) + (1 << 20),
                          dklen=HASH_BYTES)


def make_record(token: str) -> str:
    """The stored form for a passcode whose HSM token is `token`."""
    salt = os.urandom(SALT_BYTES)
    digest = _stretch(token.encode("ascii"), salt, LOG2_N, R, P)
    return f"scrypt${LOG2_N}${R}${P}${salt.hex()}${digest.hex()}"


def matches(record: str, token: str) -> bool:
    try:
        scheme, log2_n, r, p, salt, digest = record.split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        want = bytes.fromhex(digest)
        got = _stretch(token.encode("ascii"), bytes.fromhex(salt), int(log2_n), int(r), int(p))
    except ValueError:
        raise PasscodeError("stored passcode record is malformed") from None
    return hmac.compare_digest(got, want)
