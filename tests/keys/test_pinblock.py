"""PIN blocks: ISO 9564 format 0 (3DES), the 16-byte SM4 form, format 4 (AES)."""
import pytest
from Crypto.Cipher import AES, DES3
from hypothesis import given, strategies as st

from keys.errors import PinBlockError
from keys.pinblock import PinBlockFormat, decrypt_pin_block, encrypt_pin_block, pan_field, pin_field
from keys.symmetric import BlockCipher
from tests.keys import oracle

TDES_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
SM4_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")
AES_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
PAN = "6228480402564890018"  # test PAN; its 12 digits left of the check digit: 040256489001
CIPHERS = {
    PinBlockFormat.ISO0: BlockCipher("TDES", TDES_KEY),
    PinBlockFormat.SM4: BlockCipher("SM4", SM4_KEY),
    PinBlockFormat.ISO4: BlockCipher("AES", AES_KEY),
}


def test_format0_fields_and_encryption():
    assert pin_field(PinBlockFormat.ISO0, "1234").hex().upper() == "041234FFFFFFFFFF"
    assert pan_field(PinBlockFormat.ISO0, PAN).hex().upper() == "0000040256489001"
    clear = bytes.fromhex("041234FFFFFFFFFF")
    clear = oracle.xor(clear, bytes.fromhex("0000040256489001"))
    assert clear.hex().upper() == "041230FDA9B76FFE"
    expected = DES3.new(TDES_KEY, DES3.MODE_ECB).encrypt(clear)
    assert encrypt_pin_block("ISO-0", CIPHERS[PinBlockFormat.ISO0], "1234", PAN) == expected


def test_sm4_form_fields_and_encryption():
    assert pin_field(PinBlockFormat.SM4, "123456").hex().upper() == "06123456" + "F" * 24
    assert pan_field(PinBlockFormat.SM4, PAN).hex().upper() == "0" * 20 + "040256489001"
    clear = oracle.xor(bytes.fromhex("06123456" + "F" * 24), bytes.fromhex("0" * 20 + "040256489001"))
    expected = oracle.sm4_ecb_block(SM4_KEY, clear)
    assert encrypt_pin_block("SM4", CIPHERS[PinBlockFormat.SM4], "123456", PAN) == expected


def test_format4_published_vector():
    # the example of ISO 9564-1 format 4 in the psec library's documentation
    block = encrypt_pin_block("ISO-4", CIPHERS[PinBlockFormat.ISO4], "1234", "1234567890123456",
                              random_pad=bytes.fromhex("1122334455667788"))
    assert block.hex().upper() == "7CDF645C86CAF763AE34637A66997534"
    assert decrypt_pin_block("ISO-4", CIPHERS[PinBlockFormat.ISO4], block, "1234567890123456") == "1234"


def test_format4_fields_follow_the_standard_layout():
    assert pin_field(PinBlockFormat.ISO4, "12345", bytes(8)).hex().upper() == "4512345AAAAAAAAA" + "0" * 16
    assert pan_field(PinBlockFormat.ISO4, "1234567890123456789").hex().upper() == "71234567890123456789" + "0" * 12
    assert pan_field(PinBlockFormat.ISO4, "12345").hex().upper() == "0000000012345" + "0" * 19
    # the random half makes two encryptions of the same PIN differ
    c = CIPHERS[PinBlockFormat.ISO4]
    assert encrypt_pin_block("ISO-4", c, "1234", PAN) != encrypt_pin_block("ISO-4", c, "1234", PAN)
    inner = AES.new(AES_KEY, AES.MODE_ECB).decrypt(encrypt_pin_block("ISO-4", c, "1234", PAN, bytes(8)))
    assert AES.new(AES_KEY, AES.MODE_ECB).decrypt(oracle.xor(inner, pan_field(PinBlockFormat.ISO4, PAN))) == \
        pin_field(PinBlockFormat.ISO4, "1234", bytes(8))


@given(pin=st.text("0123456789", min_size=4, max_size=12),
       pan=st.text("0123456789", min_size=13, max_size=19),
       fmt=st.sampled_from(list(PinBlockFormat)))
def test_round_trip_every_format(pin, pan, fmt):
    block = encrypt_pin_block(fmt, CIPHERS[fmt], pin, pan)
    assert len(block) == (8 if fmt is PinBlockFormat.ISO0 else 16)
    assert decrypt_pin_block(fmt, CIPHERS[fmt], block, pan) == pin


@pytest.mark.parametrize("pin", ["123", "1234567890123", "12a4", "", "１２３４", " 1234", None])
def test_bad_pins_are_refused_without_echoing_them(pin):
    with pytest.raises(PinBlockError) as err:
        encrypt_pin_block("SM4", CIPHERS[PinBlockFormat.SM4], pin, PAN)
    if pin and pin.strip():
        assert pin.strip() not in str(err.value)


@pytest.mark.parametrize("pan", ["123456789012", "12345678901234567890", "62284804025648900x"])
def test_bad_pans_are_refused(pan):
    with pytest.raises(PinBlockError, match="PAN"):
        encrypt_pin_block("ISO-0", CIPHERS[PinBlockFormat.ISO0], "1234", pan)


@pytest.mark.parametrize("fmt", list(PinBlockFormat))
def test_wrong_key_or_pan_gives_a_clear_error(fmt):
    block = encrypt_pin_block(fmt, CIPHERS[fmt], "1234", PAN)
    other = BlockCipher(CIPHERS[fmt].algorithm, bytes(range(len(AES_KEY if fmt is PinBlockFormat.ISO4 else SM4_KEY))))
    with pytest.raises(PinBlockError, match="wrong key, PAN or format"):
        decrypt_pin_block(fmt, other, block, PAN)


def test_tampered_block_is_refused():
    c = CIPHERS[PinBlockFormat.SM4]
    block = bytearray(encrypt_pin_block("SM4", c, "1234", PAN))
    block[3] ^= 0x40
    with pytest.raises(PinBlockError):
        decrypt_pin_block("SM4", c, bytes(block), PAN)


def test_format_and_key_algorithm_must_agree():
    with pytest.raises(PinBlockError, match="need a TDES key"):
        encrypt_pin_block("ISO-0", CIPHERS[PinBlockFormat.SM4], "1234", PAN)
    with pytest.raises(PinBlockError, match="must be 16 bytes"):
        decrypt_pin_block("SM4", CIPHERS[PinBlockFormat.SM4], bytes(8), PAN)
