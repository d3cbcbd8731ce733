"""Offline data authentication for the quick flow: fDDA, with SM2 or with RSA.

Chain: CA public key (RID of the AID + index 8F, from the terminal's list) -> issuer
certificate (90) -> ICC certificate (9F46, over the static data to be authenticated)
-> signed dynamic application data (9F4B, over the terminal dynamic data). The CA key's
algorithm picks the formats:

- RSA, EMV Book 2 with message recovery: 90 + 92 + 9F32, 9F46 + 9F48 + 9F47, 9F4B
  format 05 (sections 5.3, 6.3-6.5; tables 6, 14, 17); SHA-1.
- SM2, the PBOC layout (JR/T 0025.17 style, no recovery): fields in clear followed by
  a 64-byte SM2 signature (SM3, signer ID 1234567812345678). Layout in docs/cards.md.

fDDA version 01 (both): terminal dynamic data = 9F37 || 9F02 || 5F2A || 9F69, and the
ICC dynamic data is 02 || ATC, which must equal the ATC the card sent in 9F36.
Every check that fails raises `OdaFailure` with a short reason (no card data in it).
"""
from __future__ import annotations

import datetime
import hashlib

from keys.errors import CryptoError
from keys.sm2 import SM2PublicKey

from .config import CAPublicKey

FDDA_VERSION = 0x01
SHA1, RSA, SM2 = 0x01, 0x01, 0x04  # hash / public key algorithm indicators
SM2_KEY_LENGTH, SM2_SIGNATURE_LENGTH = 64, 64
MIN_RSA_BYTES = 64  # 512 bits: below any EMV key, and enough room for every fixed field read


class OdaFailure(Exception):
    """Offline data authentication failed; str() is the reason."""


def _expired(mmyy: bytes, today: datetime.date, what: str) -> None:
    """Certificates are valid through the last day of their MMYY month."""
    digits = mmyy.hex()
    if len(mmyy) != 2 or not digits.isdigit() or not 1 <= int(digits[:2]) <= 12:
        raise OdaFailure(f"{what}: expiry date is not a valid MMYY")
    year = 2000 + int(digits[2:]) if int(digits[2:]) < 50 else 1900 + int(digits[2:])
    if (year, int(digits[:2])) < (today.year, today.month):
        raise OdaFailure(f"{what} expired")


def _check_issuer_id(identifier: bytes, pan: str) -> None:
    """EMV Book 2: the issuer identifier (3-8 digits, F-padded) is the PAN's leftmost digits."""
    digits = identifier.hex().upper().rstrip("F")
    if not (3 <= len(digits) <= 8 and digits.isdigit() and pan.startswith(digits)):
        raise OdaFailure("issuer certificate is not for this card's BIN")


def _check_pan(field: bytes, pan: str) -> None:
    if field.hex().upper().rstrip("F") != pan:
        raise OdaFailure("ICC certificate is not for this card")


def terminal_dynamic_data(un: bytes, amount: bytes, currency: bytes, card_auth: bytes | None) -> bytes:
    if card_auth is None or len(card_auth) != 7:
        raise OdaFailure("card authentication related data (9F69) missing or malformed")
    if card_auth[0] != FDDA_VERSION:
        raise OdaFailure(f"fDDA version {card_auth[0]:02X} not supported")
    return un + amount + currency + card_auth


def _check_dynamic_number(icc_dynamic: bytes, atc: bytes) -> None:
    if not icc_dynamic or icc_dynamic[0] != len(icc_dynamic) - 1 or icc_dynamic[1:] != atc:
        raise OdaFailure("signed dynamic data does not hold this transaction's ATC")


# ---------------------------------------------------------------- RSA (EMV Book 2)
def _recover(modulus: int, exponent: int, data: bytes, fmt: int, what: str) -> bytes:
    size = (modulus.bit_length() + 7) // 8
    if size < MIN_RSA_BYTES:
        raise OdaFailure(f"{what}: signer's key is too short")
    if len(data) != size:
        raise OdaFailure(f"{what}: length differs from its signer's key")
    value = int.from_bytes(data, "big")
    if value >= modulus:
        raise OdaFailure(f"{what}: does not recover")
    block = pow(value, exponent, modulus).to_bytes(size, "big")
    if block[0] != 0x6A or block[-1] != 0xBC or block[1] != fmt:
        raise OdaFailure(f"{what}: does not recover (wrong key or altered)")
    return block


def _modulus(leftmost: bytes, remainder: bytes, length: int, what: str) -> int:
    if length <= len(leftmost):
        key = leftmost[:length]
    elif len(leftmost) + len(remainder) == length:
        key = leftmost + remainder
    else:
        raise OdaFailure(f"{what}: public key remainder missing or of the wrong length")
    return int.from_bytes(key, "big")


