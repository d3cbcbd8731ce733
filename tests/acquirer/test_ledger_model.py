"""A transaction record's checks: the fast paths (enum members given, no extra data) check
exactly what the general ones do."""
from __future__ import annotations

import pytest

from acquirer.ledger import Channel, InvalidEntry, TxnKind, TxnRecord

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
