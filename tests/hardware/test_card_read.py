"""`pos card read`: the read-only flow through pcscd, shown masked."""
from __future__ import annotations

import argparse

import pytest

from hardware.cardread import read_card, register_card_read, render
from hardware.emvcard import load_card

from .conftest import TAP_TIMEOUT_S


def _pos_card_read(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pos card")
    register_card_read(parser.add_subparsers(dest="card_command", required=True))
    args = parser.parse_args(["read", *argv])
    return args.func(args)


@pytest.mark.parametrize("profile", ["pboc-sm-debit", "qvsdc-rsa"])
def test_card_read_shows_a_masked_pan_and_never_the_full_one(issuer, insert_card, capsys, profile):
    state, hsm = issuer
    card = load_card(profile, state, hsm)
    insert_card(card)
    status = _pos_card_read(["--reader", "Virtual PCD 00 00", "--timeout", str(TAP_TIMEOUT_S)])
    out, err = capsys.readouterr()
    assert status == 0, out + err
    pan = card.profile.pan
    assert pan not in out and pan not in err
    assert f"PAN          {pan[:6]}{'*' * (len(pan) - 10)}{pan[-4:]}" in out
    assert f"Application  {card.profile.label} ({card.profile.aid.hex().upper()}), priority 1" in out
    assert "57 Track 2 Equivalent Data" in out and "D****" in out
    assert "9F46 ICC PK Certificate" in out and "READ RECORD SFI 2 #3  [9000 ok]" in out
    assert "Cryptogram   ARQC, ATC" in out


def test_card_read_reports_a_malformed_record_without_dumping_it(issuer, insert_card, reader):
    state, hsm = issuer
    card = load_card("faulty-malformed-record", state, hsm)
    insert_card(card)
    with reader.wait_for_card(TAP_TIMEOUT_S) as session:
        reading = read_card(session)
    text = render(reading)
    assert reading.problems and "READ RECORD SFI 1 #1: malformed TLV" in reading.problems[0]
    assert card.profile.pan not in text and card.profile.pan not in repr(reading)
    assert reading.masked_pan.endswith(card.profile.pan[-4:])  # read from the good record 5A


def test_card_read_of_a_blocked_card_stops_at_select(issuer, insert_card, capsys):
    state, hsm = issuer
    insert_card(load_card("faulty-blocked", state, hsm))
    status = _pos_card_read(["--reader", "0", "--timeout", str(TAP_TIMEOUT_S)])
    out, _ = capsys.readouterr()
    assert status == 1
    assert "Problem      SELECT AID answered 6283 application blocked" in out


def test_card_read_without_a_card_says_so(private_pcscd, capsys):
    status = _pos_card_read(["--reader", "Virtual PCD 00 01", "--timeout", "0.3"])
    _, err = capsys.readouterr()
    assert status == 1 and "no card on 'Virtual PCD 00 01' within 0.3 s" in err
