"""EMV Book 2 RSA certificates with message recovery, and DDA/fDDA signed dynamic data.

Signing is raw RSA on a formatted block ("6A ... hash BC") as Python ints with pow();
keys come from `cryptography` and are used only through their numbers. SHA-1 is the
hash EMV specifies (hash algorithm indicator 01).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .oda import ALG_RSA, HASH_SHA1, ODAError, issuer_identifier, mmyy, pan_field, pan_from_field

HEADER, TRAILER, PAD = 0x6A, 0xBC, 0xBB
FORMAT_ISSUER, FORMAT_ICC, FORMAT_SDAD = 0x02, 0x04, 0x05


@dataclass(frozen=True)
class RSAPublic:
    modulus: int
    exponent: int

    @property
    def size(self) -> int:
        return (self.modulus.bit_length() + 7) // 8

    @property
    def modulus_bytes(self) -> bytes:
        return self.modulus.to_bytes(self.size, "big")

    @property
    def exponent_bytes(self) -> bytes:
        return self.exponent.to_bytes((self.exponent.bit_length() + 7) // 8, "big")

    def recover(self, data: bytes) -> bytes:
        """Raw RSA public operation, the EMV "recovery" of a signed block."""
        if len(data) != self.size:
            raise ODAError(f"signed block is {len(data)} bytes, the key modulus is {self.size}")
        value = int.from_bytes(data, "big")
        if value >= self.modulus:
            raise ODAError("signed block is not below the modulus")
        return pow(value, self.exponent, self.modulus).to_bytes(self.size, "big")


class RSAKeyPair:
    """An RSA private key; never printed."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        numbers = key.private_numbers()
        self._key = key
        self._d = numbers.d
        self.public = RSAPublic(numbers.public_numbers.n, numbers.public_numbers.e)

    @classmethod
    def generate(cls, bits: int, exponent: int = 3) -> "RSAKeyPair":
        return cls(rsa.generate_private_key(public_exponent=exponent, key_size=bits))

    @classmethod
    def from_pem(cls, pem: bytes) -> "RSAKeyPair":
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ODAError("not an RSA private key")
        return cls(key)

    def to_pem(self) -> bytes:
        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())

    def sign_block(self, block: bytes) -> bytes:
        if len(block) != self.public.size or block[0] != HEADER or block[-1] != TRAILER:
            raise ODAError("a block to sign is 6A .. BC and exactly the modulus length")
        return pow(int.from_bytes(block, "big"), self._d, self.public.modulus).to_bytes(self.public.size, "big")

    def __repr__(self) -> str:
        return f"<RSAKeyPair {self.public.modulus.bit_length()} bits e={self.public.exponent}>"

    def __reduce__(self):
        raise TypeError("an RSA key pair is not pickled; write it with to_pem")


def _sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def _split(key: bytes, room: int) -> tuple[bytes, bytes]:
    """(leftmost part padded with BB to `room`, remainder) of a modulus."""
    return key[:room].ljust(room, bytes([PAD])), key[room:]


def _join(leftmost: bytes, remainder: bytes, key_len: int, what: str, tag: str) -> bytes:
    """The modulus from a certificate's leftmost digits and the remainder tag."""
    if key_len <= len(leftmost):
        return leftmost[:key_len]
    if len(leftmost) + len(remainder) != key_len:
        raise ODAError(f"{what}: key remainder (tag {tag}) is missing or of the wrong length")
    return leftmost + remainder


def _open(signer: RSAPublic, cert: bytes, fmt: int, what: str) -> bytes:
    block = signer.recover(cert)
    if block[0] != HEADER or block[-1] != TRAILER:
        raise ODAError(f"{what}: recovered data header/trailer is not 6A/BC (wrong key?)")
    if block[1] != fmt:
        raise ODAError(f"{what}: format {block[1]:02X}, expected {fmt:02X}")
    return block


@dataclass(frozen=True)
class RecoveredKey:
    """A public key recovered from a certificate, with the fields a terminal checks."""

    public: RSAPublic
    identifier: bytes  # issuer identifier (issuer cert) or PAN field (ICC cert)
    expiry_mmyy: bytes
    serial: bytes

    @property
    def pan(self) -> str:
        return pan_from_field(self.identifier)


