"""Attestation evidence: the terminal's secure world signs an SM3 measurement of its
code and configuration over a nonce the host chose, for sign-on.

    "ATT1" | device id length (1) | device id (ASCII) | measurement (32, SM3) |
    host nonce (16) | time, ms since the epoch (8) | signature (64, SM2-SM3 over the rest)

Built by the TEE (`build`), checked by the host (`verify`) against the device key bound
at activation, the outstanding challenge, and the list of allowed measurements.
"""
from __future__ import annotations

import hmac
import struct
import time
from dataclasses import dataclass

from keys.errors import InvalidSignature

MAGIC = b"ATT1"
KEY_DOWNLOAD_CONTEXT = b"KDL1"


def key_download_proof(terminal_id: str, nonce: bytes) -> bytes:
    """What the device key signs to ask for a TMK (so only the bound device can ask)."""
    return KEY_DOWNLOAD_CONTEXT + terminal_id.encode("ascii") + nonce


class AttestationError(ValueError):
    """Evidence that is malformed, forged, stale, or answers another challenge."""


@dataclass(frozen=True)
class Evidence:
    device_id: str
    measurement: bytes
    nonce: bytes
    issued_at_ms: int


def build(sign, device_id: str, measurement: bytes, nonce: bytes, now: float | None = None) -> bytes:
    """`sign` is the device key's sign function (it never leaves the secure world)."""
    did = device_id.encode("ascii")
    if len(measurement) != 32 or len(nonce) != 16 or not 1 <= len(did) <= 64:
        raise AttestationError("measurement must be 32 bytes, nonce 16, device id 1-64 characters")
    body = MAGIC + bytes([len(did)]) + did + measurement + nonce + struct.pack(
        ">Q", int((time.time() if now is None else now) * 1000))
    return body + sign(body)


def parse(evidence: bytes) -> tuple[Evidence, bytes, bytes]:
    if evidence[:4] != MAGIC or len(evidence) < 5:
        raise AttestationError("not attestation evidence (bad magic)")
    n = evidence[4]
    body_len = 5 + n + 32 + 16 + 8
    if len(evidence) != body_len + 64:
        raise AttestationError(f"attestation evidence is {len(evidence)} bytes, expected {body_len + 64}")
    try:
        did = evidence[5 : 5 + n].decode("ascii")
    except UnicodeDecodeError:
        raise AttestationError("device id is not ASCII") from None
    p = 5 + n
    (ms,) = struct.unpack(">Q", evidence[p + 48 : p + 56])
    return Evidence(did, evidence[p : p + 32], evidence[p + 32 : p + 48], ms), evidence[:body_len], evidence[body_len:]


def verify(evidence: bytes, device_public_key, device_id: str, nonce: bytes, now: float | None = None,
           max_age_s: float = 120.0) -> Evidence:
    ev, body, signature = parse(evidence)
    try:
        device_public_key.verify(signature, body)
    except InvalidSignature:
        raise AttestationError("attestation signature does not verify under the device key") from None
    if ev.device_id != device_id:
        raise AttestationError("attestation names another device")
    if not hmac.compare_digest(ev.nonce, nonce):
        raise AttestationError("attestation answers another challenge (nonce mismatch or replay)")
    now_ms = (time.time() if now is None else now) * 1000
    if abs(now_ms - ev.issued_at_ms) > max_age_s * 1000:
        raise AttestationError("attestation is stale or dated in the future")
    return ev
