"""Card transactions and PIN entry inside the TEE, against a real host and a simulated
PBOC card on the private pcscd's virtual reader."""
from __future__ import annotations

import pytest

from acquirer.protocol import EntryMode, ResponseCode
from keys.hsm import terminal_key_name
from keys.pinblock import PinBlockFormat, decrypt_pin_block
from keys.tlv import SENSITIVE_TAGS, flatten
from terminal.tee import Command, ErrorCode, TeeError, api
from terminal.tee.secure_world import card_data
from terminal.tee.wire import recv_frame, send_frame

from .tee_fixtures import *  # noqa: F401,F403
from .tee_fixtures import PIN, TERMINAL

pytestmark = pytest.mark.pcsc
SMALL, LARGE = 5_000, 150_000  # below and above the kernel's 1,000-yuan CVM limit


def type_pin(keys, handle: bytes, pin: str) -> api.PinBlock:
    pad = keys.pin_begin(handle)
    assert sorted(pad.layout) == list(range(10))
    for digit in pin:
        keys.pin_key(pad.layout.index(int(digit)))  # the UI knows where a digit is drawn, sends where it was hit
    return keys.pin_enter()


def test_a_small_sale_needs_no_pin_and_returns_only_protected_card_data(card_lane):
    card_lane.tap()
    out = card_lane.keys.transact(SMALL, timeout_s=10)
    assert (out.outcome, out.cvm, out.entry_mode) == ("ONLINE_REQUEST", "NO_CVM", EntryMode.CONTACTLESS_NO_PIN.value)
    assert out.masked_pan == card_lane.pan[:6] + "*" * (len(card_lane.pan) - 10) + card_lane.pan[-4:]
    assert out.psn == card_lane.card.profile.psn and len(out.handle) == 16
    icc = flatten(out.icc_data)
    assert 0x9F26 in icc and not (set(icc) & (SENSITIVE_TAGS | {0x5F24}))
    # Field 35 opens only with the terminal's TDK, which only the TEE and the host hold.
    hsm = card_lane.host.service.hsm
    track2 = hsm.open_data(terminal_key_name(TERMINAL, "TDK"), out.sealed_track2).decode()
    assert track2.startswith(card_lane.pan + "D")
    sale = card_lane.session.sale(SMALL, card_data(out))
    assert sale.approved, sale.text


def test_a_large_sale_takes_the_pin_on_the_scrambled_keypad(card_lane):
    card_lane.tap()
    keys = card_lane.keys
    out = keys.transact(LARGE, timeout_s=10)
    assert (out.cvm, out.entry_mode) == ("ONLINE_PIN", EntryMode.CONTACTLESS_PIN.value)
    pad = keys.pin_begin(out.handle)
    assert (pad.min_digits, pad.max_digits) == (4, 12)
    for digit in PIN[:3] + "0":
        keys.pin_key(pad.layout.index(int(digit)))
    assert keys.pin_backspace() == 3  # a slip, corrected
    for n, digit in enumerate(PIN[3:], start=4):
        assert keys.pin_key(pad.layout.index(int(digit))) == n
    block = keys.pin_enter()
    assert block.format == "SM4" and len(block.block) == 16
    # The block is the PIN typed, for the PAN the TEE kept (opened here with the host's TPK).
    tpk = card_lane.host.service.hsm._get(terminal_key_name(TERMINAL, "TPK"))
    assert decrypt_pin_block(PinBlockFormat.SM4, tpk.cipher, block.block, card_lane.pan) == PIN
    sale = card_lane.session.sale(LARGE, card_data(out, block))
    assert sale.approved, sale.text


def test_a_wrong_pin_is_declined_by_the_issuer(card_lane):
    card_lane.tap()
    out = card_lane.keys.transact(LARGE, timeout_s=10)
    sale = card_lane.session.sale(LARGE, card_data(out, type_pin(card_lane.keys, out.handle, "0000")))
    assert sale.code == ResponseCode.INCORRECT_PIN.value


