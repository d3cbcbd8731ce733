"""The issuer simulator: cryptograms, PINs, standing, limits, funds, undo, persistence, masking.

Real SQLite files, a real HSM; the card side computes its cryptograms with keys.emv from
the ICC master key the HSM exports for personalisation, as a card would hold it.
"""
from __future__ import annotations

import logging
import sqlite3
from datetime import datetime

import pytest

from acquirer.channels.base import CardAuthorisation, CardChannel, Operation
from acquirer.channels.issuer import AccountError, AccountStatus, IssuerSimulator
from acquirer.channels.issuer_cryptogram import ac_data
from tests.acquirer.cards import PANS, Card, personalise
from acquirer.protocol import ResponseCode
from keys.emv import CardFamily
from keys.hsm import HSM, channel_key_name, issuer_key_name, terminal_key_name
from keys.model import Key, KeyUsage
from keys.pinblock import PinBlockFormat, encrypt_pin_block

TID, MID = "00000001", "898440358120001"
R = ResponseCode


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock():
    return Clock(datetime(2025, 6, 15, 10, 0, 0))


@pytest.fixture
def hsm(tmp_path):
    h = HSM.open(tmp_path / "hsm.db", tmp_path / "lmk")
    yield h
    h.close()


@pytest.fixture(params=["own transactions", "grouped"])
def issuer(hsm, tmp_path, clock, request):
    # grouped: as the host runs it, decisions committed by the ledger writer's flushes
    grouped = request.param == "grouped"
    with IssuerSimulator(hsm, tmp_path / "issuer.db", clock=clock, durable=not grouped, grouped=grouped) as sim:
        yield sim


@pytest.fixture
def tpk(hsm):
    """The terminal's PIN key: the terminal holds it in clear, the host in its HSM."""
    key = Key.generate("SM4", "TPK")
    hsm.import_clear(terminal_key_name(TID, "TPK"), key)
    return key


def request(card: Card, operation: Operation = Operation.SALE, amount: int = 1_000, *, stan: str = "000001",
            icc: dict | None = None, pin_block: bytes | None = None, original_amount: int | None = None,
            expiry: str = "2712") -> CardAuthorisation:
    return CardAuthorisation(operation, card.pan, card.psn, expiry, amount, "156", TID, MID, stan,
                             icc=icc if icc is not None else {}, pin_block=pin_block,
                             pin_key=terminal_key_name(TID, "TPK") if pin_block else None,
                             original_amount=original_amount)


def sale(card: Card, amount: int = 1_000, stan: str = "000001", **kw) -> CardAuthorisation:
    return request(card, Operation.SALE, amount, stan=stan, icc=kw.pop("icc", None) or card.field55(amount), **kw)


@pytest.fixture(params=list(CardFamily), ids=lambda f: f.value)
def card(request, hsm, issuer):
    return personalise(hsm, issuer, request.param)


# --- approvals and cryptograms -------------------------------------------------------
def test_issuer_is_a_card_channel_named_issuer_sim(issuer, hsm):
    channel: CardChannel = issuer  # structural: the pipeline needs `name` and `authorise`
    assert channel.name == "issuer-sim" and callable(channel.authorise)
    assert hsm.info(channel_key_name("issuer-sim", "ZPK")).usage is KeyUsage.ZPK


def test_sale_with_a_good_arqc_is_approved_debited_and_answered_with_arpc(issuer, card):
    icc = card.field55(2_500)
    result = issuer.authorise(sale(card, 2_500, icc=icc))
    assert result.code is R.APPROVED and len(result.auth_code) == 6
    assert result.balance == 97_500 and issuer.account(card.pan).balance == 97_500
    assert result.issuer_data == card.expected_issuer_data(icc, b"00")
    assert issuer.account(card.pan).last_atc == 1


def test_a_wrong_ac_is_refused_and_burns_no_atc(issuer, card):
    icc = card.field55(1_000)
    bad = {**icc, 0x9F26: bytes(b ^ 0xFF for b in icc[0x9F26])}
    result = issuer.authorise(sale(card, icc=bad))
    assert result.code is R.CRYPTOGRAM_FAILED and result.issuer_data == b"" and not result.auth_code
    assert issuer.account(card.pan).balance == 100_000 and issuer.account(card.pan).last_atc == -1
    assert issuer.authorise(sale(card, icc=icc)).code is R.APPROVED


