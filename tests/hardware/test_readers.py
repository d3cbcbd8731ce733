"""Listing and choosing readers, and waiting for a tap, through a private pcscd."""
import threading

import pytest

from hardware.errors import NoCard, ReaderNotFound, WaitCancelled
from hardware.reader import Reader, list_readers

pytestmark = pytest.mark.pcsc  # needs pcscd and the vpcd virtual reader


def test_the_private_pcscd_lists_both_vpcd_slots(private_pcscd):
    assert list_readers() == ["Virtual PCD 00 00", "Virtual PCD 00 01"]
    assert private_pcscd.reader_names == list_readers()


def test_a_reader_is_picked_by_substring_or_index(private_pcscd):
    with Reader.open("pcd 00 01") as reader:
        assert reader.name == "Virtual PCD 00 01"
    with Reader.open(0) as reader:
        assert reader.name == "Virtual PCD 00 00"
    with Reader.open() as reader:
        assert reader.name == "Virtual PCD 00 00"


def test_an_unknown_reader_name_lists_the_readers_present(private_pcscd):
    with pytest.raises(ReaderNotFound) as caught:
        Reader.open("ACR122U")
    message = str(caught.value)
    assert "'ACR122U' not found" in message
    assert "'Virtual PCD 00 00'" in message and "'Virtual PCD 00 01'" in message
    assert caught.value.available == ["Virtual PCD 00 00", "Virtual PCD 00 01"]


def test_waiting_without_a_tap_ends_in_no_card(reader):
    with pytest.raises(NoCard, match="no card on 'Virtual PCD 00 00' within 0.3 s"):
        reader.wait_for_card(timeout=0.3)
    assert not reader.card_present()


def test_a_set_cancel_event_stops_the_wait(reader):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(WaitCancelled, match="cancelled"):
        reader.wait_for_card(timeout=60, cancel=cancel)


def test_a_cancel_from_another_thread_stops_a_blocked_wait(reader):
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def wait():
        try:
            reader.wait_for_card(timeout=60, cancel=cancel)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    cancel.set()
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert isinstance(outcome[0], WaitCancelled)


def test_reader_cancel_wakes_a_wait_without_an_event(reader):
    outcome: list[BaseException] = []
    started = threading.Event()

    def wait():
        started.set()
        try:
            reader.wait_for_card(timeout=60)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    started.wait()
    # SCardCancel only wakes a call already blocked: repeat until the waiter is out.
    while waiter.is_alive():
        reader.cancel()
        waiter.join(timeout=0.05)
    assert isinstance(outcome[0], WaitCancelled)


def test_a_tapped_card_is_seen_with_its_atr(reader, insert_card):
    card = insert_card()
    with reader.wait_for_card(timeout=10) as session:
        assert session.atr == card.app.atr
        assert session.reader == "Virtual PCD 00 00"
        assert session.protocol in ("T=0", "T=1")
        assert session.is_present()
    assert reader.card_present()
