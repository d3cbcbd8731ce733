"""PBOC SM2 certificates and signed dynamic data (JR/T 0025.17 style, no recovery).

An SM2 certificate is its fields in clear followed by a 64-byte SM2 signature (r || s,
SM3 over Z || fields, signer ID 1234567812345678). Layouts (docs/cards.md has sources):

    issuer (tag 90)   12 | issuer id (4) | MMYY (2) | serial (3) | 04 | 04 | 00 | 40 |
                      issuer public key x || y (64) | CA signature (64)
    ICC (tag 9F46)    14 | PAN (10) | MMYY (2) | serial (3) | 04 | 04 | 00 | 40 |
                      ICC public key x || y (64) | issuer signature (64) over the fields
                      before it || static data to be authenticated
    SDAD (tag 9F4B)   15 | LDD (1) | ICC dynamic data (LDD) | ICC signature (64) over
                      15 || LDD || ICC dynamic data || terminal dynamic data
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from keys.errors import InvalidKey, InvalidSignature
from keys.sm2 import SM2PrivateKey, SM2PublicKey

from .oda import ALG_SM2, ODAError, issuer_identifier, mmyy, pan_field, pan_from_field

FORMAT_ISSUER, FORMAT_ICC, FORMAT_SDAD = 0x12, 0x14, 0x15
KEY_PARAMETER = 0x00  # the SM2 recommended curve (GB/T 32918.5)
KEY_LENGTH = 64
SIGNATURE_LENGTH = 64

Signer = Callable[[bytes], bytes]  # data -> r||s; an SM2PrivateKey.sign or an HSM key's sign


@dataclass(frozen=True)
class CertifiedKey:
    public: SM2PublicKey
    identifier: bytes  # issuer identifier (issuer cert) or PAN field (ICC cert)
    expiry_mmyy: bytes
    serial: bytes

    @property
    def pan(self) -> str:
        return pan_from_field(self.identifier)


def _point(public: SM2PublicKey) -> bytes:
    return public.to_bytes()[1:]  # x || y without the 04 prefix


def _fields(fmt: int, identifier: bytes, expiry: tuple[int, int], serial: bytes, public: SM2PublicKey) -> bytes:
    if len(serial) != 3:
        raise ODAError("a certificate serial number is 3 bytes")
    return bytes([fmt]) + identifier + mmyy(*expiry) + serial \
        + bytes([ALG_SM2, ALG_SM2, KEY_PARAMETER, KEY_LENGTH]) + _point(public)


def issuer_certificate(ca_sign: Signer, issuer: SM2PublicKey, pan: str, expiry: tuple[int, int],
                       serial: bytes) -> bytes:
    fields = _fields(FORMAT_ISSUER, issuer_identifier(pan), expiry, serial, issuer)
    return fields + ca_sign(fields)


def icc_certificate(issuer_sign: Signer, icc: SM2PublicKey, pan: str, expiry: tuple[int, int], serial: bytes,
                    static_data: bytes) -> bytes:
    fields = _fields(FORMAT_ICC, pan_field(pan), expiry, serial, icc)
    return fields + issuer_sign(fields + static_data)


def _check(signer: SM2PublicKey, cert: bytes, fmt: int, id_len: int, extra: bytes, what: str) -> CertifiedKey:
    size = 1 + id_len + 2 + 3 + 4 + KEY_LENGTH + SIGNATURE_LENGTH
    if len(cert) != size:
        raise ODAError(f"{what}: {len(cert)} bytes, expected {size}")
    if cert[0] != fmt:
        raise ODAError(f"{what}: format {cert[0]:02X}, expected {fmt:02X}")
    fields, signature = cert[:-SIGNATURE_LENGTH], cert[-SIGNATURE_LENGTH:]
    algs = fields[1 + id_len + 5 : 1 + id_len + 9]
    if algs != bytes([ALG_SM2, ALG_SM2, KEY_PARAMETER, KEY_LENGTH]):
        raise ODAError(f"{what}: algorithm indicators {algs.hex().upper()} are not SM2/SM3")
    try:
        signer.verify(signature, fields + extra)
        public = SM2PublicKey.from_bytes(b"\x04" + fields[-KEY_LENGTH:])
    except InvalidSignature:
        raise ODAError(f"{what}: SM2 signature does not verify") from None
    except InvalidKey:
        raise ODAError(f"{what}: the certified key is not a point on the SM2 curve") from None
    return CertifiedKey(public, fields[1 : 1 + id_len], fields[1 + id_len : 3 + id_len],
                        fields[3 + id_len : 6 + id_len])


def verify_issuer_certificate(ca: SM2PublicKey, cert: bytes) -> CertifiedKey:
    return _check(ca, cert, FORMAT_ISSUER, 4, b"", "issuer certificate")


def verify_icc_certificate(issuer: SM2PublicKey, cert: bytes, static_data: bytes) -> CertifiedKey:
    return _check(issuer, cert, FORMAT_ICC, 10, static_data, "ICC certificate")


def sign_dynamic_data(icc: SM2PrivateKey, icc_data: bytes, terminal_data: bytes) -> bytes:
    head = bytes([FORMAT_SDAD, len(icc_data)]) + icc_data
    return head + icc.sign(head + terminal_data)


def verify_dynamic_data(icc: SM2PublicKey, sdad: bytes, terminal_data: bytes) -> bytes:
    """The ICC dynamic data of a valid signature over `terminal_data`; ODAError otherwise."""
    if len(sdad) < 2 + SIGNATURE_LENGTH or sdad[0] != FORMAT_SDAD:
        raise ODAError("signed dynamic data: not format 15 or too short")
    head, signature = sdad[:-SIGNATURE_LENGTH], sdad[-SIGNATURE_LENGTH:]
    if len(head) != 2 + head[1]:
        raise ODAError("signed dynamic data: length byte does not match")
    try:
        icc.verify(signature, head + terminal_data)
    except InvalidSignature:
        raise ODAError("signed dynamic data: SM2 signature does not verify") from None
    return head[2:]
