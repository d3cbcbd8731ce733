"""Inside the TEE, without a process or a reader: the PIN entry, and what a kernel result
is reduced to before it may cross the boundary."""
from __future__ import annotations

import random

import pytest

from keys.model import Key
from keys.symmetric import open_field
from keys.tlv import encode_dict, flatten
from terminal.kernel import KernelResult, Outcome
from terminal.tee.card import clean_icc_data, protect
from terminal.tee.pinpad import PIN_MAX, PinEntry, PinEntryError
from terminal.tee.server import scrub

PAN = "6299990000000000012"


class FixedShuffle(random.Random):
    """A layout the test can predict: digit d at position 9 - d."""

    def shuffle(self, x):
        x.reverse()


def test_positions_become_digits_through_the_layout():
    entry = PinEntry(b"h", FixedShuffle())
    assert entry.layout == (9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
    for position in (8, 7, 6, 5):  # digits 1 2 3 4
        entry.press(position)
    assert entry.take() == "1234"


def test_take_and_wipe_leave_no_digit_in_memory():
    entry = PinEntry(b"h", FixedShuffle())
    for position in (0, 1, 2, 3, 4):
        entry.press(position)
    assert entry.take() == "98765"
    assert entry.count == 0 and entry._digits == bytearray(PIN_MAX)
    entry.press(0)
    entry.wipe()
    assert entry.count == 0 and entry._digits == bytearray(PIN_MAX)


def test_backspace_limits_and_repr():
    entry = PinEntry(b"h")
    assert entry.backspace() == 0
    for _ in range(PIN_MAX):
        entry.press(3)
    with pytest.raises(PinEntryError, match="at most 12"):
        entry.press(3)
    assert entry.backspace() == PIN_MAX - 1
    assert repr(entry) == "<PinEntry 11 digits>"
    for bad in (-1, 10):
        with pytest.raises(PinEntryError, match="0 to 9"):
            entry.press(bad)
    short = PinEntry(b"h")
    short.press(1)
    with pytest.raises(PinEntryError, match="at least 4"):
        short.take()
    assert short.count == 1  # a short PIN is not wiped: the customer goes on typing


class FakeKeys:
    def __init__(self):
        self.tdk = Key("SM4", "TDK", bytes(range(16)))

    def seal(self, data: bytes) -> bytes:
        from keys.symmetric import seal_field

        return seal_field(self.tdk.cipher, data)


def test_a_kernel_result_is_reduced_to_masked_and_sealed_data():
    keys = FakeKeys()
    leaky_icc = encode_dict({0x9F26: b"\x11" * 8, 0x5A: bytes.fromhex(PAN + "F"), 0x57: b"\x62\x99",
                             0x5F24: b"\x30\x12\x31", 0x9F36: b"\x00\x01"})
    result = KernelResult(Outcome.ONLINE_REQUEST, "online authorisation", pan=PAN, psn="01", expiry="3012",
                          track2=bytes.fromhex(PAN + "D30122010000000000F"), icc_data=leaky_icc,
                          cvm="ONLINE_PIN", relay_suspected=True)
    outcome, held = protect(keys, result)
    assert outcome.masked_pan == "629999*********0012" and held.pan == PAN and held.handle == outcome.handle
    assert set(flatten(outcome.icc_data)) == {0x9F26, 0x9F36}
    assert open_field(keys.tdk.cipher, outcome.sealed_track2) == (PAN + "D30122010000000000").encode()
    assert (outcome.outcome, outcome.cvm, outcome.entry_mode, outcome.relay_suspected) == \
        ("ONLINE_REQUEST", "ONLINE_PIN", "071", True)
    assert PAN not in repr(held)


def test_a_result_without_card_data_has_no_handle():
    outcome, held = protect(FakeKeys(), KernelResult(Outcome.TRY_AGAIN, "card removed, tap again"))
    assert held is None and outcome.handle == b"" and outcome.sealed_track2 == b"" and outcome.masked_pan == ""


def test_error_details_never_carry_a_pan():
    assert scrub(f"card {PAN} refused") == "card <digits> refused"
    assert len(scrub("x" * 1000)) == 200
    assert clean_icc_data(b"") == b""