def test_data_the_ac_covers_cannot_be_changed(issuer, card):
    icc = card.field55(1_000)
    assert issuer.authorise(sale(card, icc={**icc, 0x95: b"\x00\x00\x00\x00\x80"})).code is R.CRYPTOGRAM_FAILED
    iad = icc[0x9F10][:4] + b"\x00" + icc[0x9F10][5:]  # the CVR in 9F10 is covered too
    assert issuer.authorise(sale(card, icc={**icc, 0x9F10: iad})).code is R.CRYPTOGRAM_FAILED
    # field 4 must be the amount the card signed
    assert issuer.authorise(sale(card, 9_000, icc=icc)).code is R.CRYPTOGRAM_FAILED


def test_a_replayed_or_older_atc_is_suspected_replay(issuer, card):
    first = sale(card, icc=card.field55(1_000, atc=7))
    assert issuer.authorise(first).code is R.APPROVED
    replay = issuer.authorise(sale(card, stan="000002", icc=first.icc))
    assert replay.code is R.CRYPTOGRAM_FAILED and "replay" in replay.text
    older = issuer.authorise(sale(card, stan="000003", icc=card.field55(1_000, atc=6)))
    assert older.code is R.CRYPTOGRAM_FAILED
    assert issuer.authorise(sale(card, stan="000004", icc=card.field55(1_000, atc=8))).code is R.APPROVED
    assert issuer.account(card.pan).balance == 98_000


def test_missing_or_malformed_icc_data_is_a_format_error_naming_the_tag(issuer, card):
    icc = card.field55(1_000)
    del icc[0x9F37]
    result = issuer.authorise(sale(card, icc=icc))
    assert result.code is R.FORMAT_ERROR and "9F37" in result.text
    short = {**card.field55(1_000), 0x9F36: b"\x01"}
    assert issuer.authorise(sale(card, icc=short)).code is R.FORMAT_ERROR


@pytest.mark.parametrize("change, error", [
    ({}, None),
    ({0x9F03: None}, None),  # Amount, Other may be absent: zeros
    ({0x9F03: bytes.fromhex("000000000100")}, None),  # or there, then covered as it is
    ({0x9F03: bytes(5)}, "9F03 must be 6 bytes"),
    ({0x9A: None}, "9A is missing"),
    ({0x9F27: None}, None),  # no CID: taken as an ARQC
    ({0x9F26: None}, "9F26 is missing"),
    ({0x9F26: bytes(7)}, "9F26 must be 8 bytes"),
    ({0x9F36: b"\x01"}, "9F36 must be 2 bytes"),
    ({0x9F37: None, 0x9F26: bytes(7)}, "9F26 must be 8 bytes"),  # the AC is named first
    ({0x9F02: bytes.fromhex("00000000100A")}, "9F02 must be BCD digits"),
    ({0x5F2A: bytes.fromhex("015A")}, "5F2A must be BCD digits"),
    ({0x9F10: bytes(5)}, "9F10 must be at least 7 bytes"),
    ({0x9F10: None}, "9F10 is missing"),
    ({0x9F27: b"\x80\x00"}, "9F27 must be 1 byte"),
])
def test_the_one_pass_read_of_field_55_gives_what_the_tag_by_tag_read_gives(change, error):
    """read_cryptogram reads the common case in one pass (the issuer's per-sale path) and
    anything else tag by tag (`_read_checked`): the same cryptogram, or the same error."""
    from acquirer.channels.issuer_cryptogram import IccDataError, _read_checked, read_cryptogram

    card = Card(CardFamily.PBOC_SM4, PANS[CardFamily.PBOC_SM4], "01", bytes(range(16)))
    icc = {**card.field55(1_234), **change}
    icc = {tag: value for tag, value in icc.items() if value is not None}
    for family in (CardFamily.PBOC_SM4, "PBOC_SM4"):
        if error is None:
            fast, checked = read_cryptogram(family, icc), _read_checked(family, icc)
            assert fast == checked and type(fast.data) is bytes and fast.amount == 1_234 and fast.currency == "156"
            assert fast.data == ac_data(family, icc)
        else:
            for read in (read_cryptogram, _read_checked):
                with pytest.raises(IccDataError, match=error):
                    read(family, icc)


