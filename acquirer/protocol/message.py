"""Encode, decode, MAC and describe messages of the dialect.

A message is a plain dict of field number (str) to value, as pyiso8583 uses: numeric
and ASCII fields as str, binary fields as upper-case hex str. Small typed helpers build
and read the composite fields (60, 61) and the private TLV field 59.

The MAC (field 64) covers the ISO8583 message from the MTI up to the byte before the
MAC itself, with bit 64 set in the bitmap; who computes it (TEE, HSM) is the caller's
business: pass a function of those bytes.
"""
from __future__ import annotations

import enum
import functools
from typing import Callable, NamedTuple

import iso8583
from iso8583.decoder import DecodeError
from iso8583.encoder import EncodeError

from keys.tlv import TLVError, decode as tlv_decode, encode_dict, mask_pan, masked_value, objects as tlv_objects
from . import fastcodec
from .spec import SPEC

MAC_LEN = 8
Message = dict


class ProtocolError(ValueError):
    """A message that cannot be encoded or decoded; names the field and the reason."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"field {field}: {reason}")
        self.field = field
        self.reason = reason


def encode(doc: Message, mac: Callable[[bytes], bytes] | None = None) -> bytes:
    """Encode `doc`; with `mac`, field 64 is set to mac(message without its MAC)."""
    raw = fastcodec.encode(doc, mac is not None)  # with a MAC: up to where the MAC goes
    if raw is None:  # not the common case: pyiso8583 decides, and names the error if any
        doc = {k: v for k, v in doc.items() if k not in ("p", "h")}
        if mac is not None:
            doc["64"] = "00" * MAC_LEN
        try:
            encoded, _ = iso8583.encode(doc, SPEC)
        except EncodeError as exc:
            raise ProtocolError(str(exc.field), _reason(exc)) from None
        raw = bytes(encoded[:-MAC_LEN] if mac is not None else encoded)
    if mac is None:
        return raw
    tag = mac(raw)
    if len(tag) != MAC_LEN:
        raise ProtocolError("64", f"MAC function returned {len(tag)} bytes, not {MAC_LEN}")
    return raw + tag


def decode(raw: bytes) -> Message:
    raw = bytes(raw)
    doc = fastcodec.decode(raw)
    if doc is not None:
        return doc
    try:
        doc, _ = iso8583.decode(raw, SPEC)
    except DecodeError as exc:
        raise ProtocolError(str(exc.field), _reason(exc)) from None
    doc.pop("h", None)
    return doc


def mac_input(raw: bytes) -> tuple[bytes, bytes]:
    """Split an encoded message into (MAC-ed bytes, MAC). The message must carry 64."""
    # bit 64 is the last bit of the primary bitmap, which follows the 2-byte MTI
    if len(raw) < 2 + 8 + MAC_LEN or not raw[2 + 7] & 0x01:
        raise ProtocolError("64", "message carries no MAC")
    return raw[:-MAC_LEN], raw[-MAC_LEN:]


def _reason(exc: Exception) -> str:
    # pyiso8583 messages include the field's value in some cases: keep only the reason.
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return text.split(":")[0].strip()


# --- field 60: type code, batch, network management code, capability, partial flag --
class Field60(NamedTuple):  # a tuple, not a frozen dataclass: read from every request
    type_code: str
    batch: str = "000000"
    network: str = "000"
    capability: str = "6"  # 6: chip and contactless capable terminal
    partial: str = "0"

    def encode(self) -> str:
        return f"{self.type_code:0>2}{self.batch:0>6}{self.network:0>3}{self.capability}{self.partial}"

    @classmethod
    @functools.lru_cache(maxsize=4096)  # a terminal's requests repeat one value per batch; a Field60 is immutable
    def decode(cls, value: str) -> "Field60":
        if len(value) < 8 or not value.isdigit():
            raise ProtocolError("60", "needs at least type code and batch number, digits only")
        return cls(value[:2], value[2:8], value[8:11] or "000", value[11:12] or "6", value[12:13] or "0")


# --- field 61: the original of a void, refund, reversal or query ------------------
class Original(NamedTuple):
    batch: str
    stan: str
    date: str = "0000"  # MMDD
    rrn: str = ""

    def encode(self) -> str:
        return f"{self.batch:0>6}{self.stan:0>6}{self.date:0>4}{self.rrn}"

    @classmethod
    def decode(cls, value: str) -> "Original":
        if len(value) < 12 or not value[:16].isdigit():
            raise ProtocolError("61", "needs original batch and STAN (digits)")
        return cls(value[:6], value[6:12], value[12:16] or "0000", value[16:28])


# --- field 59: private TLVs ---------------------------------------------------------
class PrivateTag(enum.IntEnum):
    QR_CODE = 0xDF01  # customer-presented payment code (ASCII)
    FACE_TEMPLATE = 0xDF02  # SM4-encrypted face template
    LOCATION = 0xDF03  # signed location report
    ATTESTATION = 0xDF04  # signed measurement over the host nonce
    DEVICE_PUBLIC_KEY = 0xDF05  # SM2 public key of the terminal's secure world
    ACTIVATION_CODE = 0xDF06
    NONCE = 0xDF07
    ORDER_ID = 0xDF08  # idempotent order id end to end
    CHANNEL = 0xDF09  # wallet or card scheme chosen by routing
    RISK_FLAGS = 0xDF0A  # e.g. relay-suspected tap
    MASKED_PAN = 0xDF0B
    PASSCODE_BLOCK = 0xDF0C  # face-pay passcode, encrypted like a PIN block
    CASHIER_TEXT = 0xDF0D
    KEY_CHECK_VALUES = 0xDF0E
    HOST_PUBLIC_KEY = 0xDF0F
    MERCHANT_QR = 0xDF10  # merchant-displayed code (URL): a dynamic QR, or the static aggregated one
    DEVICE_ID = 0xDF11
    SOFTWARE_MEASUREMENT = 0xDF12
    STEP_UP = 0xDF13  # what the host asks for: PIN or PASSCODE
    FENCE_TERMS = 0xDF20  # the terminal's fence, report interval and fix age (acquirer/fence/terms.py)


_PRIVATE_TAGS = {int(t): t for t in PrivateTag}
SENSITIVE_PRIVATE = frozenset({PrivateTag.FACE_TEMPLATE, PrivateTag.PASSCODE_BLOCK, PrivateTag.ACTIVATION_CODE})


def private_fields(items: dict[PrivateTag, bytes]) -> str:
    return encode_dict(items).hex().upper()  # a PrivateTag encodes as its int does


def read_private(doc: Message) -> dict[PrivateTag | int, bytes]:
    if "59" not in doc:
        return {}
    try:
        items = tlv_objects(bytes.fromhex(doc["59"]))
    except TLVError as exc:
        raise ProtocolError("59", f"private data is not BER-TLV ({exc})") from None
    known, private = _PRIVATE_TAGS, {}
    for tag, value in items:  # a loop: a comprehension's own call costs more than one or two objects
        private[known.get(tag, tag)] = value  # unknown tags stay plain ints
    return private


# --- describing a message for logs -------------------------------------------------
_MASK_ALWAYS = {"35": "track 2 (encrypted)", "52": "PIN block", "62": "key material", "64": None}


def describe(doc: Message) -> str:
    """One line per field with names; sensitive data masked (moov-io's habit)."""
    lines = [f"MTI {doc.get('t', '????')}"]
    for key in sorted((k for k in doc if k.isdigit()), key=int):
        value = doc[key]
        name = SPEC.get(key, {}).get("desc", "")
        if key == "2":
            shown = mask_pan(value)
        elif key in _MASK_ALWAYS and key != "64":
            shown = f"<{_MASK_ALWAYS[key]}, {len(value) // 2} bytes>"
        elif key == "55":
            shown = _describe_tlv(value)
        elif key == "59":
            shown = _describe_private(doc)
        else:
            shown = value
        lines.append(f"  {key:>3} {name[:40]:40s} {shown}")
    return "\n".join(lines)


def _describe_tlv(hexvalue: str) -> str:
    try:
        nodes = tlv_decode(bytes.fromhex(hexvalue))
    except (TLVError, ValueError):
        return f"<malformed ICC data, {len(hexvalue) // 2} bytes>"
    return " ".join(f"{n.tag:X}={masked_value(n.tag, n.value)}" for n in nodes)


def _describe_private(doc: Message) -> str:
    try:
        items = read_private(doc)
    except ProtocolError:
        return "<malformed private data>"
    parts = []
    for tag, value in items.items():
        name = tag.name if isinstance(tag, PrivateTag) else f"{tag:X}"
        if tag in SENSITIVE_PRIVATE:
            parts.append(f"{name}=<{len(value)} bytes masked>")
        elif tag in (PrivateTag.QR_CODE,):
            text = value.decode("ascii", "replace")
            parts.append(f"{name}={text[:4]}****{text[-2:]}")
        elif all(32 <= b < 127 for b in value):
            parts.append(f"{name}={value.decode('ascii')}")
        else:
            parts.append(f"{name}=<{len(value)} bytes>")
    return " ".join(parts)
