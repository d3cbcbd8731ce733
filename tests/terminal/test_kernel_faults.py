"""Each faulty card, a wrong CA key and an altered certificate give their documented outcome."""
from __future__ import annotations

import pytest

from hardware.emvcard import load_card
from keys.errors import MACError
from keys.sm2 import SM2PrivateKey
from terminal.kernel import Kernel, Outcome, TransactionRequest
from terminal.kernel.config import CAPublicKey, ca_checksum

from .kernel_helpers import field55, issuer_checks_arqc

CALM = {"relay.max_apdu_ms": 1000.0, "relay.max_crypto_apdu_ms": 5000.0, "relay.max_tap_ms": 10000.0}


def run(session, config, amount=2_000):
    return Kernel(config).run(session, TransactionRequest(amount=amount))


def test_expired_card_is_declined_and_its_certificate_fails_too(tap, make_config):
    session, _ = tap("faulty-expired")
    result = run(session, make_config(CALM))
    assert result.outcome is Outcome.DECLINED and result.reason == "expired card, declined"
    assert result.tvr[1] & 0x40  # expired application
    assert result.oda == "failed: ICC certificate expired" and result.tvr[0] & 0x08


def test_blocked_card_is_dropped_at_selection(tap, make_config):
    session, _ = tap("faulty-blocked")
    result = run(session, make_config(CALM))
    assert result.outcome is Outcome.END_APPLICATION and result.reason == "card blocked / not accepted"
    assert result.apdu_commands == ["SELECT PPSE", "SELECT AID"] and result.pan == ""


def test_declining_card_aac_is_declined(tap, make_config):
    session, _ = tap("faulty-decline")
    result = run(session, make_config(CALM))
    assert result.outcome is Outcome.DECLINED and result.reason == "declined by the card"
    assert result.cryptogram == "AAC" and result.oda == "not performed: declined by the card"


def test_wrong_ac_card_goes_online_and_only_the_issuer_can_refuse_it(issuer, tap, make_config):
    _, hsm = issuer
    session, _ = tap("faulty-wrong-ac")
    result = run(session, make_config(CALM))
    # The kernel has no issuer key: the card looks sound (its fDDA is genuine) ...
    assert result.outcome is Outcome.ONLINE_REQUEST and result.oda == "fDDA verified"
    with pytest.raises(MACError, match="ARQC does not verify"):  # ... and the issuer declines
        issuer_checks_arqc(hsm, "faulty-wrong-ac", result)


def test_malformed_record_ends_the_application_with_a_clear_reason(tap, make_config):
    session, _ = tap("faulty-malformed-record")
    result = run(session, make_config(CALM))
    assert result.outcome is Outcome.END_APPLICATION
    assert result.reason.startswith("card data error: record SFI 1 number 1: malformed TLV (tag 57 at offset 2")
    assert result.pan == "" and result.track2 == b""


def test_truncated_gpo_answer_ends_the_application(tap, make_config):
    session, _ = tap("faulty-truncated-gpo")
    result = run(session, make_config(CALM))
    assert result.outcome is Outcome.END_APPLICATION
    assert result.reason.startswith("card data error: GPO answer: malformed TLV (tag 77 at offset 0 declares")


def test_card_leaving_the_field_mid_read_asks_for_another_tap(tap, make_config):
    session, card = tap("faulty-vanish")
    result = run(session, make_config(CALM))
    assert result.outcome is Outcome.TRY_AGAIN and result.reason == "card removed, tap again"
    assert result.apdu_commands[-2:] == ["READ RECORD", "READ RECORD"]
    assert card.vcard.wait_gone(10)