def test_an_aac_sent_online_is_declined_with_an_arpc(issuer, card):
    icc = card.field55(1_000, cid=0x00)
    result = issuer.authorise(sale(card, icc=icc))
    assert result.code is R.DO_NOT_HONOR and result.issuer_data == card.expected_issuer_data(icc, b"05")


def test_ac_data_layout_matches_the_pboc_worked_example(hsm):
    # docs/emv-crypto.md: IMK F23B..., PAN 6214988660100000304, PSN 00, ATC 0001 -> ARQC 179E0D01A7D1791D
    icc = {0x9F02: bytes(6), 0x9F03: bytes(6), 0x9F1A: b"\x01\x56", 0x95: bytes.fromhex("0000000800"),
           0x5F2A: b"\x01\x56", 0x9A: bytes.fromhex("160518"), 0x9C: b"\x00", 0x9F37: bytes.fromhex("412AB4B6"),
           0x82: b"\x7D\x00", 0x9F36: b"\x00\x01", 0x9F10: bytes.fromhex("07010103A000000000")}
    data = ac_data(CardFamily.PBOC_SM4, icc)
    assert data.hex().upper() == "00000000000000000000000001560000000800015616051800412AB4B67D00000103A00000"
    imk = Key("SM4", "IMK_AC", bytes.fromhex("F23BF4AE92B554C116139D4F67322667"))
    hsm.import_clear("issuer/cup-example/IMK_AC", imk)
    hsm.verify_arqc("issuer/cup-example/IMK_AC", "PBOC_SM4", "6214988660100000304", "00", b"\x00\x01", data,
                    bytes.fromhex("179E0D01A7D1791D"), b"00")
    assert ac_data(CardFamily.EMV_TDES, icc) == data  # one layout for both families


@pytest.mark.parametrize("family", list(CardFamily), ids=lambda f: f.value)
def test_the_simulated_cards_compute_over_the_same_bytes(family):
    cards = pytest.importorskip("hardware.emvcard.card")
    risk = pytest.importorskip("hardware.emvcard.risk")
    icc = Card(family, PANS[family], "01", bytes(16)).field55(4_321, atc=0x2A)
    cvr = risk.cvr(risk.CID_ARQC)
    assert icc[0x9F10][3:7] == cvr
    assert ac_data(family, icc) == cards.ac_input({**icc, 0x9F03: bytes(6)}, icc[0x82], icc[0x9F36], cvr)


def test_a_sale_without_icc_data_is_decided_without_a_cryptogram(issuer, card):
    result = issuer.authorise(request(card, amount=500))
    assert result.code is R.APPROVED and result.issuer_data == b"" and result.balance == 99_500


# --- PIN -----------------------------------------------------------------------------
def test_three_wrong_pins_exhaust_the_tries_and_lock_even_the_right_pin(issuer, card, tpk):
    wrong = encrypt_pin_block(PinBlockFormat.SM4, tpk.cipher, "9999", card.pan)
    right = encrypt_pin_block(PinBlockFormat.SM4, tpk.cipher, "1234", card.pan)
    codes = [issuer.authorise(sale(card, stan=f"00000{i}", pin_block=wrong)) for i in range(3)]
    assert [r.code for r in codes] == [R.INCORRECT_PIN, R.INCORRECT_PIN, R.PIN_TRIES_EXCEEDED]
    assert "2 tries left" in codes[0].text
    assert issuer.authorise(sale(card, stan="000009", pin_block=right)).code is R.PIN_TRIES_EXCEEDED
    assert issuer.account(card.pan).balance == 100_000 and issuer.account(card.pan).pin_tries_left == 0


def test_a_right_pin_is_approved_and_restores_the_tries(issuer, card, tpk):
    wrong = encrypt_pin_block(PinBlockFormat.SM4, tpk.cipher, "4321", card.pan)
    right = encrypt_pin_block(PinBlockFormat.SM4, tpk.cipher, "1234", card.pan)
    assert issuer.authorise(sale(card, pin_block=wrong)).code is R.INCORRECT_PIN
    assert issuer.account(card.pan).pin_tries_left == 2
    assert issuer.authorise(sale(card, stan="000002", pin_block=right)).code is R.APPROVED
    assert issuer.account(card.pan).pin_tries_left == 3


