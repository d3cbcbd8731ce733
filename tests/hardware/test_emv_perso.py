"""Personalisation, certificates, profiles and card risk rules, without a reader."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hardware.emvcard import load_card, oda, oda_rsa, oda_sm2, profile_names
from hardware.emvcard.ca import CertificateAuthority, read_ca_keys
from hardware.emvcard.profile import ProfileError, load_profile, luhn_valid
from hardware.emvcard.risk import CID_AAC, CID_ARQC, CID_TC, Transaction, decide_first_ac, decide_quick
from hardware.emvcard.state import CardState
from keys import emv
from keys.hsm import HSM, issuer_key_name
from keys.sm2 import SM2PrivateKey

PAN = "6299990000000000012"
TERMINAL = oda.terminal_dynamic_data(b"\x01\x02\x03\x04", bytes.fromhex("000000001000"), b"\x01\x56",
                                     oda.card_auth_related_data(b"\xAA\xBB\xCC\xDD", b"\x80\x00"))


@pytest.fixture(scope="module")
def rsa_keys():
    return oda_rsa.RSAKeyPair.generate(1408), oda_rsa.RSAKeyPair.generate(1408), oda_rsa.RSAKeyPair.generate(1152)


def test_fdda_terminal_data_layout_is_un_amount_currency_then_9f69():
    assert TERMINAL.hex().upper() == "01020304" "000000001000" "0156" "01" "AABBCCDD" "8000"
    assert oda.icc_dynamic_data(b"\x00\x2A") == bytes.fromhex("02002A")


def test_rsa_chain_recovers_keys_and_remainders(rsa_keys):
    ca, issuer, icc = rsa_keys
    cert, rem = oda_rsa.issuer_certificate(ca, issuer.public, PAN, (2033, 12), b"\x00\x00\x01")
    assert len(cert) == 176 and len(rem) == 176 - 140
    got = oda_rsa.recover_issuer_key(ca.public, cert, rem, issuer.public.exponent_bytes)
    assert got.public == issuer.public and got.identifier.hex().upper() == "629999FF"
    static = b"static data" + b"\x3C\x00"
    icc_cert, icc_rem = oda_rsa.icc_certificate(issuer, icc.public, PAN, (2030, 12), b"\x00\x00\x02", static)
    recovered = oda_rsa.recover_icc_key(got.public, icc_cert, icc_rem, icc.public.exponent_bytes, static)
    assert recovered.public == icc.public and recovered.pan == PAN and recovered.expiry_mmyy == b"\x12\x30"
    with pytest.raises(oda.ODAError, match="hash does not match"):
        oda_rsa.recover_icc_key(got.public, icc_cert, icc_rem, icc.public.exponent_bytes, static + b"!")
    sdad = oda_rsa.sign_dynamic_data(icc, b"\x02\x00\x07", TERMINAL)
    assert oda_rsa.recover_dynamic_data(icc.public, sdad, TERMINAL) == b"\x02\x00\x07"
    with pytest.raises(oda.ODAError, match="terminal data"):
        oda_rsa.recover_dynamic_data(icc.public, sdad, TERMINAL[:-1] + b"\x01")
    # under the wrong key the recovered block has no 6A...BC frame, or (when the random
    # certificate happens to be above that key's modulus) is refused before recovery
    with pytest.raises(oda.ODAError, match="6A/BC|not below the modulus"):
        oda_rsa.recover_issuer_key(issuer.public, cert, rem, b"\x03")


def test_sm2_chain_verifies_and_refuses_altered_static_data():
    ca, issuer, icc = SM2PrivateKey.generate(), SM2PrivateKey.generate(), SM2PrivateKey.generate()
    cert = oda_sm2.issuer_certificate(ca.sign, issuer.public_key, PAN, (2033, 12), b"\x00\x00\x01")
    assert len(cert) == 142 and cert[0] == 0x12 and cert[10:14] == bytes.fromhex("04040040")
    got = oda_sm2.verify_issuer_certificate(ca.public_key, cert)
    assert got.public == issuer.public_key
    icc_cert = oda_sm2.icc_certificate(issuer.sign, icc.public_key, PAN, (2030, 12), b"\x00\x00\x02", b"SDA")
    assert oda_sm2.verify_icc_certificate(got.public, icc_cert, b"SDA").pan == PAN
    with pytest.raises(oda.ODAError, match="does not verify"):
        oda_sm2.verify_icc_certificate(got.public, icc_cert, b"SDB")
    sdad = oda_sm2.sign_dynamic_data(icc, b"\x02\x00\x07", TERMINAL)
    assert sdad[:5] == bytes.fromhex("1503020007") and len(sdad) == 5 + 64
    assert oda_sm2.verify_dynamic_data(icc.public_key, sdad, TERMINAL) == b"\x02\x00\x07"


def test_ca_keys_file_lists_both_test_cas_and_detects_tampering(tmp_path):
    ca = CertificateAuthority.load_or_create(tmp_path)
    again = CertificateAuthority.load_or_create(tmp_path)  # the second use loads, it does not regenerate
    assert again.rsa.public == ca.rsa.public and again.sm2.public_key == ca.sm2.public_key
    keys = read_ca_keys(ca.keys_file)
    assert keys[(bytes.fromhex("A000000003"), 0x92)].rsa == ca.rsa.public
    assert keys[(bytes.fromhex("A000000333"), 0x80)].sm2 == ca.sm2.public_key
    assert oct((tmp_path / "ca" / "rsa-ca.pem").stat().st_mode & 0o777) == "0o600"
    assert "PRIVATE" not in ca.keys_file.read_text()
    text = ca.keys_file.read_text().replace('exponent = "03"', 'exponent = "01"')
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(ValueError, match="checksum does not match"):
        read_ca_keys(tmp_path / "bad.toml")


def test_every_builtin_profile_loads_with_a_luhn_valid_test_pan():
    names = profile_names()
    assert {"pboc-sm-debit", "qvsdc-rsa", "hce-wallet", "faulty-vanish"} <= set(names)
    for name in names:
        profile = load_profile(name)
        assert luhn_valid(profile.pan) and profile.pan[:6] in ("629999", "629998", "476173"), name
        assert profile.pan not in repr(profile)


def test_a_bad_profile_names_the_field_and_never_the_pan(tmp_path):
    source = (Path(__file__).parents[2] / "hardware/emvcard/profiles/pboc-sm-debit.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(source.replace("6299990000000000012", "6299990000000000013"))
    with pytest.raises(ProfileError, match=r"account\.pan: 629999\*+0013 fails the Luhn check") as caught:
        load_profile(bad)
    assert "6299990000000000013" not in str(caught.value)
    bad.write_text(source.replace('family = "PBOC_SM4"', 'family = "AES"'))
    with pytest.raises(ProfileError, match="family: must be PBOC_SM4 or EMV_TDES"):
        load_profile(bad)
    bad.write_text(source.replace('expiry = "2030-12"', 'expiry = "12/30"'))
    with pytest.raises(ProfileError, match=r"account\.expiry: must be a month as YYYY-MM"):
        load_profile(bad)
    with pytest.raises(ProfileError, match="unknown card profile 'nope'"):
        load_profile("nope")


@pytest.mark.parametrize("ttq,amount,state,expected", [
    ("26000000", 1000, CardState(ec_balance=50000), CID_TC),
    ("26800000", 1000, CardState(ec_balance=50000), CID_ARQC),  # terminal wants online
    ("26000000", 60000, CardState(ec_balance=50000), CID_ARQC),  # above the EC balance
    ("26000000", 1000, CardState(consecutive_offline=5, ec_balance=50000), CID_ARQC),  # velocity
    ("2E000000", 60000, CardState(ec_balance=50000), CID_AAC),  # offline-only reader, no room
])
def test_quick_flow_risk_decisions(ttq, amount, state, expected):
    profile = load_profile("pboc-sm-debit")
    decision = decide_quick(profile, state, Transaction(amount, "0156", bytes.fromhex(ttq)))
    assert decision.cid == expected, decision.reason


def test_first_generate_ac_never_answers_above_the_request():
    profile = load_profile("pboc-sm-credit")
    txn = Transaction(100, "0156")
    assert decide_first_ac(profile, CardState(), txn, CID_AAC).cid == CID_AAC
    assert decide_first_ac(profile, CardState(), txn, CID_TC).cid == CID_TC
    assert decide_first_ac(profile, CardState(consecutive_offline=3), txn, CID_TC).cid == CID_ARQC


def test_perso_keeps_the_issuer_master_key_in_the_hsm_and_the_image_private(tmp_path):
    hsm = HSM.open(tmp_path / "hsm.db", tmp_path / "lmk.key")
    card = load_card("pboc-sm-debit", tmp_path, hsm)
    assert hsm.names("issuer/pboc-sm-debit/") == [
        "issuer/pboc-sm-debit/IMK_AC", "issuer/pboc-sm-debit/SIGN", "issuer/pboc-sm-debit/ZMK"]
    image_file = tmp_path / "cards" / "pboc-sm-debit.card.json"
    assert oct(image_file.stat().st_mode & 0o777) == "0o600"
    # The ICC master key on the card is the one the HSM derives: an ARQC from it verifies.
    atc = b"\x00\x05"
    sk = emv.derive_session_key("PBOC_SM4", card.image.icc_master_key, atc)
    arqc = emv.generate_ac("PBOC_SM4", sk, b"data")
    hsm.verify_arqc(issuer_key_name("pboc-sm-debit", "IMK_AC"), "PBOC_SM4", PAN, "01", atc, b"data", arqc, b"00")
    text = repr(card) + repr(card.image) + str(card.image)
    assert PAN not in text and card.image.icc_master_key.hex() not in text.lower()
    # Loading again reuses the image; a changed profile is personalised anew.
    assert load_card("pboc-sm-debit", tmp_path, hsm).image.icc_master_key == card.image.icc_master_key
    assert json.loads(image_file.read_text())["digest"] == card.profile.digest
    hsm.close()


def test_state_file_is_written_atomically_and_survives(tmp_path):
    from hardware.emvcard.state import CardStateStore

    store = CardStateStore(tmp_path / "c.state.json")
    store.save(CardState(atc=7, ec_balance=10))
    assert store.load() == CardState(atc=7, ec_balance=10)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_card_is_personalised_anew_against_an_hsm_without_its_issuer_key(tmp_path):
    first = HSM.open(tmp_path / "a.db", tmp_path / "a.key")
    card = load_card("hce-wallet", tmp_path, first)
    other = HSM.open(tmp_path / "b.db", tmp_path / "b.key")
    again = load_card("hce-wallet", tmp_path, other)
    assert again.image.icc_master_key != card.image.icc_master_key
    assert again.image.imk_kcv == other.info(issuer_key_name("hce-wallet", "IMK_AC")).kcv
    first.close()
    other.close()
