"""Each faulty test card shows exactly the outcome docs/cards.md promises, through pcscd."""
from __future__ import annotations

import datetime

import pytest

from hardware.apdu import command
from hardware.errors import CardRemoved
from keys.errors import MACError
from keys.tlv import TLVError, decode, flatten

from .emv_fixtures import quick_flow, verify_arqc
from .emv_terminal import pdol_values


def _select_and_pdol(terminal, card):
    terminal.select_ppse()
    fci, sw = terminal.select(card.profile.aid)
    return fci, sw


def test_expired_card_reads_fine_but_its_dates_are_past(tap):
    terminal, _ = tap("faulty-expired")
    _, gpo, records, _ = quick_flow(terminal)
    today = datetime.date.today().strftime("%y%m%d")
    assert records[0x5F24].hex() < today  # the kernel must decline: "expired application"
    icc_cert = records[0x9F46]
    mm, yy = icc_cert[11:13].hex()[:2], icc_cert[11:13].hex()[2:]
    assert f"{yy}{mm}" < today[:4]  # the ICC certificate expired with the card: ODA fails too
    assert gpo[0x9F27] == b"\x80"


def test_blocked_card_answers_select_with_6283_and_refuses_gpo(tap):
    terminal, card = tap("faulty-blocked")
    fci, sw = _select_and_pdol(terminal, card)
    assert sw == 0x6283 and fci[0x84] == card.profile.aid  # the FCI still comes back
    data, sw = terminal.gpo_raw(fci[0x9F38], pdol_values())
    assert (data, sw) == (b"", 0x6985)


def test_declining_card_answers_aac_without_a_signature(tap):
    terminal, _ = tap("faulty-decline")
    _, gpo, _, _ = quick_flow(terminal, ttq="26000000", amount=100)  # even an offline-able amount
    assert gpo[0x9F27] == b"\x00"
    assert 0x9F4B not in gpo


def test_wrong_key_card_cryptogram_is_rejected_by_the_issuer_hsm(issuer, tap):
    _, hsm = issuer
    terminal, _ = tap("faulty-wrong-ac")
    txn, gpo, records, _ = quick_flow(terminal, currency="0840")
    with pytest.raises(MACError, match="ARQC does not verify"):
        verify_arqc(hsm, "faulty-wrong-ac", "EMV_TDES", records, gpo, txn)


def test_malformed_record_fails_tlv_decoding_at_its_offset(tap):
    terminal, card = tap("faulty-malformed-record")
    fci, _ = _select_and_pdol(terminal, card)
    terminal.gpo(fci[0x9F38], pdol_values())  # the card is ready to read after GPO
    data, sw = terminal.read_record(1, 1)
    assert sw == 0x9000
    with pytest.raises(TLVError, match="tag 57 at offset 2 declares"):
        decode(data)
    assert terminal.read_record(2, 1)[1] == 0x9000  # the rest of the card reads


def test_truncated_gpo_response_fails_tlv_decoding(tap):
    terminal, card = tap("faulty-truncated-gpo")
    fci, _ = _select_and_pdol(terminal, card)
    data, sw = terminal.gpo_raw(fci[0x9F38], pdol_values())
    assert sw == 0x9000
    with pytest.raises(TLVError, match="tag 77 at offset 0 declares"):
        decode(data)


def test_slow_card_completes_the_flow_with_its_delay_configured(tap):
    terminal, card = tap("faulty-slow")
    assert card.delay_s == pytest.approx(0.030)  # what a relay-detection test measures; not asserted as time
    _, gpo, records, _ = quick_flow(terminal)
    assert gpo[0x9F27] == b"\x80" and 0x5A in records


def test_vanishing_card_leaves_during_the_second_read_record(tap):
    terminal, card = tap("faulty-vanish")
    fci, _ = _select_and_pdol(terminal, card)
    gpo = terminal.gpo(fci[0x9F38], pdol_values())
    assert terminal.read_record(1, 1)[1] == 0x9000
    with pytest.raises(CardRemoved, match="card removed, tap again"):
        terminal.read_record(2, 1)
    assert card.vcard.wait_gone(10)
    assert gpo[0x9F36] == card.state.atc.to_bytes(2, "big")  # the ATC it used is spent, not reused


def test_unknown_commands_and_bad_gpo_data_get_iso_status_words(tap):
    terminal, card = tap("pboc-sm-credit")
    assert terminal.send(command(0x00, 0xB2, 0x01, 0x0C, le=0))[1] == 0x6985  # nothing selected
    fci, _ = _select_and_pdol(terminal, card)
    assert terminal.send(bytes.fromhex("80A8000003830100"))[1] == 0x6700  # PDOL data of the wrong length
    assert terminal.send(command(0x80, 0x50, 0x00, 0x00, le=0))[1] == 0x6D00
    assert terminal.send(command(0x80, 0xAE, 0x80, 0x00, bytes(29), le=0))[1] == 0x6985  # GAC before GPO
    assert terminal.get_data(0x9F79) is None  # a credit card has no electronic cash
    assert flatten(terminal.send(command(0x80, 0xCA, 0x9F, 0x4F, le=0))[0])[0x9F4F]