def test_a_pin_block_under_another_key_is_a_format_error_and_costs_no_try(issuer, card, tpk):
    other = Key.generate("SM4", "TPK")
    block = encrypt_pin_block(PinBlockFormat.SM4, other.cipher, "1234", card.pan)
    assert issuer.authorise(sale(card, pin_block=block)).code is R.FORMAT_ERROR
    account = issuer.account(card.pan)
    assert account.pin_tries_left == 3 and account.balance == 100_000


def test_the_pin_is_kept_only_as_a_block_under_the_issuer_zpk(issuer, hsm, card):
    account = issuer.account(card.pan)
    assert account.pin_reference and "1234" not in repr(account)
    assert not [n for n in hsm.names("channel/") if "perso-" in n]  # the carrier key is gone


# --- standing, limits, funds ----------------------------------------------------------
@pytest.mark.parametrize("status", [AccountStatus.BLOCKED, AccountStatus.LOST])
def test_blocked_and_lost_cards_are_refused(issuer, card, status):
    issuer.set_status(card.pan, status)
    result = issuer.authorise(sale(card))
    assert result.code is R.LOST_CARD and issuer.account(card.pan).balance == 100_000
    issuer.set_status(card.pan, "active")
    assert issuer.authorise(sale(card, stan="000002")).code is R.APPROVED


def test_unknown_card_is_invalid(issuer, card):
    stranger = Card(card.family, "6212345678901234", "01", bytes(16))
    assert issuer.authorise(request(stranger)).code is R.INVALID_CARD


def test_a_card_works_through_its_expiry_month_and_not_after(issuer, card, clock):
    clock.now = datetime(2027, 12, 31, 23, 59)
    assert issuer.authorise(sale(card)).code is R.APPROVED
    clock.now = datetime(2028, 1, 1, 0, 0)
    assert issuer.authorise(sale(card, stan="000002")).code is R.EXPIRED_CARD
    clock.now = datetime(2025, 6, 15)
    assert issuer.authorise(sale(card, stan="000003", expiry="2801")).code is R.EXPIRED_CARD  # not the card's date


def test_per_transaction_and_daily_limits(hsm, issuer, clock):
    card = personalise(hsm, issuer, CardFamily.PBOC_SM4, per_transaction_limit=5_000, daily_limit=8_000)
    assert issuer.authorise(sale(card, 5_001)).code is R.EXCEEDS_LIMIT
    assert issuer.authorise(sale(card, 5_000, stan="000002")).code is R.APPROVED
    over = issuer.authorise(sale(card, 3_001, stan="000003"))
    assert over.code is R.EXCEEDS_LIMIT and "daily" in over.text
    assert issuer.authorise(sale(card, 3_000, stan="000004")).code is R.APPROVED
    clock.now = datetime(2025, 6, 16, 9, 0)  # a new day, a new daily allowance
    assert issuer.authorise(sale(card, 5_000, stan="000005")).code is R.APPROVED
    assert issuer.account(card.pan).balance == 100_000 - 13_000


def test_insufficient_funds_is_declined_with_an_arpc_carrying_its_arc(hsm, issuer):
    card = personalise(hsm, issuer, CardFamily.EMV_TDES, balance=999)
    icc = card.field55(1_000)
    result = issuer.authorise(sale(card, icc=icc))
    assert result.code is R.INSUFFICIENT_FUNDS and result.issuer_data == card.expected_issuer_data(icc, b"51")
    assert issuer.account(card.pan).balance == 999 and issuer.account(card.pan).last_atc == 1


# --- credits and undo -----------------------------------------------------------------
def test_a_refund_credits_the_card(issuer, card):
    result = issuer.authorise(request(card, Operation.REFUND, 1_200, stan="000010", original_amount=2_000))
    assert result.code is R.APPROVED and result.balance == 101_200
    too_much = issuer.authorise(request(card, Operation.REFUND, 2_500, stan="000011", original_amount=2_000))
    assert too_much.code is R.ORIGINAL_AMOUNT_INCORRECT and issuer.account(card.pan).balance == 101_200