def test_pin_entry_rules_cancel_and_handles(card_lane):
    card_lane.tap()
    keys = card_lane.keys
    out = keys.transact(LARGE, timeout_s=10)

    def refused(call, code):
        with pytest.raises(TeeError) as info:
            call()
        assert info.value.code is code, info.value
        return info.value

    refused(lambda: keys.pin_key(1), ErrorCode.BAD_STATE)  # no entry begun
    refused(lambda: keys.pin_begin(bytes(16)), ErrorCode.ITEM_NOT_FOUND)
    first = keys.pin_begin(out.handle)
    refused(lambda: keys.pin_key(10), ErrorCode.BAD_PARAMETERS)
    for _ in range(3):
        keys.pin_key(0)
    assert "at least 4" in refused(keys.pin_enter, ErrorCode.BAD_PARAMETERS).detail
    for _ in range(9):
        keys.pin_key(0)
    assert "at most 12" in refused(lambda: keys.pin_key(0), ErrorCode.BAD_PARAMETERS).detail
    keys.pin_cancel()  # wipes the digits and ends the entry
    refused(keys.pin_enter, ErrorCode.BAD_STATE)
    again = keys.pin_begin(out.handle)
    assert sorted(again.layout) == sorted(first.layout) == list(range(10))
    keys.end_transaction(out.handle)  # the card (and its PAN) is forgotten
    refused(keys.pin_enter, ErrorCode.BAD_STATE)
    refused(lambda: keys.pin_begin(out.handle), ErrorCode.ITEM_NOT_FOUND)
    keys.end_transaction(out.handle)  # again: nothing to forget, no error


def test_closing_the_session_forgets_the_card_and_the_digits(card_lane):
    card_lane.tap()
    keys = card_lane.keys
    out = keys.transact(LARGE, timeout_s=10)
    pad = keys.pin_begin(out.handle)
    keys.pin_key(pad.layout.index(7))
    keys.close()
    keys.client.open_session(card_lane.tee.credentials)
    for call in (keys.pin_enter, lambda: keys.pin_begin(out.handle)):
        with pytest.raises(TeeError) as info:
            call()
        assert info.value.code in (ErrorCode.BAD_STATE, ErrorCode.ITEM_NOT_FOUND)


def test_layouts_are_fresh_permutations(card_lane):
    card_lane.tap()
    out = card_lane.keys.transact(SMALL, timeout_s=10)
    layouts = {tuple(card_lane.keys.pin_begin(out.handle).layout) for _ in range(8)}
    assert all(sorted(layout) == list(range(10)) for layout in layouts)
    assert len(layouts) > 1  # 8 draws of 10! layouts: all equal only if the shuffle is broken


def test_a_tap_wait_is_cancelled_and_a_second_command_meanwhile_is_busy(card_lane):
    """No card on the reader: TRANSACT waits. Frames go straight onto the channel so the
    order is certain: the TEE reads the STATUS only after TRANSACT has started."""
    sock = card_lane.tee.channel()
    session = card_lane.keys.client.session_id
    send_frame(sock, {"op": "invoke", "id": 101, "session": session, "command": int(Command.TRANSACT),
                      "params": {"amount": SMALL, "timeout_ms": 120_000}})
    send_frame(sock, {"op": "invoke", "id": 102, "session": session, "command": int(Command.STATUS), "params": {}})
    busy = recv_frame(sock)
    assert (busy["id"], ErrorCode(busy["code"])) == (102, ErrorCode.BUSY)
    send_frame(sock, {"op": "cancel", "id": 0, "session": session})
    cancelled = recv_frame(sock)
    assert (cancelled["id"], ErrorCode(cancelled["code"])) == (101, ErrorCode.CANCEL)
    assert card_lane.keys.status().state == "READY"  # the session goes on


def test_no_tap_before_the_timeout_is_no_card(card_lane):
    with pytest.raises(TeeError) as info:
        card_lane.keys.transact(SMALL, timeout_s=0.5)
    assert info.value.code is ErrorCode.NO_CARD


def test_transact_needs_working_keys_before_anyone_taps(tee_keys):
    with pytest.raises(TeeError) as info:
        tee_keys.transact(SMALL, timeout_s=5)
    assert info.value.code is ErrorCode.NOT_PROVISIONED


@pytest.mark.parametrize("amount", [0, -1, 10**12])
def test_transact_refuses_a_bad_amount_before_the_tap(tee_lane, amount):
    with pytest.raises(TeeError) as info:
        tee_lane.keys.transact(amount, timeout_s=5)
    assert info.value.code is ErrorCode.BAD_PARAMETERS and "amount" in info.value.detail
