"""What face pay puts on the wire: the sealed template (59/DF02) and the passcode block's
PAN substitute (59/DF0C). Both sides import this module, like `acquirer.protocol`.

DF02 clear text (520 bytes), then sealed under the terminal's TDK with
`keys.symmetric.seal_field` (random IV || SM4-CBC, ISO 9797-1 padding 2: 544 bytes):

    "FT" | version 01 | flags (bit 0: liveness challenge passed) | model id (4)
         | template: 128 x float32, little-endian

DF0C is an SM4 PIN block (docs/crypto.md, "SM4 form") of the passcode under the
terminal's TPK. Face pay has no PAN, so the PAN field is built from the request's STAN
(`passcode_pan`): a block captured from one request fails in any other.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .models import MODEL_ID

TEMPLATE_DIM = 128  # also template.TEMPLATE_DIM; kept here so the host needs no dlib to read DF02
_HEADER = struct.Struct("<2sBB4s")
MAGIC, VERSION = b"FT", 1
FLAG_LIVENESS = 0x01
CLEAR_SIZE = _HEADER.size + 4 * TEMPLATE_DIM


class FaceWireError(ValueError):
    """DF02 cannot be read: wrong key, wrong format, or a template of another model."""


@dataclass(frozen=True, repr=False)
class WireTemplate:
    template: np.ndarray  # (128,) float32
    liveness: bool
    model_id: bytes

    def __repr__(self) -> str:  # a template is biometric data: never in logs
        return f"<WireTemplate model={self.model_id.hex()} liveness={self.liveness}>"


def pack(template: np.ndarray, liveness: bool) -> bytes:
    vector = np.asarray(template, dtype="<f4")
    if vector.shape != (TEMPLATE_DIM,) or not np.isfinite(vector).all():
        raise FaceWireError(f"a face template is {TEMPLATE_DIM} finite numbers, got shape {vector.shape}")
    return _HEADER.pack(MAGIC, VERSION, FLAG_LIVENESS if liveness else 0, MODEL_ID) + vector.tobytes()


def unpack(clear: bytes, expected_model: bytes = MODEL_ID) -> WireTemplate:
    if len(clear) != CLEAR_SIZE:
        raise FaceWireError(f"59/DF02: face template must be {CLEAR_SIZE} bytes once decrypted, got {len(clear)}")
    magic, version, flags, model_id = _HEADER.unpack_from(clear)
    if magic != MAGIC or version != VERSION:
        raise FaceWireError(f"59/DF02: not a version-{VERSION} face template (wrong key or format)")
    if model_id != expected_model:
        raise FaceWireError(f"59/DF02: template made by face model {model_id.hex()}, this host matches "
                            f"{expected_model.hex()} templates")
    vector = np.frombuffer(clear, dtype="<f4", offset=_HEADER.size).astype(np.float32)
    if not np.isfinite(vector).all():
        raise FaceWireError("59/DF02: face template holds non-finite numbers")
    return WireTemplate(vector, bool(flags & FLAG_LIVENESS), model_id)


def seal_template(template: np.ndarray, liveness: bool, encrypt: Callable[[bytes], bytes]) -> bytes:
    """DF02's value: `encrypt` is the secure world's TDK sealing (SecureKeys.seal)."""
    return encrypt(pack(template, liveness))


def open_template(sealed: bytes, decrypt: Callable[[bytes], bytes]) -> WireTemplate:
    """Read DF02 with `decrypt`, e.g. `lambda b: hsm.open_data(terminal_key_name(tid, "TDK"), b)`."""
    try:
        clear = decrypt(bytes(sealed))
    except Exception as exc:  # the decryptor's own errors name keys, not our field
        raise FaceWireError(f"59/DF02: face template does not decrypt under the terminal's TDK "
                            f"({type(exc).__name__})") from None
    return unpack(clear)


def passcode_pan(stan: str) -> str:
    """The 13-digit PAN substitute for the passcode PIN block: its 12 digits are 000000 + STAN."""
    if len(stan) != 6 or not stan.isdigit():
        raise FaceWireError(f"11: STAN must be 6 digits to build the passcode block, got {len(stan)} characters")
    return "000000" + stan + "0"  # the last digit stands where a check digit would be
