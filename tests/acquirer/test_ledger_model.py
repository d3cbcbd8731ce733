"""A transaction record's checks: the fast paths (enum members given, no extra data) check
exactly what the general ones do; its journal text written directly is the generic one."""
from __future__ import annotations

import random
import string

import pytest

from acquirer.ledger import Channel, InvalidEntry, TxnKind, TxnRecord
from acquirer.ledger.model import details_dumps, details_json_of

TID, MID = "00000001", "898440358120001"


def test_kind_and_channel_given_as_their_codes_become_the_members():
    record = TxnRecord(TID, MID, "000001", "000001", "sale", "CD", 100)
    assert record.kind is TxnKind.SALE and record.channel is Channel.CARD
    with pytest.raises(ValueError):
        TxnRecord(TID, MID, "000001", "000001", "cheque", Channel.CARD, 100)


@pytest.mark.parametrize("field,value", [("batch", "00001\n"), ("stan", "00001x"), ("stan", 123456),
                                         ("currency", "15")])
def test_a_digit_field_of_anything_but_its_digits_is_refused(field, value):
    values = {"batch": "000001", "stan": "000001", "currency": "156", field: value}
    with pytest.raises(InvalidEntry) as err:
        TxnRecord(TID, MID, values["batch"], values["stan"], TxnKind.SALE, Channel.CARD, 100,
                  currency=values["currency"])
    assert err.value.field == field


def test_extra_data_is_still_checked_when_there_is_some():
    assert TxnRecord(TID, MID, "000001", "000001", TxnKind.QR, Channel.QR, 1, extra={"order": "A1"}).extra
    with pytest.raises(InvalidEntry) as err:
        TxnRecord(TID, MID, "000001", "000001", TxnKind.QR, Channel.QR, 1, extra={"order": object()})
    assert err.value.field == "extra"


@pytest.mark.parametrize("record", [
    TxnRecord(TID, MID, "000001", "000001", TxnKind.SALE, Channel.CARD, 100, rrn="601234567890", auth_code="A1B2C3",
              masked_pan="621234******1234", pan_token="TOKEN-0001"),
    TxnRecord(TID, "商户\"\\\n\x01é", "000002", "000009", TxnKind.REFUND, Channel.CARD, 1, auth_code="\u2028",
              response_code="é\"", pan_token="tok\t\x7f\ud800", original_txn_id=f"{TID}:000001:000001"),
    TxnRecord(TID, MID, "000001", "000003", TxnKind.QR, Channel.QR, 7,
              extra={"order": "A1", "z": [1, 2.5, None, True, "ü"], "a": {"b": "c"}}),
    TxnRecord(TID, MID, "000001", "000004", TxnKind.SALE, Channel.CARD, 5, rrn=b"601234567890"),  # not a str
    TxnRecord(TID, MID, "000001", "000005", TxnKind.SALE, Channel.CARD, 5, auth_code=("A", 1)),
], ids=["card sale", "odd characters", "extra data", "bytes rrn", "tuple auth code"])
def test_the_journal_text_written_directly_is_the_generic_encoders_to_the_byte(record):
    try:
        expected = details_dumps(record.details())
    except TypeError:  # a value JSON has no form for is refused either way
        with pytest.raises(TypeError):
            record.details_json()
        return
    assert record.details_json() == expected


_GOOD = dict(terminal_id=TID, merchant_id=MID, batch="000001", stan="000001", kind=TxnKind.SALE, channel=Channel.CARD,
             amount=100, currency="156", rrn="601234567890", auth_code="A1B2C3", response_code="00",
             masked_pan="621234******1234", pan_token="5A" * 16)


@pytest.mark.parametrize("field,value", [
    ("terminal_id", ""), ("terminal_id", "123456789"), ("terminal_id", "T:1"), ("terminal_id", 1),
    ("merchant_id", ""), ("merchant_id", "x" * 16), ("batch", "1"), ("stan", "00000a"), ("amount", -1),
    ("amount", True), ("amount", 10**12), ("amount", 1.0), ("currency", "1560"), ("rrn", "1" * 11),
    ("rrn", "é" * 12), ("auth_code", "1234567"), ("response_code", "0"), ("response_code", 0),
    ("masked_pan", "6212341234567890"), ("pan_token", "t" * 65), ("pan_token", None),
    ("original_txn_id", f"{TID}:000001:000001")])
