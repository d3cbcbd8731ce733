"""The kernel against the simulated cards, through pcscd and the vpcd reader: the good paths."""
from __future__ import annotations

import datetime

import pytest

from terminal.kernel import Kernel, Outcome, TransactionRequest

from .kernel_helpers import ARC_APPROVED, ARC_DECLINED, field55, issuer_checks_arqc

# Relay thresholds far above any hiccup: these tests are about the EMV flow, not timing.
CALM = {"relay.max_apdu_ms": 1000.0, "relay.max_crypto_apdu_ms": 5000.0, "relay.max_tap_ms": 10000.0}
UN = bytes.fromhex("1A2B3C4D")


def test_pboc_sm_card_goes_online_with_fdda_verified_and_an_arqc_the_issuer_accepts(issuer, tap, make_config):
    _, hsm = issuer
    session, card = tap("pboc-sm-debit")
    result = Kernel(make_config(CALM)).run(session, TransactionRequest(amount=12_345, sequence_counter=17), UN)
    assert result.outcome is Outcome.ONLINE_REQUEST and result.reason == "online authorisation"
    assert (result.cryptogram, result.oda, result.cvm) == ("ARQC", "fDDA verified", "NO_CVM")
    assert result.family == "PBOC_SM4" and result.aid == bytes.fromhex("A000000333010101")
    assert result.label == "PBOC DEBIT" and result.pan == card.profile.pan and result.expiry == "3012"
    assert result.apdu_commands[:3] == ["SELECT PPSE", "SELECT AID", "GPO"]
    assert result.card_in_field_ms > 0 and len(result.apdu_timings_ms) == len(result.apdu_commands)
    icc = field55(result)
    assert icc[0x9F37] == UN and icc[0x9F02] == bytes.fromhex("000000012345") and icc[0x9F41] == b"\x00\x00\x00\x17"
    assert icc[0x9F66][0] & 0x20 and icc[0x9F66][1] & 0x80  # quick flow; online cryptogram required
    assert not {0x5A, 0x57, 0x5F24, 0x9F46, 0x90} & set(icc)  # no cardholder data in field 55
    assert len(issuer_checks_arqc(hsm, "pboc-sm-debit", result)) == 8


def test_international_rsa_card_goes_online_with_rsa_fdda_verified(issuer, tap, make_config):
    _, hsm = issuer
    session, _ = tap("qvsdc-rsa")
    result = Kernel(make_config(CALM)).run(session, TransactionRequest(amount=8_800), UN)
    assert result.outcome is Outcome.ONLINE_REQUEST
    assert (result.family, result.cryptogram, result.oda) == ("EMV_TDES", "ARQC", "fDDA verified")
    assert result.masked_pan == "476173******0010"
    issuer_checks_arqc(hsm, "qvsdc-rsa", result)


def test_phone_wallet_goes_online_with_consumer_device_cvm_and_no_oda(issuer, tap, make_config):
    _, hsm = issuer
    session, _ = tap("hce-wallet")
    result = Kernel(make_config(CALM)).run(session, TransactionRequest(amount=150_000), UN)  # above the CVM limit
    assert result.outcome is Outcome.ONLINE_REQUEST and result.reason == "online authorisation"
    assert result.cvm == "CDCVM"  # the phone verified its user: no PIN even above the limit
    assert result.oda.startswith("not performed") and result.tvr[0] & 0x80
    assert field55(result)[0x9F34] == bytes.fromhex("010002")
    issuer_checks_arqc(hsm, "hce-wallet", result)


def test_an_amount_above_the_cvm_limit_asks_for_online_pin(tap, make_config):
    session, _ = tap("pboc-sm-credit")
    config = make_config(CALM)
    result = Kernel(config).run(session, TransactionRequest(amount=config.aids[0].cvm_limit + 1))
    assert result.outcome is Outcome.ONLINE_REQUEST and result.cvm == "ONLINE_PIN"
    assert result.reason == "online authorisation, PIN required"
    icc = field55(result)
    assert icc[0x9F66][1] & 0x40 and icc[0x9F34] == bytes.fromhex("020000")  # TTQ: CVM required


def test_an_amount_at_the_cvm_limit_needs_no_cvm(tap, make_config):
    session, _ = tap("pboc-sm-credit")
    config = make_config(CALM)
    result = Kernel(config).run(session, TransactionRequest(amount=config.aids[0].cvm_limit))
    assert result.outcome is Outcome.ONLINE_REQUEST and result.cvm == "NO_CVM"


def test_an_amount_above_the_contactless_limit_uses_another_interface_without_touching_the_card(tap, make_config):
    session, card = tap("pboc-sm-debit")
    atc_before = card.state.atc
    result = Kernel(make_config(CALM)).run(session, TransactionRequest(amount=500_001))
    assert result.outcome is Outcome.USE_ANOTHER_INTERFACE
    assert "contactless limit" in result.reason and result.apdu_commands == []
    assert card.state.atc == atc_before


