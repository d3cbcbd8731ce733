"""Typed errors of the crypto core.

Messages name the field and the reason, never key bytes, PINs or PANs.
"""


class CryptoError(Exception):
    """Base of every error raised by keys/."""


class SM2Unavailable(CryptoError):
    """The system libcrypto cannot do SM2 (missing, too old, or built without it)."""


class InvalidSignature(CryptoError):
    """A signature did not verify."""


class DecryptionError(CryptoError):
    """A ciphertext failed its integrity check or has the wrong shape."""


class InvalidKey(CryptoError):
    """Key material of the wrong length, format or curve."""


class MACError(CryptoError):
    """A message authentication code did not verify."""


class PinBlockError(CryptoError):
    """A PIN or PIN block is malformed (length, digits, format nibble, padding)."""


class KeyUsageError(CryptoError):
    """A key was presented for a use its binding does not allow."""


class KeyBlockError(CryptoError):
    """A key block is malformed or failed its integrity check."""


class EnvelopeError(CryptoError):
    """A key envelope is malformed, forged, stale, replayed or meant for another terminal."""


class KeyNotFound(CryptoError):
    """The HSM holds no key under that name."""
