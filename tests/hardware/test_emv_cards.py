"""Simulated EMV cards, driven through pcscd and the vpcd reader like a real terminal would."""
from __future__ import annotations

import pytest

from hardware.apdu import command
from hardware.emvcard import load_card
from keys.tlv import build_dol_data, decode

from .conftest import TAP_TIMEOUT_S
from .emv_fixtures import ARC_APPROVED, quick_flow, verify_arqc
from .emv_terminal import ca_keys, pdol_values, terminal_dynamic_data, verify_rsa_fdda, verify_sm2_fdda


def test_pboc_sm_card_quick_flow_fdda_verifies_up_the_sm2_chain(issuer, tap):
    state, hsm = issuer
    terminal, _ = tap("pboc-sm-debit")
    txn, gpo, records, static = quick_flow(terminal, amount=12345)
    assert gpo[0x9F27] == b"\x80"  # online cryptogram required -> ARQC
    assert records[0x8F] == b"\x80"
    ca = ca_keys(state)[("A000000333", "80")]
    icc_data = verify_sm2_fdda(ca, records | gpo, static, terminal_dynamic_data(txn, gpo[0x9F69]))
    assert icc_data == b"\x02" + gpo[0x9F36]
    assert gpo[0x9F69][0] == 0x01 and gpo[0x9F69][5:] == gpo[0x9F6C]
    arpc = verify_arqc(hsm, "pboc-sm-debit", "PBOC_SM4", records, gpo, txn)
    assert len(arpc) == 8


def test_qvsdc_card_quick_flow_fdda_recovers_up_the_rsa_chain(issuer, tap):
    state, hsm = issuer
    terminal, _ = tap("qvsdc-rsa")
    txn, gpo, records, static = quick_flow(terminal, amount=500, currency="0840")
    assert gpo[0x9F27] == b"\x80"
    assert 0x92 in records and 0x9F48 in records  # both keys overflow their certificates
    ca = ca_keys(state)[("A000000003", "92")]
    icc_data = verify_rsa_fdda(ca, records | gpo, static, terminal_dynamic_data(txn, gpo[0x9F69]))
    assert icc_data == b"\x02" + gpo[0x9F36]
    verify_arqc(hsm, "qvsdc-rsa", "EMV_TDES", records, gpo, txn)


def test_a_tampered_terminal_amount_breaks_the_fdda_signature(issuer, tap):
    state, _ = issuer
    terminal, _ = tap("pboc-sm-debit")
    txn, gpo, records, static = quick_flow(terminal, amount=100)
    forged = {**txn, 0x9F02: bytes.fromhex("000000000001")}
    with pytest.raises(Exception, match="does not verify"):
        verify_sm2_fdda(ca_keys(state)[("A000000333", "80")], records | gpo, static,
                        terminal_dynamic_data(forged, gpo[0x9F69]))


def test_offline_approval_spends_electronic_cash_and_counts_offline(tap):
    terminal, card = tap("pboc-sm-debit")
    terminal.select(card.profile.aid)
    balance = int(terminal.get_data(0x9F79).hex())
    fci, _ = terminal.select(card.profile.aid)
    gpo = terminal.gpo(fci[0x9F38], pdol_values(amount=1500, ttq="26000000"))
    assert gpo[0x9F27] == b"\x40"  # TC: approved offline
    assert 0x9F4B in gpo  # an offline approval is always signed (fDDA)
    assert int(terminal.get_data(0x9F79).hex()) == balance - 1500
    log, sw = terminal.read_record(11, 1)
    assert sw == 0x9000 and log[6:12] == bytes.fromhex("000000001500")


@pytest.mark.parametrize("profile,family", [("pboc-sm-credit", "PBOC_SM4"), ("qvsdc-rsa", "EMV_TDES")])
def test_standard_flow_generate_ac_arqc_verified_by_the_hsm_then_tc(issuer, tap, profile, family):
    _, hsm = issuer
    terminal, card = tap(profile)
    fci, _ = terminal.select(card.profile.aid)
    gpo = terminal.gpo(fci[0x9F38], pdol_values(ttq="10000000", currency=card.profile.currency))
    assert set(gpo) == {0x82, 0x94}  # the standard flow: AIP and AFL only
    records, _ = terminal.read_records(gpo[0x94])
    txn = pdol_values(amount=8800, currency=card.profile.currency)
    cdol1 = build_dol_data(records[0x8C], txn)
    data, sw = terminal.send(command(0x80, 0xAE, 0x80, 0x00, cdol1, le=0))
    assert sw == 0x9000
    first = {n.tag: n.value for n in decode(data)[0].children}
    assert first[0x9F27] == b"\x80"
    arpc = verify_arqc(hsm, profile, family, records, {**gpo, **first}, txn)
    assert terminal.send(command(0x00, 0x82, 0x00, 0x00, arpc + ARC_APPROVED))[1] == 0x9000
    cdol2 = build_dol_data(records[0x8D], {0x8A: ARC_APPROVED, 0x9F37: txn[0x9F37]})
    data, sw = terminal.send(command(0x80, 0xAE, 0x40, 0x00, cdol2, le=0))
    assert sw == 0x9000
    second = {n.tag: n.value for n in decode(data)[0].children}
    assert second[0x9F27] == b"\x40" and second[0x9F36] == first[0x9F36]
    assert terminal.get_data(0x9F13) == first[0x9F36]  # last online ATC


def test_a_tc_request_is_turned_into_arqc_when_the_card_has_no_offline_room(tap):
    terminal, card = tap("hce-wallet")
    fci, _ = terminal.select(card.profile.aid)
    terminal.gpo(fci[0x9F38], pdol_values(ttq="10000000"))
    data, sw = terminal.send(command(0x80, 0xAE, 0x40, 0x00, b"".join(
        pdol_values(amount=100)[t] for t in (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37)), le=0))
    assert sw == 0x9000 and decode(data)[0].find(0x9F27).value == b"\x80"


def test_atc_increments_and_survives_a_restart_of_the_card(issuer, tap, reader):
    state, hsm = issuer
    terminal, card = tap("pboc-sm-credit")
    terminal.select(card.profile.aid)
    before = int.from_bytes(terminal.get_data(0x9F36), "big")
    _, gpo, _, _ = quick_flow(terminal)
    assert int.from_bytes(gpo[0x9F36], "big") == before + 1
    terminal.session.close()
    card.vcard.remove()
    reader.wait_for_removal(TAP_TIMEOUT_S)
    # A new card object from the same state directory: the chip after a process restart.
    restarted = load_card("pboc-sm-credit", state, hsm)
    assert restarted is not card
    terminal, _ = tap("pboc-sm-credit", card=restarted)
    terminal.select(card.profile.aid)
    assert int.from_bytes(terminal.get_data(0x9F36), "big") == before + 1
    _, gpo, _, _ = quick_flow(terminal)
    assert int.from_bytes(gpo[0x9F36], "big") == before + 2


def test_hce_wallet_has_its_own_atr_a_token_pan_and_consumer_device_cvm(issuer, tap):
    _, hsm = issuer
    terminal, card = tap("hce-wallet")
    assert b"HCE WLLT" in terminal.session.atr
    txn, gpo, records, _ = quick_flow(terminal, amount=2000)
    assert gpo[0x9F6C][1] & 0x80  # CTQ: consumer device CVM performed
    assert 0x9F4B not in gpo and 0x90 not in records  # online only: no ODA on a phone
    assert records[0x5A].hex().startswith("629998") and records[0x5F24][:2] == bytes.fromhex("2706")
    verify_arqc(hsm, "hce-wallet", "PBOC_SM4", records, gpo, txn)