def test_a_void_credits_its_sale_once(issuer, card):
    assert issuer.authorise(sale(card, 3_000)).code is R.APPROVED
    void = request(card, Operation.VOID, 3_000, stan="000002", original_amount=3_000)
    assert issuer.authorise(void).code is R.APPROVED
    assert issuer.account(card.pan).balance == 100_000
    again = issuer.authorise(request(card, Operation.VOID, 3_000, stan="000003", original_amount=3_000))
    assert again.code is R.ORIGINAL_NOT_FOUND and issuer.account(card.pan).balance == 100_000


def test_a_reversal_credits_its_sale_once(issuer, card):
    assert issuer.authorise(sale(card, 3_000, stan="000042")).code is R.APPROVED
    reversal = request(card, Operation.REVERSAL, 3_000, stan="000042")
    assert issuer.authorise(reversal).code is R.APPROVED
    assert issuer.account(card.pan).balance == 100_000
    again = issuer.authorise(reversal)
    assert again.code is R.APPROVED and again.text == "already reversed"
    assert issuer.account(card.pan).balance == 100_000


def test_a_reversal_of_what_the_issuer_never_approved_credits_nothing(hsm, issuer):
    card = personalise(hsm, issuer, CardFamily.PBOC_SM4, balance=500)
    assert issuer.authorise(sale(card, 1_000, stan="000007")).code is R.INSUFFICIENT_FUNDS
    assert issuer.authorise(request(card, Operation.REVERSAL, 1_000, stan="000007")).code is R.ORIGINAL_NOT_FOUND
    assert issuer.authorise(request(card, Operation.REVERSAL, 1_000, stan="000099")).code is R.ORIGINAL_NOT_FOUND
    assert issuer.authorise(request(card, Operation.VOID, 1_000, stan="000100")).code is R.ORIGINAL_NOT_FOUND
    assert issuer.account(card.pan).balance == 500


def test_reversing_a_void_debits_again_and_the_sale_can_be_voided_again(issuer, card):
    assert issuer.authorise(sale(card, 2_000)).code is R.APPROVED
    assert issuer.authorise(request(card, Operation.VOID, 2_000, stan="000002")).code is R.APPROVED
    assert issuer.authorise(request(card, Operation.REVERSAL, 2_000, stan="000002")).code is R.APPROVED
    assert issuer.account(card.pan).balance == 98_000
    assert issuer.authorise(request(card, Operation.VOID, 2_000, stan="000003")).code is R.APPROVED
    assert issuer.account(card.pan).balance == 100_000


def test_the_account_the_issuer_keeps_is_the_row_on_disk_after_every_kind_of_decision(hsm, issuer, tpk,
                                                                                        tmp_path):
    """The issuer applies its changes to the account it holds instead of reading the row back:
    after each decision that account must equal the row another connection reads."""
    card = personalise(hsm, issuer, CardFamily.PBOC_SM4, daily_limit=50_000)
    wrong = encrypt_pin_block(PinBlockFormat.SM4, tpk.cipher, "9999", card.pan)
    right = encrypt_pin_block(PinBlockFormat.SM4, tpk.cipher, "1234", card.pan)
    steps = [sale(card, 2_000), sale(card, stan="000002", pin_block=wrong),
             sale(card, 3_000, stan="000003", pin_block=right), sale(card, 60_000, stan="000004"),
             request(card, Operation.VOID, 2_000, stan="000005"), request(card, Operation.REFUND, 500, stan="000006"),
             request(card, Operation.REVERSAL, 3_000, stan="000003"), request(card, Operation.REVERSAL, 2_000,
                                                                               stan="000005")]
    outside = sqlite3.connect(tmp_path / "issuer.db")
    columns = [c[1] for c in outside.execute("PRAGMA table_info(accounts)") if c[1] not in ("opened_at",)]
    try:
        for step in steps + ["lost"]:
            if step == "lost":
                issuer.set_status(card.pan, "lost")
            else:
                issuer.authorise(step)
            kept = issuer.account(card.pan)  # committed first (grouped: flushed)
            row = outside.execute(f"SELECT {', '.join(columns)} FROM accounts").fetchone()
            assert {c: getattr(kept, c) for c in columns} == dict(zip(columns, row))
    finally:
        outside.close()
    assert kept.status is AccountStatus.LOST and kept.pin_tries_left == 3
    assert (kept.balance, kept.day_total) == (98_500, 2_000)  # the voided sale stands again: its void reversed


