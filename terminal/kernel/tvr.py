"""Terminal verification results (tag 95): the bits this kernel sets, with their meaning.

Bit positions: EMV 4.x Book 3 Annex C5. Byte 5 bit 4 is one of the bits Book 3 reserves
for the contactless specifications; Book C-2 uses it for "relay resistance threshold
exceeded", and so does this kernel for a relay suspected from timings.
"""
from __future__ import annotations

# (byte index 0-4, mask): what a cashier or an operator reads for it.
ODA_NOT_PERFORMED = (0, 0x80)
ICC_DATA_MISSING = (0, 0x20)
DDA_FAILED = (0, 0x08)  # fDDA is a form of DDA: its failure is reported here
VERSIONS_DIFFER = (1, 0x80)
EXPIRED = (1, 0x40)
NOT_YET_EFFECTIVE = (1, 0x20)
SERVICE_NOT_ALLOWED = (1, 0x10)
FLOOR_LIMIT_EXCEEDED = (3, 0x80)
ISSUER_AUTH_FAILED = (4, 0x40)
RELAY_THRESHOLD_EXCEEDED = (4, 0x08)

# Plain words for the reason a TAC/IAC bit decided, most telling first.
NAMES = {
    EXPIRED: "expired card",
    NOT_YET_EFFECTIVE: "card not yet valid",
    SERVICE_NOT_ALLOWED: "service not allowed for this card",
    DDA_FAILED: "card authentication failed",
    ICC_DATA_MISSING: "card data missing",
    ODA_NOT_PERFORMED: "card not authenticated offline",
    VERSIONS_DIFFER: "card application version differs",
    FLOOR_LIMIT_EXCEEDED: "amount above the floor limit",
    ISSUER_AUTH_FAILED: "issuer authentication failed",
    RELAY_THRESHOLD_EXCEEDED: "card answered too slowly",
}


class Tvr:
    """Five bytes, set bit by bit as the kernel finds things."""

    def __init__(self, value: bytes = bytes(5)) -> None:
        if len(value) != 5:
            raise ValueError("a TVR is 5 bytes")
        self._bytes = bytearray(value)

    def set(self, bit: tuple[int, int]) -> None:
        index, mask = bit
        self._bytes[index] |= mask

    def clear(self, bit: tuple[int, int]) -> None:
        index, mask = bit
        self._bytes[index] &= ~mask & 0xFF

    def has(self, bit: tuple[int, int]) -> bool:
        index, mask = bit
        return bool(self._bytes[index] & mask)

    def matches(self, *action_codes: bytes) -> bytes:
        """The TVR bits also set in any of the action codes (TAC/IAC), as 5 bytes."""
        merged = bytearray(5)
        for code in action_codes:
            for i in range(5):
                merged[i] |= code[i]
        return bytes(t & m for t, m in zip(self._bytes, merged, strict=True))

    def value(self) -> bytes:
        return bytes(self._bytes)


def describe(bits: bytes) -> str:
    """The plainest name among `bits` (a TVR masked by an action code), for a reason text."""
    for (index, mask), name in NAMES.items():
        if bits[index] & mask:
            return name
    return "terminal action codes"
