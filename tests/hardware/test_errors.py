"""PC/SC return codes become typed errors with messages an operator can act on."""
import pytest

from hardware.errors import (
    CardRemoved,
    NoReader,
    PcscdNotRunning,
    ReaderNotFound,
    TransmitFailed,
    error_for,
)
from hardware.reader import choose_reader


@pytest.mark.parametrize("code", [0x80100016, 0x80100069, 0x8010000C])
def test_card_gone_codes_mean_tap_again(code):
    error = error_for(code, "transmit")
    assert isinstance(error, CardRemoved)
    assert str(error) == "card removed, tap again"
    assert error.code == code


def test_no_service_means_pcscd_is_not_running(monkeypatch):
    import hardware.errors

    # As in a process that has made no PC/SC call yet.
    monkeypatch.setattr(hardware.errors, "_socket_in_use", None)
    monkeypatch.setenv("PCSCLITE_CSOCK_NAME", "/tmp/x/pcscd.comm")
    error = error_for(0x8010001D, "establish a PC/SC context")
    assert isinstance(error, PcscdNotRunning)
    assert str(error).startswith("pcscd is not running")
    assert "/tmp/x/pcscd.comm" in str(error)
    assert "systemctl start pcscd" in str(error)


def test_negative_codes_from_32_bit_builds_are_normalised():
    assert isinstance(error_for(0x80100069 - (1 << 32), "transmit"), CardRemoved)


def test_other_codes_are_transmit_failures_naming_the_code():
    error = error_for(0x80100066, "transmit", "Virtual PCD 00 00")
    assert isinstance(error, TransmitFailed)
    assert "0x80100066" in str(error) and "Virtual PCD 00 00" in str(error)


def test_choose_reader_by_index_substring_or_default():
    names = ["ACS ACR122U 00 00", "Virtual PCD 00 00", "Virtual PCD 00 01"]
    assert choose_reader(names) == "ACS ACR122U 00 00"
    assert choose_reader(names, 2) == "Virtual PCD 00 01"
    assert choose_reader(names, "1") == "Virtual PCD 00 00"
    assert choose_reader(names, "acr122") == "ACS ACR122U 00 00"
    assert choose_reader(names, "virtual") == "Virtual PCD 00 00"


def test_choose_reader_errors_list_what_is_there():
    with pytest.raises(NoReader, match="no card reader"):
        choose_reader([])
    with pytest.raises(ReaderNotFound) as caught:
        choose_reader(["Virtual PCD 00 00"], "Omnikey")
    assert caught.value.available == ["Virtual PCD 00 00"]
    assert "'Virtual PCD 00 00'" in str(caught.value)
    with pytest.raises(ReaderNotFound, match="readers present"):
        choose_reader(["Virtual PCD 00 00"], 5)
