"""Kernel rules without pcscd: the simulated cards answered in-process, scripted or damaged."""
from __future__ import annotations

import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardware.emvcard import load_card
from keys.tlv import decode, tlv
from terminal.kernel import ConfigError, Kernel, KernelConfig, Outcome, TransactionRequest
from terminal.kernel.config import AidConfig
from terminal.kernel.selection import NO_PRIORITY, DirectoryEntry, candidates

from .conftest import default_doc
from .kernel_helpers import DirectSession, issuer_checks_arqc

CALM = {"relay.max_apdu_ms": 1000.0, "relay.max_crypto_apdu_ms": 5000.0, "relay.max_tap_ms": 10000.0}
DEBIT = bytes.fromhex("A000000333010101")


@pytest.fixture(scope="module")
def cards(issuer):
    state, hsm = issuer
    return {name: load_card(name, state, hsm) for name in ("pboc-sm-debit", "qvsdc-rsa", "pboc-sm-credit")}


def run(config, card, request=None, alter=None):
    return Kernel(config).run(DirectSession(card, alter), request or TransactionRequest(amount=2_000))


# -- configuration and request ------------------------------------------------------------
def test_default_config_accepts_the_unionpay_and_international_aids():
    config = KernelConfig.default()
    assert [a.aid.hex().upper() for a in config.aids] == [
        "A000000333010101", "A000000333010102", "A000000333010103", "A0000000031010"]
    pboc = config.aid_config(DEBIT)
    assert (pboc.floor_limit, pboc.cvm_limit, pboc.contactless_limit) == (0, 100_000, 500_000)
    assert pboc.tac_denial == bytes.fromhex("0070000000") and config.relay.max_apdu_ms == 15.0


@pytest.mark.parametrize("change,message", [
    (("family", "PBOC_SM4", "ttq", "2500"), "family.PBOC_SM4.ttq: must be 4 bytes"),
    (("family", "EMV_TDES", "cvm_limit", -1), "cvm_limit: must be 0..999999999999 fen"),
    (("relay", None, "action", "shrug"), "relay.action: must be"),
    (("terminal", None, "country", "CN"), "terminal.country: must be 4 digits"),
])
def test_config_errors_name_the_field(change, message):
    doc = default_doc()
    section, family, key, value = change
    (doc[section][family] if family else doc[section])[key] = value
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        KernelConfig.from_dict(doc, source="bad.toml")


def test_an_unknown_aid_setting_or_family_is_refused():
    doc = default_doc()
    doc["aid"][0]["floorlimit"] = 5
    with pytest.raises(ConfigError, match=r"aid\[0\]\.floorlimit: unknown setting"):
        KernelConfig.from_dict(doc)
    doc = default_doc()
    doc["aid"][1]["family"] = "JCB"
    with pytest.raises(ConfigError, match=r"aid\[1\]\.family"):
        KernelConfig.from_dict(doc)


def test_a_named_ca_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="CA public key file not found"):
        KernelConfig.default(ca_keys_path=tmp_path / "nothing.toml")