def _ca_file(tmp_path, state, replace_sm2=None, break_checksum=False):
    """A copy of the test CA list with the SM2 key replaced or its checksum broken."""
    text = (state / "ca_keys.toml").read_text()
    blocks = text.split("[[ca]]")
    for i, block in enumerate(blocks):
        if 'algorithm = "SM2"' not in block:
            continue
        lines = block.splitlines()
        if replace_sm2 is not None:
            key = CAPublicKey(bytes.fromhex("A000000333"), 0x80, "SM2", point=replace_sm2)
            lines = [f'public_key = "{replace_sm2.hex().upper()}"' if ln.startswith("public_key") else
                     f'checksum = "{ca_checksum(key).hex().upper()}"' if ln.startswith("checksum") else ln
                     for ln in lines]
        if break_checksum:
            lines = ['checksum = "' + "00" * 20 + '"' if ln.startswith("checksum") else ln for ln in lines]
        blocks[i] = "\n".join(lines) + "\n"
    path = tmp_path / "ca_keys.toml"
    path.write_text("[[ca]]".join(blocks))
    return path


def test_a_wrong_ca_key_fails_oda_sets_the_tvr_bit_and_declines(issuer, tap, make_config, tmp_path):
    state, _ = issuer
    other = SM2PrivateKey.generate().public_key.to_bytes()
    config = make_config(CALM, ca_keys_path=_ca_file(tmp_path, state, replace_sm2=other))
    session, _ = tap("pboc-sm-debit")
    result = run(session, config)
    assert result.oda == "failed: issuer certificate: SM2 signature does not verify"
    assert result.tvr[0] & 0x08  # DDA failed
    # The card's CTQ asks neither "go online" nor "switch interface" when ODA fails.
    assert result.outcome is Outcome.DECLINED and result.reason == "card authentication failed, declined"


def test_a_ca_key_with_a_bad_checksum_is_refused_at_load_and_odas_under_it_fail(issuer, tap, make_config, tmp_path):
    state, _ = issuer
    config = make_config(CALM, ca_keys_path=_ca_file(tmp_path, state, break_checksum=True))
    assert (bytes.fromhex("A000000333"), 0x80) not in config.ca_keys
    session, _ = tap("pboc-sm-credit")
    result = run(session, config)
    assert result.oda == "failed: CA key A000000333/80 rejected: its checksum does not match"
    assert result.outcome is Outcome.DECLINED and result.tvr[0] & 0x08


class AlteredRecord:
    """A card whose answer to one READ RECORD has its last data byte flipped (inside a certificate)."""

    def __init__(self, card, sfi: int, record: int) -> None:
        self.card, self.sfi, self.record = card, sfi, record
        self.atr, self.profile = card.atr, card.profile

    def process_apdu(self, apdu: bytes) -> bytes:
        answer = self.card.process_apdu(apdu)
        if apdu[1] == 0xB2 and apdu[2] == self.record and apdu[3] >> 3 == self.sfi and len(answer) > 3:
            answer = answer[:-3] + bytes([answer[-3] ^ 0x01]) + answer[-2:]
        return answer

    def power_on(self) -> None:
        self.card.power_on()

    def power_off(self) -> None:
        self.card.power_off()

    def reset(self) -> None:
        self.card.reset()


@pytest.mark.parametrize("profile,sfi,record,why", [
    ("pboc-sm-debit", 2, 3, "failed: ICC certificate: SM2 signature does not verify"),
    ("qvsdc-rsa", 2, 2, "failed: issuer certificate: hash does not match"),
    ("qvsdc-rsa", 2, 3, "failed: ICC certificate: hash does not match (certificate or card data altered)"),
])
def test_an_altered_certificate_fails_oda(issuer, tap, make_config, profile, sfi, record, why):
    state, hsm = issuer
    session, _ = tap(profile, card=AlteredRecord(load_card(profile, state, hsm), sfi, record))
    result = run(session, make_config(CALM))
    assert result.oda == why and result.tvr[0] & 0x08
    assert result.outcome is Outcome.DECLINED


def test_result_repr_and_public_view_never_show_the_pan_or_track_2(tap, make_config):
    session, card = tap("pboc-sm-debit")
    result = run(session, make_config(CALM))
    pan, track2 = card.profile.pan, result.track2.hex()
    assert result.pan == pan and track2
    for text in (repr(result), str(result), f"{result}", str(result.public()), repr([result])):
        assert pan not in text and track2.upper() not in text.upper()
        assert "629999*********0012" in text
    assert pan not in field55(result).__repr__() and pan not in result.icc_data.hex()
