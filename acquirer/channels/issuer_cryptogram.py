"""What an online cryptogram covers: the data list the issuer simulator checks, in order.

The card computes its ARQC over these values; the issuer rebuilds the same bytes from
field 55 and asks the HSM to verify. Both sides must agree byte for byte: this is the
list `hardware/emvcard/card.py` (`ac_input`) computes over, written down in docs/issuer.md.

    9F02 (6) 9F03 (6) 9F1A (2) 95 (5) 5F2A (2) 9A (3) 9C (1) 9F37 (4) 82 (2) 9F36 (2) CVR (4)

EMV Book 2's recommended minimum set (section 8.1.1, table 26: the terminal's CDOL1 data,
then AIP and ATC), followed by the card verification results as the issuer application
data carries them: bytes 4-7 of 9F10 (a length byte 03 and 3 CVR bytes), at the same
place in the PBOC IAD (07 | DKI | CVN | CVR | ...) and in Visa's format 0 (06 | DKI | CVN |
CVR), for both card families, as JR/T 0025 and Visa CVN 10 do.
"""
from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter

from keys.emv import CardFamily

from acquirer.frozen import made

# (tag, length, name, may be absent). A value absent from field 55 counts as zeros, as in
# a DOL (EMV Book 3, 5.4), only for Amount Other: UnionPay terminals often leave it out.
AC_DATA: tuple[tuple[int, int, str, bool], ...] = (
    (0x9F02, 6, "Amount, Authorised", False),
    (0x9F03, 6, "Amount, Other", True),
    (0x9F1A, 2, "Terminal Country Code", False),
    (0x95, 5, "Terminal Verification Results", False),
    (0x5F2A, 2, "Transaction Currency Code", False),
    (0x9A, 3, "Transaction Date", False),
    (0x9C, 1, "Transaction Type", False),
    (0x9F37, 4, "Unpredictable Number", False),
    (0x82, 2, "Application Interchange Profile", False),
    (0x9F36, 2, "Application Transaction Counter", False),
)
# The common case's read (`_common_parts`): the tags that must be there in one C-level lookup
# (a KeyError: one is missing, and the checked way names it), then 9F03, the one tag that may
# be absent (read as its zeros), apart.
_REQUIRED = itemgetter(*(tag for tag, _, _, optional in AC_DATA if not optional))
_REQUIRED_LENGTHS = [length for _, length, _, optional in AC_DATA if not optional]
if [tag for tag, _, _, optional in AC_DATA if optional] != [0x9F03] or AC_DATA[1][0] != 0x9F03:
    raise RuntimeError("_common_parts reads AC_DATA's only optional tag, 9F03, second in order, apart")
_NO_AMOUNT_OTHER = bytes(6)
IAD_CVR = slice(3, 7)  # of 9F10: length (1) | DKI (1) | CVN (1) | CVR (4: 03 + 3 bytes) | ...
CID_TYPE_MASK, CID_ARQC = 0xC0, 0x80  # 9F27 bits 8-7: 00 AAC, 01 TC, 10 ARQC


class IccDataError(ValueError):
    """Field 55 lacks a value the cryptogram covers, or holds one of the wrong form."""


@dataclass(frozen=True)
class OnlineCryptogram:
    """An ARQC with everything the issuer needs to check it. Holds no cardholder data."""

    ac: bytes  # 9F26
    atc: bytes  # 9F36, 2 bytes
    data: bytes  # exactly the bytes the AC covers
    amount: int  # 9F02, fen
    currency: str  # 5F2A as 3 digits, "156"
    cid: int | None  # 9F27, None when the terminal did not send it

    @property
    def atc_value(self) -> int:
        return int.from_bytes(self.atc)

    @property
    def is_arqc(self) -> bool:
        return self.cid is None or self.cid & CID_TYPE_MASK == CID_ARQC


def _tag(tag: int) -> str:
    return f"{tag:X}"