def test_without_a_ca_file_the_terminal_starts_and_oda_fails(cards, tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTPOS_STATE_DIR", str(tmp_path))
    config = KernelConfig.from_dict({**default_doc(), "relay": {"max_apdu_ms": 1000.0}})
    assert "no CA public key file" in config.ca_key_problems["file"]
    result = run(config, cards["pboc-sm-debit"])
    assert result.oda == "failed: CA key A000000333/80 not in the terminal's list"


@pytest.mark.parametrize("kwargs", [{"amount": -1}, {"amount": 10**12}, {"amount": 1.5},
                                    {"amount": 1, "currency": "CNY"}, {"amount": 1, "txn_type": 0x1A},
                                    {"amount": 1, "sequence_counter": 10**8}])
def test_bad_requests_are_refused(kwargs):
    with pytest.raises(ValueError):
        TransactionRequest(**kwargs)


def test_three_digit_codes_become_four():
    assert TransactionRequest(amount=1, currency="156", country="156").currency == "0156"


def test_a_currency_the_terminal_does_not_take_ends_before_the_card(make_config, cards):
    result = run(make_config(CALM), cards["qvsdc-rsa"], TransactionRequest(amount=100, currency="0840"))
    assert result.outcome is Outcome.END_APPLICATION and result.apdu_commands == []


def test_a_bad_unpredictable_number_is_the_callers_mistake(make_config, cards):
    with pytest.raises(ValueError, match="4 bytes"):
        Kernel(make_config(CALM)).run(DirectSession(cards["pboc-sm-debit"]), TransactionRequest(amount=1), b"\x01")


# -- selection ----------------------------------------------------------------------------
def _aid(hex_aid: str, priority: int = 1, partial: bool = False) -> AidConfig:
    base = KernelConfig.default().aids[0]
    return AidConfig(bytes.fromhex(hex_aid), "PBOC_SM4", priority, partial, base.ttq, None, 0, 0, 0,
                     base.tac_default, base.tac_denial, base.tac_online)


def test_candidates_follow_card_priority_then_terminal_priority_then_directory_order():
    entries = [DirectoryEntry(bytes.fromhex("A0000000031010"), "VISA", NO_PRIORITY, 0),
               DirectoryEntry(bytes.fromhex("A000000333010102"), "CREDIT", 2, 1),
               DirectoryEntry(bytes.fromhex("A000000333010101"), "DEBIT", 2, 2),
               DirectoryEntry(bytes.fromhex("A000000333010103"), "QUASI", 1, 3)]
    aids = (_aid("A000000333010101", 1), _aid("A000000333010102", 3), _aid("A000000333010103", 9),
            _aid("A0000000031010", 1))
    assert [c.entry.label for c in candidates(entries, aids)] == ["QUASI", "DEBIT", "CREDIT", "VISA"]


def test_partial_selection_takes_a_longer_card_aid_only_where_allowed():
    entry = [DirectoryEntry(bytes.fromhex("A00000033301010188"), "LONG", 1, 0)]
    assert candidates(entry, (_aid("A000000333010101"),)) == []
    found = candidates(entry, (_aid("A0000003330101", partial=True), _aid("A000000333010101", partial=True)))
    assert found[0].config.aid == DEBIT  # the most specific configured AID


def _directory(*entries: tuple[str, int]) -> bytes:
    apps = b"".join(tlv(0x61, tlv(0x4F, bytes.fromhex(a)) + tlv(0x87, bytes([p]))) for a, p in entries)
    return tlv(0x6F, tlv(0x84, b"2PAY.SYS.DDF01") + tlv(0xA5, tlv(0xBF0C, apps))) + b"\x90\x00"


def test_an_application_the_card_will_not_select_is_skipped_for_the_next(make_config, cards):
    ppse = _directory(("A000000333010103", 1), ("A000000333010101", 2))
    result = run(make_config(CALM), cards["pboc-sm-debit"], alter=lambda n, c, a: ppse if n == 0 else a)
    assert result.outcome is Outcome.ONLINE_REQUEST and result.aid == DEBIT
    assert result.apdu_commands[:4] == ["SELECT PPSE", "SELECT AID", "SELECT AID", "GPO"]


def test_gpo_conditions_not_satisfied_selects_the_next_candidate(cards, issuer):
    doc = {**default_doc(), "relay": {"max_apdu_ms": 1000.0}}
    doc["aid"] = [*doc["aid"], {"aid": "A0000003330101", "family": "PBOC_SM4"}]
    config = KernelConfig.from_dict(doc, ca_keys_path=issuer[0] / "ca_keys.toml")
    ppse = _directory(("A0000003330101", 1), ("A000000333010101", 2))
    result = run(config, cards["pboc-sm-debit"],
                 alter=lambda n, c, a: ppse if n == 0 else b"\x69\x85" if n == 2 else a)
    assert result.outcome is Outcome.ONLINE_REQUEST
    assert result.apdu_commands[:5] == ["SELECT PPSE", "SELECT AID", "GPO", "SELECT AID", "GPO"]


def test_a_card_with_no_accepted_application_is_not_supported(make_config, cards):
    ppse = _directory(("A0000000041010", 1))
    result = run(make_config(CALM), cards["pboc-sm-debit"], alter=lambda n, c, a: ppse if n == 0 else a)
    assert result.outcome is Outcome.END_APPLICATION and result.reason == "card not supported by this terminal"


# -- restrictions -------------------------------------------------------------------------
def test_a_card_not_yet_effective_is_declined(make_config, cards):
    result = run(make_config(CALM), cards["pboc-sm-debit"],
                 TransactionRequest(amount=100, date=datetime.date(2024, 12, 31)))
    assert result.outcome is Outcome.DECLINED and result.reason == "card not yet valid, declined"
    assert result.tvr[1] & 0x20


def test_usage_control_refuses_cashback_the_card_does_not_allow(make_config, cards):
    result = run(make_config(CALM), cards["pboc-sm-debit"], TransactionRequest(amount=100, txn_type=0x09))
    assert result.outcome is Outcome.DECLINED and result.reason == "service not allowed for this card, declined"
    cash = run(make_config(CALM), cards["pboc-sm-debit"], TransactionRequest(amount=100, txn_type=0x01))
    assert cash.outcome is Outcome.ONLINE_REQUEST  # AUC FF00 allows domestic cash


def test_one_tag_sent_twice_with_different_values_ends_the_application(make_config, cards):
    def other_psn(n, apdu, answer):  # SFI 1 record 1 ends with 5F34 01 <psn>
        return answer[:-3] + b"\x77" + answer[-2:] if apdu[1] == 0xB2 and apdu[3] == 0x0C else answer
    result = run(make_config(CALM), cards["pboc-sm-debit"], alter=other_psn)
    assert result.outcome is Outcome.END_APPLICATION and "5F34 sent twice" in result.reason


def test_format_1_answers_to_gpo_and_generate_ac_are_understood(make_config, cards, issuer):
    def format_1(n, apdu, answer):
        node = decode(answer[:-2])[0] if answer[-2:] == b"\x90\x00" and apdu[1] in (0xA8, 0xAE) else None
        if node is None:
            return answer
        v = {c.tag: c.value for c in node.children}
        body = v[0x82] + v[0x94] if apdu[1] == 0xA8 else v[0x9F27] + v[0x9F36] + v[0x9F26] + v[0x9F10]
        return tlv(0x80, body) + b"\x90\x00"
    result = run(make_config({**CALM, "PBOC_SM4.ttq": "05004000"}), cards["pboc-sm-credit"], alter=format_1)
    assert result.outcome is Outcome.ONLINE_REQUEST and result.cryptogram == "ARQC"
    issuer_checks_arqc(issuer[1], "pboc-sm-credit", result)


# -- damaged answers: never a traceback ---------------------------------------------------
ENDINGS = {Outcome.END_APPLICATION, Outcome.DECLINED, Outcome.ONLINE_REQUEST, Outcome.TRY_AGAIN}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 6), mode=st.sampled_from(["cut", "flip", "status"]), at=st.integers(0, 400),
       family=st.sampled_from(["pboc-sm-debit", "qvsdc-rsa"]))
def test_a_damaged_answer_ends_cleanly(make_config, cards, which, mode, at, family):
    def damage(n, apdu, answer):
        if n != which:
            return answer
        data, sw = answer[:-2], answer[-2:]
        if mode == "cut":
            return data[: at % (len(data) + 1)] + sw
        if mode == "flip" and data:
            i = at % len(data)
            return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :] + sw
        return data + bytes([0x6F, at & 0xFF])
    result = run(make_config(CALM), cards[family], alter=damage)
    assert result.outcome in ENDINGS and result.reason
    if result.outcome is Outcome.ONLINE_REQUEST:
        assert result.cryptogram == "ARQC"
