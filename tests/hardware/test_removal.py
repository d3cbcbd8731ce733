"""A card that leaves mid-transaction is CardRemoved ("card removed, tap again")."""
import threading

import pytest

from hardware.apdu import command
from hardware.card_apps import TEST_AID, Iso7816TestApplication
from hardware.errors import CardRemoved, HardwareError

pytestmark = pytest.mark.pcsc  # needs pcscd and the vpcd virtual reader

SELECT = command(0x00, 0xA4, 0x04, 0x00, TEST_AID, le=0)
VANISH = bytes.fromhex("80EE0000")


class HeldApplication(Iso7816TestApplication):
    """Holds its answer to the second command until the test lets it go."""

    def __init__(self):
        super().__init__()
        self.busy = threading.Event()
        self.release = threading.Event()

    def process_apdu(self, apdu):
        if apdu[1] == 0xCA:
            self.busy.set()
            self.release.wait(30)
        return super().process_apdu(apdu)


def test_a_card_vanishing_mid_command_raises_card_removed(reader, insert_card):
    card = insert_card()
    session = reader.wait_for_card(timeout=10)
    assert session.transmit(SELECT)[1] == 0x9000
    with pytest.raises(CardRemoved) as caught:
        session.transmit(VANISH)
    assert str(caught.value) == "card removed, tap again"
    assert card.wait_gone(10)
    assert not session.is_present()
    # The session stays dead, with the same typed error.
    with pytest.raises(CardRemoved, match="card removed, tap again"):
        session.transmit(SELECT)


def test_a_card_lifted_while_answering_raises_card_removed(reader, insert_card):
    app = HeldApplication()
    card = insert_card(app)
    session = reader.wait_for_card(timeout=10)
    outcome: list[BaseException] = []

    def transmit():
        try:
            session.transmit(bytes.fromhex("80CA000000"))
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    worker = threading.Thread(target=transmit)
    worker.start()
    assert app.busy.wait(10)
    card.remove(wait=False)  # the link is gone before the card answers
    app.release.set()
    worker.join(30)
    assert len(outcome) == 1
    assert isinstance(outcome[0], CardRemoved), repr(outcome[0])
    assert str(outcome[0]) == "card removed, tap again"


def test_a_removed_card_is_seen_by_a_later_command(reader, insert_card):
    card = insert_card()
    session = reader.wait_for_card(timeout=10)
    card.remove()
    reader.wait_for_removal(10)
    with pytest.raises(CardRemoved, match="card removed, tap again"):
        session.transmit(SELECT)


def test_a_card_tapped_again_works_again(reader, insert_card):
    card = insert_card()
    session = reader.wait_for_card(timeout=10)
    with pytest.raises(CardRemoved):
        session.transmit(VANISH)
    reader.wait_for_removal(10)
    card.insert(timeout=10)
    with reader.wait_for_card(timeout=10) as again:
        data, sw = again.transmit(SELECT)
    assert sw == 0x9000 and TEST_AID in data


def test_a_card_vanishing_after_n_commands_never_leaks_a_pyscard_error(reader, insert_card):
    insert_card(Iso7816TestApplication(vanish_after=3))
    session = reader.wait_for_card(timeout=10)
    errors = []
    for _ in range(5):
        try:
            session.transmit(SELECT)
        except HardwareError as exc:
            errors.append(exc)
    assert len(errors) == 3
    assert all(isinstance(e, CardRemoved) for e in errors)
