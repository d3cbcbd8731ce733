"""PIN entry on a scrambled keypad, inside the TEE.

The TEE deals a fresh random layout (a permutation of the digits over ten key
positions) for every entry; the UI draws it and reports only which *position* was
pressed. Digits exist only here, in a fixed-size bytearray that is zeroed on enter,
cancel, end of transaction and session close. Enter turns them into a PIN block for the
PAN of the transaction the entry belongs to, and the digits are gone.
"""
from __future__ import annotations

import secrets

PIN_MIN, PIN_MAX = 4, 12
PASSCODE_MIN = 6  # face pay's passcode (acquirer.face enrols 6 to 12 digits)
POSITIONS = 10


class PinEntryError(ValueError):
    """A key press or enter that the entry cannot take (the message says why)."""


class PinEntry:
    def __init__(self, handle: bytes, rng: secrets.SystemRandom | None = None, min_digits: int = PIN_MIN):
        self.handle = handle  # the card's transaction handle; b"" for a face-pay passcode
        self.min_digits = min_digits
        digits = list(range(POSITIONS))
        (rng or secrets.SystemRandom()).shuffle(digits)
        self.layout = tuple(digits)
        self._digits = bytearray(PIN_MAX)
        self._count = 0

    def __repr__(self) -> str:  # never the digits, not even their values in a traceback
        return f"<PinEntry {self._count} digits>"

    @property
    def count(self) -> int:
        return self._count

    def press(self, position: int) -> int:
        if not 0 <= position < POSITIONS:
            raise PinEntryError(f"key position must be 0 to {POSITIONS - 1}, got {position}")
        if self._count >= PIN_MAX:
            raise PinEntryError(f"a PIN has at most {PIN_MAX} digits")
        self._digits[self._count] = self.layout[position]
        self._count += 1
        return self._count

    def backspace(self) -> int:
        if self._count:
            self._count -= 1
            self._digits[self._count] = 0
        return self._count

    def take(self) -> str:
        """The PIN for the block builder; the entry is wiped whatever happens next.

        Python strings cannot be zeroed: the one made here lives only until the PIN
        block is built, inside this process."""
        if self._count < self.min_digits:
            raise PinEntryError(f"at least {self.min_digits} digits, {self._count} entered")
        try:
            return "".join(chr(0x30 + d) for d in self._digits[: self._count])
        finally:
            self.wipe()

    def wipe(self) -> None:
        for i in range(PIN_MAX):
            self._digits[i] = 0
        self._count = 0