def _value(icc: dict[int, bytes], tag: int, length: int, optional: bool = False) -> bytes:
    value = icc.get(tag)
    if value is None:
        if optional:
            return bytes(length)
        raise IccDataError(f"field 55 tag {_tag(tag)} is missing")
    if len(value) != length:
        raise IccDataError(f"field 55 tag {_tag(tag)} must be {length} bytes, got {len(value)}")
    return bytes(value)


def _bcd(tag: int, value: bytes) -> str:
    digits = value.hex()
    if not digits.isdigit():
        raise IccDataError(f"field 55 tag {_tag(tag)} must be BCD digits")
    return digits


def ac_data(family: CardFamily | str, icc: dict[int, bytes]) -> bytes:
    """The bytes the AC covers, in order (module docstring); IccDataError names a bad tag.

    The layout is the same for both families; `family` is checked so a caller cannot
    ask for a family that has no layout here."""
    if type(family) is not CardFamily:
        CardFamily(family)
    # Anything but the common case takes the tag-by-tag way, which names the tag.
    parts = _common_parts(icc) or [_value(icc, tag, length, optional) for tag, length, _, optional in AC_DATA]
    data = b"".join(parts)
    iad = icc.get(0x9F10)
    if iad is None:
        raise IccDataError("field 55 tag 9F10 is missing (the cryptogram covers its CVR)")
    if len(iad) < IAD_CVR.stop:
        raise IccDataError(f"field 55 tag 9F10 must be at least {IAD_CVR.stop} bytes, got {len(iad)}")
    return data + bytes(iad[IAD_CVR])


def _common_parts(icc: dict[int, bytes]) -> list[bytes] | None:
    """The AC_DATA values in the common case: every tag there at its length (9F03, which may
    be absent, as its zeros); None otherwise."""
    try:
        required = _REQUIRED(icc)
    except KeyError:
        return None
    other = icc.get(0x9F03, _NO_AMOUNT_OTHER)
    if len(other) != 6 or list(map(len, required)) != _REQUIRED_LENGTHS:
        return None
    return [required[0], other, *required[1:]]


def read_cryptogram(family: CardFamily | str, icc: dict[int, bytes]) -> OnlineCryptogram:
    """Take the AC, the ATC and the covered data from field 55's tags."""
    # The common case (once per sale) in one pass: every tag there at its length, the amount
    # and the currency in BCD. Anything else goes the checked way, which names the bad tag.
    ac, cid, iad = icc.get(0x9F26), icc.get(0x9F27), icc.get(0x9F10)
    parts = _common_parts(icc)
    if (type(family) is CardFamily and parts is not None and ac is not None and len(ac) == 8
            and iad is not None and len(iad) >= IAD_CVR.stop and (cid is None or len(cid) == 1)):
        amount, currency = parts[0].hex(), parts[4].hex()
        if amount.isdigit() and currency.isdigit():
            parts.append(iad[IAD_CVR])
            # made without the frozen dataclass's __init__ (`made`: it checks nothing more)
            return made(OnlineCryptogram, {"ac": bytes(ac), "atc": bytes(parts[9]), "data": b"".join(parts),
                                           "amount": int(amount), "currency": currency[-3:],
                                           "cid": None if cid is None else cid[0]})
    return _read_checked(family, icc)


def _read_checked(family: CardFamily | str, icc: dict[int, bytes]) -> OnlineCryptogram:
    """`read_cryptogram` tag by tag: IccDataError names the first tag missing or malformed."""
    ac = _value(icc, 0x9F26, 8)
    data = ac_data(family, icc)
    cid = icc.get(0x9F27)
    if cid is not None and len(cid) != 1:
        raise IccDataError(f"field 55 tag 9F27 must be 1 byte, got {len(cid)}")
    # ac_data has checked that the ATC, the amount and the currency are there at their lengths
    return made(OnlineCryptogram, {
        "ac": ac,
        "atc": bytes(icc[0x9F36]),
        "data": data,
        "amount": int(_bcd(0x9F02, icc[0x9F02])),
        "currency": _bcd(0x5F2A, icc[0x5F2A])[-3:],
        "cid": None if cid is None else cid[0],
    })