@pytest.mark.parametrize("reads_decisions", [False, True], ids=["sale", "void"])
def test_grouped_a_failed_decision_leaves_nothing_and_the_decisions_before_it_stand(hsm, tmp_path, clock,
                                                                                    reads_decisions):
    """Grouped, what sale decisions change is written at the flush; one that fails midway is
    dropped with its savepoint, and a void's write of the pending ones is not undone with it."""
    with IssuerSimulator(hsm, tmp_path / "issuer.db", clock=clock, durable=False, grouped=True) as issuer:
        card = personalise(hsm, issuer, CardFamily.PBOC_SM4)
        assert issuer.authorise(sale(card, 1_000)).code is R.APPROVED
        store = issuer._store
        with pytest.raises(RuntimeError, match="fails after its writes"):
            with store.decision(reads_decisions=reads_decisions) as db:
                account = store.find(db, card.pan)
                store.update(db, account, balance=0)
                store.record(db, account, sale(card, stan="000002"), "00", day="20250615")
                raise RuntimeError("the decision fails after its writes")
        assert issuer.account(card.pan).balance == 99_000
    with sqlite3.connect(tmp_path / "issuer.db") as other:
        assert other.execute("SELECT stan, amount, code FROM decisions").fetchall() == [("000001", 1_000, "00")]
        assert other.execute("SELECT balance, last_atc FROM accounts").fetchall() == [(99_000, 1)]


def test_grouped_a_sale_decision_keeps_its_changes_in_memory_and_cannot_write_the_file(hsm, tmp_path, clock):
    """A sale or refund decision has no savepoint: what it may change is the columns the
    flush writes, and a statement on earlier decisions needs a decision opened for that."""
    with IssuerSimulator(hsm, tmp_path / "issuer.db", clock=clock, durable=False, grouped=True) as issuer:
        card = personalise(hsm, issuer, CardFamily.PBOC_SM4)
        store = issuer._store
        with pytest.raises(RuntimeError, match="reads_decisions=True"):
            with store.decision() as db:
                store.update(db, store.find(db, card.pan), balance=5)
                store.reopen(db, 1)
        with pytest.raises(RuntimeError, match="a decision changes only"):
            with store.decision() as db:
                store.update(db, store.find(db, card.pan), profile="other")
        assert issuer.account(card.pan).balance == 100_000 and issuer.account(card.pan).profile == "test-pboc_sm4"
        assert issuer.authorise(sale(card, 1_000)).code is R.APPROVED


def test_the_pan_token_is_sm3_of_the_salt_and_the_pan(issuer):
    from keys.hashes import sm3

    store = issuer._store
    assert store.token(PANS[CardFamily.PBOC_SM4]) == sm3(store._salt + PANS[CardFamily.PBOC_SM4].encode()).hex()
    assert store.token("6214988600000000001") != store.token("6214988600000000002")


def test_only_the_grouped_store_keeps_tokens_by_pan_and_at_most_its_bound(tmp_path, monkeypatch):
    """The issuer's process keeps the tokens of the cards it saw (keys.hsm keeps their card
    keys the same way): the same SM3 value, the oldest dropped first; the desk keeps none."""
    from acquirer.channels import issuer_accounts
    from keys.hashes import sm3

    monkeypatch.setattr(issuer_accounts, "_TOKENS", 3)
    grouped = issuer_accounts.AccountStore(tmp_path / "issuer.db", durable=False, grouped=True)
    desk = issuer_accounts.AccountStore(tmp_path / "issuer.db")
    pans = [f"62149886000000{n:05d}" for n in range(5)]
    for pan in pans + pans[-2:]:
        assert grouped.token(pan) == desk.token(pan) == sm3(grouped._salt + pan.encode()).hex()
    assert list(grouped._tokens) == pans[-3:] and desk._tokens is None
    grouped.close()
    desk.close()