def issuer_certificate(ca: RSAKeyPair, issuer: RSAPublic, pan: str, expiry: tuple[int, int],
                       serial: bytes) -> tuple[bytes, bytes]:
    """(tag 90, tag 92): the issuer key certified by the CA (EMV Book 2 table 6)."""
    key, exp = issuer.modulus_bytes, issuer.exponent_bytes
    if issuer.size > ca.public.size:
        raise ODAError("the issuer key may not be longer than the CA key")
    leftmost, remainder = _split(key, ca.public.size - 36)
    body = bytes([FORMAT_ISSUER]) + issuer_identifier(pan) + mmyy(*expiry) + serial \
        + bytes([HASH_SHA1, ALG_RSA, len(key), len(exp)]) + leftmost
    block = bytes([HEADER]) + body + _sha1(body, remainder, exp) + bytes([TRAILER])
    return ca.sign_block(block), remainder


def recover_issuer_key(ca: RSAPublic, cert: bytes, remainder: bytes, exponent: bytes) -> RecoveredKey:
    block = _open(ca, cert, FORMAT_ISSUER, "issuer certificate")
    body, digest = block[1:-21], block[-21:-1]
    if _sha1(body, remainder, exponent) != digest:
        raise ODAError("issuer certificate: hash does not match")
    key_len, exp_len = body[12], body[13]
    if exp_len != len(exponent):
        raise ODAError("issuer certificate: exponent length differs from tag 9F32")
    key = _join(body[14:], remainder, key_len, "issuer certificate", "92")
    return RecoveredKey(RSAPublic(int.from_bytes(key, "big"), int.from_bytes(exponent, "big")),
                        body[1:5], body[5:7], body[7:10])


def icc_certificate(issuer: RSAKeyPair, icc: RSAPublic, pan: str, expiry: tuple[int, int], serial: bytes,
                    static_data: bytes) -> tuple[bytes, bytes]:
    """(tag 9F46, tag 9F48): the ICC key certified by the issuer (EMV Book 2 table 14)."""
    key, exp = icc.modulus_bytes, icc.exponent_bytes
    if icc.size > issuer.public.size:
        raise ODAError("the ICC key may not be longer than the issuer key")
    leftmost, remainder = _split(key, issuer.public.size - 42)
    body = bytes([FORMAT_ICC]) + pan_field(pan) + mmyy(*expiry) + serial \
        + bytes([HASH_SHA1, ALG_RSA, len(key), len(exp)]) + leftmost
    block = bytes([HEADER]) + body + _sha1(body, remainder, exp, static_data) + bytes([TRAILER])
    return issuer.sign_block(block), remainder


def recover_icc_key(issuer: RSAPublic, cert: bytes, remainder: bytes, exponent: bytes,
                    static_data: bytes) -> RecoveredKey:
    block = _open(issuer, cert, FORMAT_ICC, "ICC certificate")
    body, digest = block[1:-21], block[-21:-1]
    if _sha1(body, remainder, exponent, static_data) != digest:
        raise ODAError("ICC certificate: hash does not match (certificate or static data altered)")
    key_len, exp_len = body[18], body[19]
    if exp_len != len(exponent):
        raise ODAError("ICC certificate: exponent length differs from tag 9F47")
    key = _join(body[20:], remainder, key_len, "ICC certificate", "9F48")
    return RecoveredKey(RSAPublic(int.from_bytes(key, "big"), int.from_bytes(exponent, "big")),
                        body[1:11], body[11:13], body[13:16])


def sign_dynamic_data(icc: RSAKeyPair, icc_data: bytes, terminal_data: bytes) -> bytes:
    """Tag 9F4B: signed dynamic application data, format 05 (EMV Book 2 table 17)."""
    pad = icc.public.size - len(icc_data) - 25
    if pad < 0:
        raise ODAError("ICC dynamic data does not fit the ICC key")
    body = bytes([FORMAT_SDAD, HASH_SHA1, len(icc_data)]) + icc_data + bytes([PAD]) * pad
    return icc.sign_block(bytes([HEADER]) + body + _sha1(body, terminal_data) + bytes([TRAILER]))


def recover_dynamic_data(icc: RSAPublic, sdad: bytes, terminal_data: bytes) -> bytes:
    """The ICC dynamic data of a valid signature over `terminal_data`; ODAError otherwise."""
    block = _open(icc, sdad, FORMAT_SDAD, "signed dynamic data")
    body, digest = block[1:-21], block[-21:-1]
    if _sha1(body, terminal_data) != digest:
        raise ODAError("signed dynamic data: hash does not match the terminal data")
    return body[3 : 3 + body[2]]
