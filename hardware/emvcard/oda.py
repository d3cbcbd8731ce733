"""Offline data authentication: the fields both certificate families share, and fDDA.

fDDA (fast DDA, qVSDC / qPBOC, "fDDA version 01") signs, in one answer to GPO:

    ICC dynamic data      = 02 || ATC                        (ICC dynamic number = the ATC)
    terminal dynamic data = 9F37 UN (4) || 9F02 amount (6) || 5F2A currency (2) || 9F69
    9F69 (card authentication related data) = 01 (fDDA version) || card UN (4) || CTQ (2)

How each family signs that (RSA with recovery, SM2 with SM3) is in oda_rsa / oda_sm2;
the exact layouts and their sources are in docs/cards.md.
"""
from __future__ import annotations

FDDA_VERSION = 0x01
HASH_SHA1 = 0x01  # EMV Book 2 hash algorithm indicator
ALG_RSA = 0x01  # EMV Book 2 public key algorithm indicator
ALG_SM2 = 0x04  # PBOC (JR/T 0025.17) algorithm indicator for SM2 / SM3


class ODAError(ValueError):
    """A certificate or signature that does not recover, verify or match."""


def issuer_identifier(pan: str) -> bytes:
    """4 bytes: the leftmost 6 PAN digits (the BIN), padded with F (EMV Book 2 table 6)."""
    return bytes.fromhex(pan[:6].ljust(8, "F"))


def pan_field(pan: str) -> bytes:
    """10 bytes: the PAN padded with F on the right (EMV Book 2 table 14)."""
    return bytes.fromhex(pan.ljust(20, "F"))


def pan_from_field(field: bytes) -> str:
    return field.hex().upper().rstrip("F")


def mmyy(year: int, month: int) -> bytes:
    """Certificate expiration date, BCD MMYY."""
    return bytes.fromhex(f"{month:02d}{year % 100:02d}")


def icc_dynamic_data(atc: bytes) -> bytes:
    """ICC dynamic number length || ICC dynamic number; the number is the 2-byte ATC."""
    return bytes([len(atc)]) + atc


def card_auth_related_data(card_un: bytes, ctq: bytes) -> bytes:
    """Tag 9F69: fDDA version 01 || card unpredictable number (4) || CTQ (2)."""
    if len(card_un) != 4 or len(ctq) != 2:
        raise ODAError("9F69 needs a 4-byte card UN and a 2-byte CTQ")
    return bytes([FDDA_VERSION]) + card_un + ctq


def terminal_dynamic_data(un: bytes, amount: bytes, currency: bytes, card_auth_data: bytes) -> bytes:
    """The data fDDA version 01 binds the signature to: 9F37 || 9F02 || 5F2A || 9F69."""
    if len(un) != 4 or len(amount) != 6 or len(currency) != 2:
        raise ODAError("fDDA terminal data needs UN (4), amount (6) and currency (2) bytes")
    return un + amount + currency + card_auth_data
