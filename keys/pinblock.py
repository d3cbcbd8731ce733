"""PIN blocks: build+encrypt and decrypt+parse.

* ISO 9564-1 format 0 (8 bytes, 3DES): PIN field ``0 N P..P F..F`` (16 nibbles) XOR
  PAN field ``0000`` + the 12 rightmost PAN digits excluding the check digit.
* SM4 form (16 bytes, China UnionPay-style): PIN field ``0 N P..P F..F`` (32 nibbles)
  XOR PAN field of 20 zero nibbles + the same 12 PAN digits; SM4-ECB.
* ISO 9564-1 format 4 (16 bytes, AES): PIN field ``4 N P..P A..A`` (16 nibbles) +
  8 random bytes; PAN field ``M`` (PAN length - 12, 0 below 12 digits) + PAN (left
  padded to 12 digits) + zero nibbles to 32; block = E_K(E_K(PIN field) XOR PAN field).

PINs are 4 to 12 decimal digits. Errors never contain the PIN, the PAN or the block.
"""
from __future__ import annotations

import enum
import os

from .errors import PinBlockError
from .symmetric import Algorithm, BlockCipher


class PinBlockFormat(str, enum.Enum):
    ISO0 = "ISO-0"
    SM4 = "SM4"
    ISO4 = "ISO-4"

    @property
    def algorithm(self) -> Algorithm:
        return {PinBlockFormat.ISO0: Algorithm.TDES, PinBlockFormat.SM4: Algorithm.SM4,
                PinBlockFormat.ISO4: Algorithm.AES}[self]


def _check_pin(pin: str) -> None:
    if not isinstance(pin, str) or not pin.isascii() or not pin.isdigit():
        raise PinBlockError("PIN must be decimal digits only")
    if not 4 <= len(pin) <= 12:
        raise PinBlockError(f"PIN must be 4 to 12 digits, got {len(pin)}")


def _check_pan(pan: str, minimum: int) -> None:
    if not isinstance(pan, str) or not pan.isascii() or not pan.isdigit():
        raise PinBlockError("PAN must be decimal digits only")
    if not minimum <= len(pan) <= 19:
        raise PinBlockError(f"PAN must be {minimum} to 19 digits, got {len(pan)}")


def _pan12(pan: str) -> str:
    _check_pan(pan, 13)
    return pan[-13:-1]


def pin_field(fmt: PinBlockFormat, pin: str, random_pad: bytes | None = None) -> bytes:
    _check_pin(pin)
    if fmt is PinBlockFormat.ISO0:
        return bytes.fromhex(f"0{len(pin):X}{pin}".ljust(16, "F"))
    if fmt is PinBlockFormat.SM4:
        return bytes.fromhex(f"0{len(pin):X}{pin}".ljust(32, "F"))
    pad = os.urandom(8) if random_pad is None else random_pad
    if len(pad) != 8:
        raise PinBlockError("format 4 random padding must be 8 bytes")
    return bytes.fromhex(f"4{len(pin):X}{pin}".ljust(16, "A")) + pad


def pan_field(fmt: PinBlockFormat, pan: str) -> bytes:
    if fmt is PinBlockFormat.ISO0:
        return bytes.fromhex("0000" + _pan12(pan))
    if fmt is PinBlockFormat.SM4:
        return bytes.fromhex("0" * 20 + _pan12(pan))
    _check_pan(pan, 1)
    m = max(len(pan) - 12, 0)
    return bytes.fromhex((f"{m}" + pan.rjust(12, "0")).ljust(32, "0"))


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a) ^ int.from_bytes(b)).to_bytes(len(a))


def _check_cipher(fmt: PinBlockFormat, cipher: BlockCipher) -> None:
    if cipher.algorithm is not fmt.algorithm:
        raise PinBlockError(f"{fmt.value} PIN blocks need a {fmt.algorithm.value} key, got {cipher.algorithm.value}")


def encrypt_pin_block(fmt: PinBlockFormat | str, cipher: BlockCipher, pin: str, pan: str,
                      random_pad: bytes | None = None) -> bytes:
    fmt = PinBlockFormat(fmt)
    _check_cipher(fmt, cipher)
    if fmt is PinBlockFormat.ISO4:
        inner = cipher.encrypt_ecb(pin_field(fmt, pin, random_pad))
        return cipher.encrypt_ecb(_xor(inner, pan_field(fmt, pan)))
    return cipher.encrypt_ecb(_xor(pin_field(fmt, pin), pan_field(fmt, pan)))


def decrypt_pin_block(fmt: PinBlockFormat | str, cipher: BlockCipher, block: bytes, pan: str) -> str:
    fmt = PinBlockFormat(fmt)
    _check_cipher(fmt, cipher)
    size = 8 if fmt is PinBlockFormat.ISO0 else 16
    if len(block) != size:
        raise PinBlockError(f"{fmt.value} PIN block must be {size} bytes, got {len(block)}")
    if fmt is PinBlockFormat.ISO4:
        clear = cipher.decrypt_ecb(_xor(cipher.decrypt_ecb(block), pan_field(fmt, pan)))
        return _parse(clear[:8].hex().upper(), "4", "A")
    return _parse(_xor(cipher.decrypt_ecb(block), pan_field(fmt, pan)).hex().upper(), "0", "F")


def _parse(field: str, control: str, fill: str) -> str:
    """Check the control nibble, length, digits and fill; a wrong key or PAN fails here."""
    if field[0] != control:
        raise PinBlockError("PIN block control nibble is wrong (wrong key, PAN or format?)")
    n = int(field[1], 16)
    if not 4 <= n <= 12:
        raise PinBlockError("PIN block length nibble out of range (wrong key, PAN or format?)")
    pin, rest = field[2 : 2 + n], field[2 + n :]
    if not pin.isdigit() or rest.strip(fill):
        raise PinBlockError("PIN block digits or fill are malformed (wrong key, PAN or format?)")
    return pin