def test_a_record_with_one_bad_field_is_refused_naming_that_field(field, value):
    # the one fused test of a well-formed record must let none of these through
    with pytest.raises(InvalidEntry) as err:
        TxnRecord(**{**_GOOD, field: value})
    assert err.value.field == field


def test_a_record_with_several_bad_fields_names_the_first_checked():
    with pytest.raises(InvalidEntry) as err:
        TxnRecord(**{**_GOOD, "amount": -1, "stan": "x", "pan_token": "t" * 65})
    assert err.value.field == "stan"
    with pytest.raises(InvalidEntry) as err:  # a refund needs its original
        TxnRecord(**{**_GOOD, "kind": TxnKind.REFUND})
    assert err.value.field == "original_txn_id"


def test_a_record_of_str_subclasses_passes_the_checks_one_by_one():
    class S(str):
        pass

    plain = TxnRecord(**_GOOD)
    assert TxnRecord(**{k: S(v) if type(v) is str else v for k, v in _GOOD.items()}) == plain
    assert plain.extra == {} and plain.extra is not TxnRecord(**_GOOD).extra  # a new dict each time


def test_entries_and_stored_responses_refuse_what_they_did():
    from acquirer.ledger import JournalEntry, StoredResponse

    with pytest.raises(InvalidEntry) as err:
        JournalEntry.authorised(TxnRecord(**{**_GOOD, "kind": TxnKind.VOID, "original_txn_id": "x"}))
    assert err.value.field == "kind"
    with pytest.raises(InvalidEntry) as err:
        JournalEntry.authorised(TxnRecord(**{**_GOOD, "response_code": "05"}))
    assert err.value.field == "response_code"
    with pytest.raises(InvalidEntry) as err:
        JournalEntry.declined(TxnRecord(**_GOOD))
    assert err.value.field == "response_code"
    entry = JournalEntry.authorised(TxnRecord(**_GOOD))
    assert (entry.event, entry.txn_id, entry.amount, entry.details) == ("AUTHORISED", f"{TID}:000001:000001", 100, {})
    assert entry == JournalEntry(entry.event, entry.txn_id, 100, entry.record)  # as the dataclass makes it
    for field, args in (("batch", ("0001", "000001", bytes(32), b"r")), ("stan", ("000001", 1, bytes(32), b"r")),
                        ("request_digest", ("000001", "000001", bytes(31), b"r")),
                        ("response", ("000001", "000001", bytes(32), "r"))):
        with pytest.raises(InvalidEntry) as err:
            StoredResponse(TID, *args)
        assert err.value.field == field
    assert StoredResponse(TID, "000001", "000001", bytes(32), bytearray(b"r")).reversal is False


def test_the_journal_text_of_any_mix_of_characters_is_the_generic_encoders():
    # the direct text quotes plain fields as they stand: every other field (a quote, a backslash,
    # a control or non-ASCII character anywhere) must still come out as the encoder writes it
    rnd = random.Random(8)
    plain, odd = string.ascii_letters + string.digits + "*: -", '"\\\x00\x1f\x7f\u00e9\u4e2d\u2028'
    for _ in range(2_000):
        texts = ["".join(rnd.choice(odd if rnd.random() < 0.03 else plain) for _ in range(rnd.randint(0, 9)))
                 for _ in range(13)]
        *fields, orig = texts
        orig = None if rnd.random() < 0.5 else orig
        extra = {} if rnd.random() < 0.8 else {"order": texts[0]}
        names = ("terminal_id", "merchant_id", "batch", "stan", "kind", "channel", "currency", "rrn", "auth_code",
                 "response_code", "masked_pan", "pan_token")
        expected = details_dumps({**dict(zip(names, fields)), "original_txn_id": orig, "extra": extra})
        assert details_json_of(*fields, orig, extra) == expected
