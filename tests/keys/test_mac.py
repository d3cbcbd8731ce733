"""MAC algorithms: fixed vectors (also written in docs/crypto.md) and independent oracles."""
import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES  # noqa: F401  (available for pyemv)
from hypothesis import given, settings, strategies as st

from keys.errors import InvalidKey, MACError
from keys.mac import CBCMAC, cbc_mac, cmac, cup_ecb_mac, single_des_cipher, sm4_cbc_mac, x919_mac
from keys.symmetric import BlockCipher
from tests.keys import oracle

K16 = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
MSG40 = bytes(range(40))
MSG64 = bytes(range(64))


def test_sm4_cbc_mac_vector_and_oracle():
    assert sm4_cbc_mac(K16, MSG64).hex().upper() == "9B928425EA63980DE66EFF136EF82D9C"
    assert sm4_cbc_mac(K16, MSG64) == oracle.sm4_cbc_mac(K16, MSG64)


@given(st.binary(max_size=300))
def test_sm4_cbc_mac_matches_oracle_and_truncates(data):
    m = CBCMAC(BlockCipher("SM4", K16), padding=2, length=8)
    assert m.mac(data) == oracle.sm4_cbc_mac(K16, data)[:8]
    m.verify(data, m.mac(data))


def test_cbc_mac_padding_method_1_pads_with_zeros_only():
    c = BlockCipher("SM4", K16)
    assert cbc_mac(c, b"abc", padding=1) == cbc_mac(c, b"abc" + bytes(13), padding=1)
    assert cbc_mac(c, b"abc", padding=2) != cbc_mac(c, b"abc" + bytes(13), padding=2)
    with pytest.raises(ValueError):
        cbc_mac(c, b"abc", padding=3)


def test_tampered_mac_is_refused():
    m = CBCMAC(BlockCipher("SM4", K16), length=8)
    tag = m.mac(MSG64)
    with pytest.raises(MACError):
        m.verify(MSG64[:-1] + b"\xff", tag)
    with pytest.raises(MACError):
        m.verify(MSG64, bytes([tag[0] ^ 1]) + tag[1:])


def test_aes_cmac_rfc4493_vectors():
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    assert cmac("AES", key, b"").hex() == "bb1d6929e95937287fa37d129b756746"
    assert cmac("AES", key, bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")).hex() == \
        "070a16b46b4d4144f79bdd9dd04a287c"


@given(st.binary(max_size=80))
def test_sm4_cmac_matches_sp800_38b_oracle(data):
    assert cmac("SM4", K16, data) == oracle.sm4_cmac(K16, data)


def test_cmac_refuses_tdes_and_bad_lengths():
    with pytest.raises(InvalidKey):
        cmac("TDES", K16, b"x")
    with pytest.raises(InvalidKey):
        cmac("SM4", bytes(8), b"x")


def test_x919_matches_iso9797_alg3_from_pyemv():
    from pyemv.mac import mac_iso9797_3

    data = bytes.fromhex("1234567890ABCDEF") * 3 + b"\x01"
    for padding in (1, 2):
        ours = x919_mac(K16, data, padding=padding)
        # pyemv takes two DES keys as double-length 3DES keys; K||K is single DES
        assert ours == mac_iso9797_3(K16[:8] * 2, K16[8:] * 2, data, padding=padding)
    assert x919_mac(K16, MSG40).hex().upper() == "317CC83A72AD718F"


def _cup_ecb_reference(encrypt, block: int, data: bytes) -> bytes:
    """The UnionPay steps, spelled out: pad, XOR-fold, hex, E(A), XOR B, E, hex, first 8."""
    data = data + bytes(-len(data) % block)
    r = bytes(block)
    for i in range(0, len(data), block):
        r = oracle.xor(r, data[i : i + block])
    h = r.hex().upper().encode()
    c = encrypt(h[:block])
    c = encrypt(oracle.xor(c, h[block:]))
    return c.hex().upper().encode()[:8]


def test_cup_ecb_mac_des_form():
    des_key = K16[:8]
    ours = cup_ecb_mac(single_des_cipher(des_key), MSG40)
    assert ours == _cup_ecb_reference(lambda b: oracle.des_ecb(des_key, b), 8, MSG40)
    assert ours == b"BDA342F5"
    assert cup_ecb_mac(BlockCipher("TDES", K16), MSG40) == b"AB1FADC9"


def test_cup_ecb_mac_sm4_form():
    ours = cup_ecb_mac(BlockCipher("SM4", K16), MSG40)
    assert ours == _cup_ecb_reference(lambda b: oracle.sm4_ecb_block(K16, b), 16, MSG40)
    assert ours == b"31A90AFA"


def test_single_des_cipher_refuses_other_lengths():
    with pytest.raises(InvalidKey):
        single_des_cipher(bytes(16))


def test_one_sm4_cbcmac_kept_across_messages_matches_the_oracle_each_time():
    """CBCMAC runs every MAC on one never-finalised CBC chain: each result must still be
    the MAC of its message alone, whatever came before (lengths 0 to 3 blocks and more)."""
    cipher = BlockCipher("SM4", K16)
    m = CBCMAC(cipher, padding=2, length=16)
    for n in (0, 1, 15, 16, 17, 64, 230, 3, 31, 32, 33):
        data = bytes((i * 7 + n) % 256 for i in range(n))
        assert m.mac(data) == oracle.sm4_cbc_mac(K16, data)
        cipher.encrypt_cbc(bytes(32))  # the key's own CBC chain is a separate one


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.lists(st.binary(max_size=300), min_size=1, max_size=8),
       st.sampled_from([4, 8, 16]))
def test_one_kept_sm4_cbcmac_equals_the_block_by_block_chain_for_random_keys(key, messages, length):
    # the chain is reset by one block in front of each message (keys/mac.py): any key, any run of messages
    cipher = BlockCipher("SM4", key)
    m = CBCMAC(cipher, padding=2, length=length)
    for data in messages:
        assert m.mac(data) == oracle.sm4_cbc_mac(key, data)[:length]
        cipher.encrypt_cbc(bytes(16))  # the cipher's own chains are separate ones