def test_a_voided_sale_gives_back_its_daily_allowance(hsm, issuer):
    card = personalise(hsm, issuer, CardFamily.EMV_TDES, daily_limit=5_000)
    assert issuer.authorise(sale(card, 5_000)).code is R.APPROVED
    assert issuer.authorise(request(card, Operation.VOID, 5_000, stan="000002")).code is R.APPROVED
    assert issuer.authorise(sale(card, 5_000, stan="000003")).code is R.APPROVED


# --- storage --------------------------------------------------------------------------
def test_grouped_decisions_commit_at_flush_and_see_other_connections_writes(tmp_path, clock):
    hsm = HSM.open(tmp_path / "hsm.db", tmp_path / "lmk")
    issuer = IssuerSimulator(hsm, tmp_path / "issuer.db", clock=clock, durable=False, grouped=True)
    card = personalise(hsm, issuer, CardFamily.PBOC_SM4)
    first = issuer.authorise(sale(card, 4_000))
    outside = sqlite3.connect(tmp_path / "issuer.db", isolation_level=None, timeout=0.1)
    assert outside.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 0  # not committed yet
    issuer.flush()
    assert outside.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 1
    # another process tops the card up between two groups: the next decision must see it
    outside.execute("UPDATE accounts SET balance = balance + 50000")
    second = issuer.authorise(sale(card, 1_000, stan="000002"))
    assert (first.code, second.code) == (R.APPROVED, R.APPROVED) and second.balance == 100_000 - 5_000 + 50_000
    issuer.close()
    issuer = IssuerSimulator(hsm, tmp_path / "issuer.db", clock=clock, durable=False, grouped=True)
    third = issuer.authorise(sale(card, 1_000, stan="000003"))  # authorisation numbers go on after a restart
    assert [int(r.auth_code) for r in (first, second, third)] == [1, 2, 3]
    issuer.close()
    outside.close()
    hsm.close()


def test_grouped_authorisation_numbers_are_never_given_twice_after_a_crash_or_by_another_connection(tmp_path,
                                                                                                    clock):
    """Grouped, the file holds a reservation of numbers, not the last one given: a crash
    leaves a gap, never a number given again; a store on the same file that gives numbers
    meanwhile (the desk's, own transactions) goes on above the reservation."""
    hsm = HSM.open(tmp_path / "hsm.db", tmp_path / "lmk")
    issuer = IssuerSimulator(hsm, tmp_path / "issuer.db", clock=clock, durable=False, grouped=True)
    card = personalise(hsm, issuer, CardFamily.PBOC_SM4, balance=10**9)
    given = [issuer.authorise(sale(card, 100, stan=f"{n:06d}")).auth_code for n in range(1, 4)]
    issuer.flush()
    desk = IssuerSimulator(hsm, tmp_path / "issuer.db", clock=clock)
    other = personalise(hsm, desk, CardFamily.EMV_TDES, pan="4761739001010028", balance=10**9)
    given.append(desk.authorise(sale(other, 100, stan="000010")).auth_code)
    given += [issuer.authorise(sale(card, 100, stan=f"{n:06d}")).auth_code for n in range(4, 6)]
    issuer.flush()
    issuer._store._db.close()  # the process dies: no close() to give back what it reserved
    issuer = IssuerSimulator(hsm, tmp_path / "issuer.db", clock=clock, durable=False, grouped=True)
    given.append(issuer.authorise(sale(card, 100, stan="000006")).auth_code)
    numbers = [int(code) for code in given]
    assert len(set(numbers)) == len(numbers) and numbers[:3] == [1, 2, 3] and numbers[-1] > max(numbers[:-1])
    issuer.close()
    reopened = IssuerSimulator(hsm, tmp_path / "issuer.db", clock=clock, durable=False, grouped=True)
    assert int(reopened.authorise(sale(card, 100, stan="000007")).auth_code) == numbers[-1] + 1  # a clean close
    reopened.close()
    desk.close()
    hsm.close()


