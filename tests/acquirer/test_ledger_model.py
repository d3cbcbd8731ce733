"""A transaction record's checks: the fast paths (enum members given, no extra data) check
exactly what the general ones do; its journal text written directly is the generic one."""
from __future__ import annotations

import pytest

from acquirer.ledger import Channel, InvalidEntry, TxnKind, TxnRecord
from acquirer.ledger.model import details_dumps

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