def _verify_rsa(ca: CAPublicKey, tags: dict, static: bytes, terminal: bytes, pan: str,
                today: datetime.date) -> bytes:
    cert, remainder, exponent = tags.get(0x90), tags.get(0x92, b""), tags.get(0x9F32)
    if cert is None or not exponent:
        raise OdaFailure("issuer certificate (90) or exponent (9F32) missing")
    block = _recover(ca.modulus, ca.exponent, cert, 0x02, "issuer certificate")
    body, digest = block[1:-21], block[-21:-1]
    if body[10] != SHA1 or body[11] != RSA:
        raise OdaFailure("issuer certificate: algorithm not supported")
    if hashlib.sha1(body + remainder + exponent).digest() != digest:
        raise OdaFailure("issuer certificate: hash does not match")
    _check_issuer_id(body[1:5], pan)
    _expired(body[5:7], today, "issuer certificate")
    if body[13] != len(exponent):
        raise OdaFailure("issuer certificate: exponent length differs from 9F32")
    issuer_n = _modulus(body[14:], remainder, body[12], "issuer certificate")
    issuer_e = int.from_bytes(exponent, "big")

    cert, remainder, exponent = tags.get(0x9F46), tags.get(0x9F48, b""), tags.get(0x9F47)
    if cert is None or not exponent:
        raise OdaFailure("ICC certificate (9F46) or exponent (9F47) missing")
    block = _recover(issuer_n, issuer_e, cert, 0x04, "ICC certificate")
    body, digest = block[1:-21], block[-21:-1]
    if body[16] != SHA1 or body[17] != RSA:
        raise OdaFailure("ICC certificate: algorithm not supported")
    if hashlib.sha1(body + remainder + exponent + static).digest() != digest:
        raise OdaFailure("ICC certificate: hash does not match (certificate or card data altered)")
    _check_pan(body[1:11], pan)
    _expired(body[11:13], today, "ICC certificate")
    if body[19] != len(exponent):
        raise OdaFailure("ICC certificate: exponent length differs from 9F47")
    icc_n = _modulus(body[20:], remainder, body[18], "ICC certificate")

    sdad = tags.get(0x9F4B)
    if sdad is None:
        raise OdaFailure("signed dynamic data (9F4B) missing")
    block = _recover(icc_n, int.from_bytes(exponent, "big"), sdad, 0x05, "signed dynamic data")
    body, digest = block[1:-21], block[-21:-1]
    if body[1] != SHA1 or body[2] > len(body) - 3:
        raise OdaFailure("signed dynamic data: malformed")
    if hashlib.sha1(body + terminal).digest() != digest:
        raise OdaFailure("signed dynamic data: hash does not match the transaction")
    return body[3 : 3 + body[2]]


# ---------------------------------------------------------------- SM2 (PBOC)
def _sm2_cert(signer: SM2PublicKey, cert: bytes | None, fmt: int, id_length: int, signed_extra: bytes,
              what: str) -> tuple[bytes, bytes, SM2PublicKey]:
    """(identifier, expiry MMYY, certified key) of a valid certificate."""
    size = 1 + id_length + 2 + 3 + 4 + SM2_KEY_LENGTH + SM2_SIGNATURE_LENGTH
    if cert is None or len(cert) != size or cert[0] != fmt:
        raise OdaFailure(f"{what}: missing or not in the SM2 format")
    fields, signature = cert[:-SM2_SIGNATURE_LENGTH], cert[-SM2_SIGNATURE_LENGTH:]
    at = 1 + id_length + 5
    if fields[at : at + 4] != bytes([SM2, SM2, 0x00, SM2_KEY_LENGTH]):
        raise OdaFailure(f"{what}: algorithm not supported")
    try:
        signer.verify(signature, fields + signed_extra)
        key = SM2PublicKey.from_bytes(b"\x04" + fields[at + 4 :])
    except CryptoError:
        raise OdaFailure(f"{what}: SM2 signature does not verify") from None
    return fields[1 : 1 + id_length], fields[1 + id_length : 3 + id_length], key


def _verify_sm2(ca: CAPublicKey, tags: dict, static: bytes, terminal: bytes, pan: str,
                today: datetime.date) -> bytes:
    try:
        ca_key = SM2PublicKey.from_bytes(ca.point)
    except CryptoError:
        raise OdaFailure(f"CA key {ca.label} is not a point on the SM2 curve") from None
    identifier, expiry, issuer_key = _sm2_cert(ca_key, tags.get(0x90), 0x12, 4, b"", "issuer certificate")
    _check_issuer_id(identifier, pan)
    _expired(expiry, today, "issuer certificate")
    pan_field, expiry, icc_key = _sm2_cert(issuer_key, tags.get(0x9F46), 0x14, 10, static, "ICC certificate")
    _check_pan(pan_field, pan)
    _expired(expiry, today, "ICC certificate")
    sdad = tags.get(0x9F4B)
    if sdad is None or len(sdad) < 2 + SM2_SIGNATURE_LENGTH or sdad[0] != 0x15 \
            or len(sdad) != 2 + sdad[1] + SM2_SIGNATURE_LENGTH:
        raise OdaFailure("signed dynamic data (9F4B) missing or malformed")
    head = sdad[:-SM2_SIGNATURE_LENGTH]
    try:
        icc_key.verify(sdad[-SM2_SIGNATURE_LENGTH:], head + terminal)
    except CryptoError:
        raise OdaFailure("signed dynamic data: SM2 signature does not match the transaction") from None
    return head[2:]


def verify_fdda(ca_keys: dict, ca_problems: dict, rid: bytes, tags: dict, static: bytes, terminal: bytes,
                pan: str, today: datetime.date) -> None:
    """Raise OdaFailure unless the whole fDDA chain verifies."""
    index = tags.get(0x8F)
    if index is None or len(index) != 1:
        raise OdaFailure("CA public key index (8F) missing")
    key = ca_keys.get((rid, index[0]))
    if key is None:
        known = ca_problems.get((rid, index[0]))
        raise OdaFailure(known or f"CA key {rid.hex().upper()}/{index[0]:02X} not in the terminal's list")
    verify = _verify_sm2 if key.algorithm == "SM2" else _verify_rsa
    icc_dynamic = verify(key, tags, static, terminal, pan, today)
    _check_dynamic_number(icc_dynamic, tags.get(0x9F36, b""))
