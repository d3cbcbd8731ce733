"""APDU exchanges through pcscd + vpcd: SELECT, 61xx chaining, 6Cxx re-issue."""
import pytest

from hardware.apdu import command
from hardware.card_apps import TEST_AID, EchoApplication, Iso7816TestApplication
from hardware.errors import TransmitFailed

pytestmark = pytest.mark.pcsc  # needs pcscd and the vpcd virtual reader


def select(aid: bytes) -> bytes:
    return command(0x00, 0xA4, 0x04, 0x00, aid, le=0)


@pytest.fixture
def session(reader, insert_card):
    insert_card(Iso7816TestApplication())
    with reader.wait_for_card(timeout=10) as session:
        yield session


def test_select_by_aid_returns_the_fci(session):
    data, sw = session.transmit(select(TEST_AID))
    assert sw == 0x9000
    assert data == bytes.fromhex("6F1B8409") + TEST_AID + bytes.fromhex("A50E500C") + b"SOFTPOS TEST"


def test_select_by_partial_aid_selects_the_application(session):
    data, sw = session.transmit(select(TEST_AID[:5]))
    assert sw == 0x9000 and TEST_AID in data


def test_an_unknown_aid_passes_its_status_word_through(session):
    assert session.transmit(select(bytes.fromhex("A0000000031010"))) == (b"", 0x6A82)


def test_61xx_is_followed_by_get_response_and_the_data_joined(session):
    data, sw = session.transmit(bytes.fromhex("8010012C00"))  # 300 bytes: 61 00, then 61 2C
    assert sw == 0x9000
    assert data == bytes(i & 0xFF for i in range(300))


def test_transmit_raw_shows_the_61xx_the_card_really_sent(session):
    assert session.transmit_raw(bytes.fromhex("8010001000")) == (b"", 0x6110)
    assert session.transmit_raw(bytes.fromhex("00C0000010")) == (bytes(range(16)), 0x9000)


@pytest.mark.parametrize("apdu", ["8012002000", "80120020", "8012002005"])
def test_6cxx_reissues_the_command_with_the_right_le(session, apdu):
    data, sw = session.transmit(bytes.fromhex(apdu))
    assert sw == 0x9000
    assert data == bytes(range(0xA0, 0xC0))


def test_an_error_status_word_is_returned_not_raised(session):
    assert session.transmit(bytes.fromhex("80FF0000")) == (b"", 0x6D00)
    assert session.transmit(bytes.fromhex("00C0000010")) == (b"", 0x6985)


def test_a_malformed_apdu_is_refused_before_it_is_sent(session):
    with pytest.raises(TransmitFailed, match="not a command APDU"):
        session.transmit(bytes.fromhex("00A4040005A000"))
    assert session.transmit(select(TEST_AID))[1] == 0x9000


def test_a_closed_session_refuses_to_transmit(session):
    session.close()
    with pytest.raises(TransmitFailed, match="closed"):
        session.transmit(select(TEST_AID))


def test_many_exchanges_in_a_row(reader, insert_card):
    insert_card(EchoApplication())
    with reader.wait_for_card(timeout=10) as session:
        for i in range(200):
            payload = i.to_bytes(2, "big") * 8
            assert session.transmit(command(0x00, 0xDA, 0, 0, payload, le=0)) == (payload, 0x9000)
