"""Pure helpers over ISO/IEC 7816-4 command APDUs (short and extended length)."""
from __future__ import annotations


class ApduFormatError(ValueError):
    """A byte string that is not a well-formed command APDU."""


def apdu_case(apdu: bytes) -> tuple[int, bool]:
    """(case 1-4, extended) of a command APDU, per ISO/IEC 7816-4 5.1."""
    n = len(apdu)
    if n < 4:
        raise ApduFormatError(f"command APDU needs at least 4 header bytes, got {n}")
    if n == 4:
        return 1, False
    if n == 5:
        return 2, False
    b5 = apdu[4]
    if b5 != 0:
        if n == 5 + b5:
            return 3, False
        if n == 6 + b5:
            return 4, False
        raise ApduFormatError(f"Lc={b5} does not match a {n}-byte APDU")
    # A zero fifth byte with more to follow starts an extended length field.
    if n == 7:
        return 2, True
    lc = int.from_bytes(apdu[5:7], "big")
    if n == 7 + lc:
        return 3, True
    if n == 9 + lc:
        return 4, True
    raise ApduFormatError(f"extended Lc={lc} does not match a {n}-byte APDU")


def with_le(apdu: bytes, le: int) -> bytes:
    """`apdu` re-issued with Le=`le` (0 meaning 256), as a 6Cxx answer asks."""
    if not 0 <= le <= 0xFF:
        raise ApduFormatError(f"Le must be one byte, got {le}")
    case, extended = apdu_case(apdu)
    if case in (1, 3):
        # An extended case 3 takes a 2-byte Le after its 3-byte Lc.
        return apdu + (le.to_bytes(2, "big") if extended else bytes([le]))
    if extended:
        return apdu[:-2] + le.to_bytes(2, "big")
    return apdu[:-1] + bytes([le])


def get_response(cla: int, le: int) -> bytes:
    """GET RESPONSE (INS C0) for `le` bytes, on the logical channel of `cla`."""
    if not 0 <= le <= 0xFF:
        raise ApduFormatError(f"Le must be one byte, got {le}")
    # Keep the logical channel bits; drop secure messaging and chaining bits.
    channel_cla = (0x40 | (cla & 0x0F)) if cla & 0x40 else (cla & 0x03)
    return bytes([channel_cla, 0xC0, 0x00, 0x00, le])


def split_response(rapdu: bytes) -> tuple[bytes, int]:
    """(data, SW1SW2) of a response APDU of at least 2 bytes."""
    if len(rapdu) < 2:
        raise ApduFormatError(f"response APDU needs a 2-byte status word, got {len(rapdu)} bytes")
    return rapdu[:-2], int.from_bytes(rapdu[-2:], "big")


def command(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> bytes:
    """A short command APDU; `le` 0..256 with 256 encoded as 00, None for no Le."""
    if len(data) > 255:
        raise ApduFormatError(f"short APDU data is at most 255 bytes, got {len(data)}")
    out = bytes([cla, ins, p1, p2])
    if data:
        out += bytes([len(data)]) + data
    if le is not None:
        if not 0 <= le <= 256:
            raise ApduFormatError(f"Le must be 0..256, got {le}")
        out += bytes([le & 0xFF])
    return out
