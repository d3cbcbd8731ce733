"""Fixtures and flows shared by the tests of the simulated EMV cards."""
from __future__ import annotations

import pytest

from hardware.emvcard import load_card
from keys.hsm import HSM, issuer_key_name

from .conftest import TAP_TIMEOUT_S
from .emv_terminal import Terminal, ac_data, pdol_values

ARC_APPROVED = b"00"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    """One state directory (test CA, card images, counters) and one issuer HSM per worker."""
    state = tmp_path_factory.mktemp("emv-state")
    hsm = HSM.open(state / "hsm.db", state / "lmk.key")
    yield state, hsm
    hsm.close()


@pytest.fixture
def tap(issuer, reader, insert_card):
    """tap(profile) -> (Terminal, card): the card inserted and a session connected to it."""

    def tap_card(profile: str, card=None):
        state, hsm = issuer
        card = card or load_card(profile, state, hsm)
        card.vcard = insert_card(card)  # kept on the card so a test can lift it off
        return Terminal(reader.wait_for_card(TAP_TIMEOUT_S)), card

    return tap_card


def quick_flow(terminal: Terminal, **values):
    ppse = terminal.select_ppse()
    fci, sw = terminal.select(ppse[0x4F])
    assert sw == 0x9000
    txn = pdol_values(**values)
    gpo = terminal.gpo(fci[0x9F38], txn)
    records, static = terminal.read_records(gpo[0x94])
    return txn, gpo, records, static + gpo[0x82]


def verify_arqc(hsm: HSM, profile: str, family: str, records, gpo, txn) -> bytes:
    pan = records[0x5A].hex().upper().rstrip("F")
    data = ac_data(txn, gpo[0x82], gpo[0x9F36], gpo[0x9F10])
    return hsm.verify_arqc(issuer_key_name(profile, "IMK_AC"), family, pan, records[0x5F34].hex(), gpo[0x9F36],
                           data, gpo[0x9F26], ARC_APPROVED)
