"""Pure APDU helpers: Le re-issue for 6Cxx and GET RESPONSE for 61xx."""
import pytest

from hardware.apdu import ApduFormatError, apdu_case, command, get_response, split_response, with_le


@pytest.mark.parametrize(
    "apdu, case, extended",
    [
        ("80120020", 1, False),
        ("8012002000", 2, False),
        ("00A4040002A000", 3, False),
        ("00A4040002A00000", 4, False),
        ("00B0000000FFFF", 2, True),
        ("00D60000000002AABB", 3, True),
        ("00D60000000002AABB0000", 4, True),
    ],
)
def test_apdu_case_is_read_from_the_length_fields(apdu, case, extended):
    assert apdu_case(bytes.fromhex(apdu)) == (case, extended)


def test_a_truncated_apdu_is_refused_with_its_length():
    with pytest.raises(ApduFormatError, match="Lc=5"):
        apdu_case(bytes.fromhex("00A4040005A000"))
    with pytest.raises(ApduFormatError, match="4 header bytes"):
        apdu_case(b"\x00\xA4")


@pytest.mark.parametrize(
    "apdu, le, expected",
    [
        ("80120020", 0x20, "8012002020"),  # case 1: Le appended
        ("8012002000", 0x20, "8012002020"),  # case 2: Le replaced
        ("00A4040002A000", 0x10, "00A4040002A00010"),  # case 3: Le appended
        ("00A4040002A00000", 0x10, "00A4040002A00010"),  # case 4: Le replaced
        ("00B0000000FFFF", 0x10, "00B00000000010"),  # extended case 2: 2-byte Le
        ("00D60000000002AABB", 0x10, "00D60000000002AABB0010"),
    ],
)
def test_le_is_set_for_a_6c_reissue(apdu, le, expected):
    assert with_le(bytes.fromhex(apdu), le).hex().upper() == expected


def test_get_response_keeps_the_logical_channel_only():
    assert get_response(0x00, 0x10) == bytes.fromhex("00C0000010")
    assert get_response(0x80, 0x00) == bytes.fromhex("00C0000000")  # proprietary class, channel 0
    assert get_response(0x0D, 0x05) == bytes.fromhex("01C0000005")  # SM bits dropped, channel 1
    assert get_response(0x62, 0x05) == bytes.fromhex("42C0000005")  # further interindustry class


def test_split_response_needs_a_status_word():
    assert split_response(bytes.fromhex("01029000")) == (b"\x01\x02", 0x9000)
    with pytest.raises(ApduFormatError, match="status word"):
        split_response(b"\x90")


def test_command_builds_short_apdus():
    assert command(0x00, 0xA4, 0x04, 0x00, bytes.fromhex("A0000000031010"), le=0) == bytes.fromhex(
        "00A4040007A000000003101000"
    )
    assert command(0x00, 0xB0, 0, 0, le=256) == bytes.fromhex("00B0000000")
    with pytest.raises(ApduFormatError):
        command(0, 0, 0, 0, bytes(256))