def test_balances_and_counters_survive_a_restart(tmp_path, clock):
    hsm = HSM.open(tmp_path / "hsm.db", tmp_path / "lmk")
    issuer = IssuerSimulator(hsm, tmp_path / "issuer.db", clock=clock)
    card = personalise(hsm, issuer, CardFamily.PBOC_SM4)
    assert issuer.authorise(sale(card, 4_000)).code is R.APPROVED
    issuer.close()
    hsm.close()
    hsm = HSM.open(tmp_path / "hsm.db", tmp_path / "lmk")
    issuer = IssuerSimulator(hsm, tmp_path / "issuer.db", clock=clock)
    account = issuer.account(card.pan)
    assert account.balance == 96_000 and account.last_atc == 1 and account.day_total == 4_000
    assert issuer.authorise(sale(card, 1_000, stan="000002")).code is R.APPROVED
    assert sqlite3.connect(tmp_path / "issuer.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    issuer.close()
    hsm.close()


def test_a_decision_that_fails_midway_changes_nothing(issuer, card, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(issuer._store, "record", broken)
    with pytest.raises(RuntimeError):
        issuer.authorise(sale(card, 1_000))
    account = issuer.account(card.pan)
    assert account.balance == 100_000 and account.last_atc == -1 and account.day_total == 0


def test_an_existing_account_is_not_overwritten_unless_asked(hsm, issuer, card):
    with pytest.raises(AccountError, match="already exists") as caught:
        issuer.open_account(card.pan, profile="x", family=card.family, expiry="2712")
    assert card.pan not in str(caught.value)
    issuer.open_account(card.pan, profile="x", family=card.family, expiry="2712", balance=5, replace=True)
    assert issuer.account(card.pan).balance == 5


@pytest.mark.parametrize("settings, field_name", [
    ({"expiry": "2713"}, "expiry"), ({"psn": "1"}, "psn"), ({"balance": -1}, "balance"),
    ({"pin": "12"}, "pin"), ({"family": "VISA"}, "family"), ({"status": "stolen"}, "status"),
])
def test_bad_personalisation_names_the_field_not_the_pan(issuer, settings, field_name):
    pan = PANS[CardFamily.PBOC_SM4]
    args = {"profile": "p", "family": "PBOC_SM4", "expiry": "2712", **settings}
    with pytest.raises(AccountError, match=f"^{field_name}:") as caught:
        issuer.open_account(pan, **args)
    assert pan not in str(caught.value)
    assert issuer.account(pan) is None


def test_an_imk_of_the_wrong_algorithm_is_refused(hsm, issuer):
    hsm.generate(issuer_key_name("mixed", "IMK_AC"), "TDES", "IMK_AC", length=16)
    with pytest.raises(AccountError, match="profile:"):
        issuer.open_account(PANS[CardFamily.PBOC_SM4], profile="mixed", family="PBOC_SM4", expiry="2712")


# --- no cardholder data in text -------------------------------------------------------
def test_no_pan_or_pin_in_results_logs_or_the_database(hsm, issuer, tpk, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    results, pans = [], []
    for family in CardFamily:
        card = personalise(hsm, issuer, family, per_transaction_limit=50_000)
        pans.append(card.pan)
        wrong = encrypt_pin_block(PinBlockFormat.SM4, tpk.cipher, "9876", card.pan)
        results += [issuer.authorise(r) for r in (
            sale(card), sale(card, stan="000002", pin_block=wrong), sale(card, 60_000, stan="000003"),
            sale(card, 1_000, stan="000004", icc={0x9F26: bytes(8)}),
            request(card, Operation.REFUND, 100), request(card, Operation.REVERSAL, 1_000),
            request(card, Operation.VOID, 777))]
        issuer.set_status(card.pan, "lost")
        results.append(issuer.authorise(sale(card, stan="000005")))
    assert len({r.code for r in results}) >= 6
    text = "\n".join([repr(r) for r in results] + [r.text for r in results] + [caplog.text]
                     + [repr(issuer.account(p)) for p in pans])
    for pan in pans:
        assert pan not in text and pan[-10:] not in text
    assert "9876" not in text
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("issuer.db*"))
    for pan in pans:
        assert pan.encode() not in raw and bytes.fromhex(pan.ljust(20, "F")) not in raw