def test_only_the_international_limit_is_exceeded_so_only_that_card_is_sent_elsewhere(tap, make_config):
    session, _ = tap("qvsdc-rsa")
    result = Kernel(make_config({**CALM, "EMV_TDES.contactless_limit": 10_000})).run(
        session, TransactionRequest(amount=20_000))
    assert result.outcome is Outcome.USE_ANOTHER_INTERFACE and result.apdu_commands == ["SELECT PPSE"]


def test_under_the_floor_limit_an_offline_capable_card_is_approved_offline(tap, make_config):
    session, card = tap("pboc-sm-debit")
    balance = card.state.ec_balance
    result = Kernel(make_config({**CALM, "PBOC_SM4.floor_limit": 20_000})).run(
        session, TransactionRequest(amount=1_500), UN)
    assert result.outcome is Outcome.APPROVED_OFFLINE and result.reason == "approved offline"
    assert (result.cryptogram, result.oda, result.cvm) == ("TC", "fDDA verified", "NO_CVM")
    assert result.tvr == bytes(5)
    assert field55(result)[0x9F27] == b"\x40"
    assert card.state.ec_balance == balance - 1_500  # the card spent its electronic cash


def test_at_the_floor_limit_the_same_card_goes_online(tap, make_config):
    session, _ = tap("pboc-sm-debit")
    result = Kernel(make_config({**CALM, "PBOC_SM4.floor_limit": 20_000})).run(
        session, TransactionRequest(amount=20_000))
    assert result.outcome is Outcome.ONLINE_REQUEST and result.tvr[3] & 0x80  # floor limit exceeded


@pytest.mark.parametrize("profile", ["pboc-sm-credit", "qvsdc-rsa"])
def test_standard_flow_generate_ac_then_issuer_approval_gives_a_tc(issuer, tap, make_config, profile):
    _, hsm = issuer
    session, _ = tap(profile)
    kernel = Kernel(make_config({**CALM, "PBOC_SM4.ttq": "05004000", "EMV_TDES.ttq": "05004000"}))
    result = kernel.run(session, TransactionRequest(amount=8_800), UN)
    assert result.outcome is Outcome.ONLINE_REQUEST and result.cryptogram == "ARQC"
    assert "GENERATE AC" in result.apdu_commands and result.oda.startswith("not performed: standard flow")
    arpc = issuer_checks_arqc(hsm, profile, result)  # field 55 carries the CDOL1 values the card MACed
    done = kernel.complete(session, result, arpc + ARC_APPROVED, approved=True)
    assert done.outcome is Outcome.APPROVED and done.cryptogram == "TC"
    assert done.apdu_commands[-2:] == ["EXTERNAL AUTHENTICATE", "GENERATE AC"]
    assert field55(done)[0x8A] == ARC_APPROVED and field55(done)[0x9F27] == b"\x40"


def test_standard_flow_issuer_decline_makes_the_card_answer_aac(issuer, tap, make_config):
    _, hsm = issuer
    session, _ = tap("pboc-sm-credit")
    kernel = Kernel(make_config({**CALM, "PBOC_SM4.ttq": "05004000"}))
    result = kernel.run(session, TransactionRequest(amount=8_800))
    arpc = issuer_checks_arqc(hsm, "pboc-sm-credit", result, ARC_DECLINED)
    done = kernel.complete(session, result, arpc + ARC_DECLINED, approved=False)
    assert done.outcome is Outcome.DECLINED and done.cryptogram == "AAC" and done.reason == "declined by the issuer"


def test_standard_flow_a_forged_arpc_fails_issuer_authentication(tap, make_config):
    session, _ = tap("pboc-sm-credit")
    kernel = Kernel(make_config({**CALM, "PBOC_SM4.ttq": "05004000"}))
    result = kernel.run(session, TransactionRequest(amount=8_800))
    done = kernel.complete(session, result, bytes(8) + ARC_APPROVED, approved=True)
    assert done.tvr[4] & 0x40  # issuer authentication failed
    assert done.outcome is Outcome.DECLINED and "refused" in done.reason  # the card will not give a TC


def test_quick_flow_completion_sends_nothing_to_the_card(tap, make_config):
    session, _ = tap("pboc-sm-credit")
    kernel = Kernel(make_config(CALM))
    result = kernel.run(session, TransactionRequest(amount=100))
    session.close()  # the card has left: completing must not need it
    approved = kernel.complete(session, result, b"\x11" * 10, approved=True)
    declined = kernel.complete(session, result, None, approved=False)
    assert (approved.outcome, declined.outcome) == (Outcome.APPROVED, Outcome.DECLINED)
    assert approved.apdu_commands == result.apdu_commands


def test_the_transaction_date_is_the_requests(tap, make_config):
    session, _ = tap("pboc-sm-credit")
    result = Kernel(make_config(CALM)).run(session, TransactionRequest(amount=100, date=datetime.date(2027, 3, 9)))
    assert field55(result)[0x9A] == bytes.fromhex("270309")
