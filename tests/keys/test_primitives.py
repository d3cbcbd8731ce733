"""Published vectors for SM4, SM3, HMAC-SM3, SM4 modes, AES/3DES and key check values."""
import pytest
from Crypto.Cipher import AES, DES3
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings, strategies as st

from keys.errors import DecryptionError, InvalidKey
from keys.hashes import hmac_sm3, hmac_sm3_verify, sm3
from keys.mac import CBCMAC
from keys.symmetric import (Algorithm, BlockCipher, aes_gcm_decrypt, aes_gcm_encrypt, open_field, pad_iso9797_m2,
                            seal_field, sm4_gcm_decrypt, sm4_gcm_encrypt, unpad_iso9797_m2)
from tests.keys import oracle
from tests.keys.threads import run_in_threads

GB_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")


def test_sm4_gb_t_32907_single_block():
    assert BlockCipher("SM4", GB_KEY).encrypt_ecb(GB_KEY).hex() == "681edf34d206965e86b3e94f536e4246"


def test_sm4_gb_t_32907_one_million_iterations():
    c = BlockCipher("SM4", GB_KEY)
    block = GB_KEY
    for _ in range(1_000_000):
        block = c.encrypt_ecb(block)
    assert block.hex() == "595298c7c6fd271f0402f804c33d3f66"


def test_sm4_decrypt_inverts_the_standard_vector():
    c = BlockCipher("SM4", GB_KEY)
    assert c.decrypt_ecb(bytes.fromhex("681edf34d206965e86b3e94f536e4246")) == GB_KEY


def test_sm3_abc_and_the_64_byte_vector():
    assert sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    # GB/T 32905 example 2: "abcd" x 16
    assert sm3(b"abcd" * 16).hex() == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


@given(st.binary(max_size=200), st.binary(min_size=1, max_size=100))
def test_hmac_sm3_matches_the_rfc2104_construction_over_gmssl_sm3(data, key):
    tag = hmac_sm3(key, data)
    assert tag == oracle.hmac_sm3(key, data)
    assert hmac_sm3_verify(key, data, tag)
    assert not hmac_sm3_verify(key, data + b"x", tag)


def test_sm4_gcm_rfc8998_vector_and_tamper():
    key = GB_KEY
    iv = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    pt = bytes.fromhex("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
                       "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA")
    ct = sm4_gcm_encrypt(key, iv, pt, aad)
    assert ct.hex().upper() == (
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
        "83DE3541E4C2B58177E065A9BF7B62EC")
    assert sm4_gcm_decrypt(key, iv, ct, aad) == pt
    for i in (0, len(ct) - 1):
        bad = bytearray(ct)
        bad[i] ^= 1
        with pytest.raises(DecryptionError):
            sm4_gcm_decrypt(key, iv, bytes(bad), aad)
    with pytest.raises(DecryptionError):
        sm4_gcm_decrypt(key, iv, ct, aad + b"!")
    with pytest.raises(DecryptionError):
        sm4_gcm_decrypt(key, iv, ct[:10], aad)


@given(st.binary(min_size=0, max_size=8).map(lambda b: b * 16))
def test_sm4_cbc_matches_block_by_block_gmssl(data):
    iv = bytes(range(16))
    ours = BlockCipher("SM4", GB_KEY).encrypt_cbc(data, iv)
    h, expect = iv, b""
    for i in range(0, len(data), 16):
        h = oracle.sm4_ecb_block(GB_KEY, oracle.xor(h, data[i : i + 16]))
        expect += h
    assert ours == expect
    assert BlockCipher("SM4", GB_KEY).decrypt_cbc(ours, iv) == data


def test_sm4_ctr_keystream_is_encrypted_counters():
    c = BlockCipher("SM4", GB_KEY)
    counter = bytes(15) + b"\xfe"
    data = bytes(range(40))
    ks = b"".join(oracle.sm4_ecb_block(GB_KEY, (int.from_bytes(counter) + i).to_bytes(16)) for i in range(3))
    assert c.crypt_ctr(data, counter) == oracle.xor(data, ks)
    assert c.crypt_ctr(c.crypt_ctr(data, counter), counter) == data


def test_aes_fips197_and_tdes_against_pycryptodome_directly():
    key = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    assert BlockCipher("AES", key).encrypt_ecb(bytes.fromhex("00112233445566778899aabbccddeeff")).hex() == \
        "69c4e0d86a7b0430d8cdb78070b4c55a"
    tk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    assert BlockCipher("TDES", tk).encrypt_ecb(b"12345678") == DES3.new(tk, DES3.MODE_ECB).encrypt(b"12345678")
    iv = bytes(range(16))
    assert BlockCipher("AES", key).encrypt_cbc(bytes(32), iv) == AES.new(key, AES.MODE_CBC, iv=iv).encrypt(bytes(32))


def test_aes_gcm_round_trip_and_tamper():
    key, nonce = bytes(16), bytes(12)
    ct = aes_gcm_encrypt(key, nonce, b"hello", b"aad")
    assert aes_gcm_decrypt(key, nonce, ct, b"aad") == b"hello"
    with pytest.raises(DecryptionError):
        aes_gcm_decrypt(key, nonce, ct[:-1] + bytes([ct[-1] ^ 1]), b"aad")


def test_key_check_values():
    # SM4: first bytes of SM4(key, zero block), checked against gmssl's SM4
    assert BlockCipher("SM4", GB_KEY).kcv(4) == oracle.sm4_ecb_block(GB_KEY, bytes(16))[:4]
    # 3DES: the classic check value of the 0123..EF FEDC..10 key is 08D7B4
    assert BlockCipher("TDES", bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")).kcv().hex().upper() == "08D7B4"
    aes = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    assert BlockCipher("AES", aes).kcv() == AES.new(aes, AES.MODE_ECB).encrypt(bytes(16))[:3]


def test_single_length_des_keys_work_as_tdes():
    k = bytes.fromhex("0123456789ABCDEF")
    from Crypto.Cipher import DES
    assert BlockCipher("TDES", k + k).encrypt_ecb(bytes(8)) == DES.new(k, DES.MODE_ECB).encrypt(bytes(8))


@pytest.mark.parametrize("alg,length", [("SM4", 15), ("SM4", 32), ("TDES", 8), ("AES", 20)])
def test_wrong_key_lengths_are_refused(alg, length):
    with pytest.raises(InvalidKey, match="must be"):
        BlockCipher(alg, bytes(length))


def test_partial_blocks_are_refused():
    with pytest.raises(DecryptionError, match="multiple of 16"):
        BlockCipher("SM4", GB_KEY).decrypt_ecb(bytes(15))


@given(st.binary(max_size=100), st.sampled_from([8, 16]))
def test_iso9797_padding_method_2_round_trip(data, block):
    padded = pad_iso9797_m2(data, block)
    assert len(padded) % block == 0 and len(padded) > len(data)
    assert unpad_iso9797_m2(padded) == data


def _padded_as_written_out(data: bytes, block: int) -> bytes:
    """Method 2 padding as keys/symmetric.py wrote it before its table of tails (the old path)."""
    return data + b"\x80" + bytes(-(len(data) + 1) % block)


@given(st.binary(max_size=70) | st.binary(max_size=70).map(bytearray), st.integers(1, 33))
def test_padding_from_the_table_equals_the_padding_written_out(data, block):
    padded = pad_iso9797_m2(data, block)
    assert padded == _padded_as_written_out(data, block) and type(padded) is type(data)


def test_block_cipher_repr_hides_the_key():
    assert "0123" not in repr(BlockCipher(Algorithm.SM4, GB_KEY)).lower()


# --- SM4-CBC on running contexts (keys/symmetric.py) -----------------------------------
_RUNNING = BlockCipher("SM4", bytes(range(16)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.binary(min_size=16, max_size=16), st.booleans(),
                          st.binary(min_size=96, max_size=96)), min_size=1, max_size=12))
def test_running_sm4_cbc_equals_a_fresh_context_for_every_call(calls):
    # interleaved encryptions and decryptions of any length and IV, on one long-lived cipher
    key = bytes(range(16))
    for blocks, iv, encrypt, material in calls:
        data = material[: blocks * 16]
        fresh = Cipher(algorithms.SM4(key), modes.CBC(iv))
        if encrypt:
            ctx = fresh.encryptor()
            assert _RUNNING.encrypt_cbc(data, iv) == ctx.update(data) + ctx.finalize()
        else:
            ctx = fresh.decryptor()
            assert _RUNNING.decrypt_cbc(data, iv) == ctx.update(data) + ctx.finalize()


def _fresh(key: bytes, iv: bytes, encrypt: bool):
    c = Cipher(algorithms.SM4(key), modes.CBC(iv))
    return c.encryptor() if encrypt else c.decryptor()


def _sealed_on_a_fresh_context(key: bytes, data: bytes, iv: bytes) -> bytes:
    """seal_field's old path: IV || SM4-CBC(padding method 2) on a context of its own."""
    ctx = _fresh(key, iv, True)
    return iv + ctx.update(_padded_as_written_out(data, 16)) + ctx.finalize()


def _opened_on_a_fresh_context(key: bytes, sealed: bytes) -> bytes:
    """open_field's old path: decrypt after the IV on a context of its own, then unpad the plaintext."""
    ctx = _fresh(key, sealed[:16], False)
    return unpad_iso9797_m2(ctx.update(sealed[16:]) + ctx.finalize())


_MESSAGES = st.binary(max_size=80)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=16, max_size=16),
       st.lists(st.tuples(st.sampled_from(["seal", "seal with iv", "open", "encrypt", "decrypt"]),
                          st.binary(min_size=16, max_size=16), _MESSAGES), min_size=1, max_size=12))
def test_sealing_and_opening_on_one_long_lived_cipher_equal_fresh_contexts(key, calls):
    # every SM4 fast path of one cipher interleaved, each result checked against the old path
    cipher = BlockCipher("SM4", key)
    for op, iv, data in calls:
        whole = data[: len(data) // 16 * 16]
        if op == "seal":  # the IV is the cipher's own choice; what follows it is CBC under that IV
            sealed = seal_field(cipher, data)
            assert sealed == _sealed_on_a_fresh_context(key, data, sealed[:16])
            assert _opened_on_a_fresh_context(key, sealed) == data
        elif op == "seal with iv":
            assert seal_field(cipher, data, iv) == _sealed_on_a_fresh_context(key, data, iv)
        elif op == "open":
            assert open_field(cipher, _sealed_on_a_fresh_context(key, data, iv)) == data
        elif op == "encrypt":
            ctx = _fresh(key, iv, True)
            assert cipher.encrypt_cbc(whole, iv) == ctx.update(whole) + ctx.finalize()
        else:
            ctx = _fresh(key, iv, False)
            assert cipher.decrypt_cbc(whole, iv) == ctx.update(whole) + ctx.finalize()


# plaintexts whose padding is good, bad in each way, or missing altogether (all zeros)
_PLAINTEXTS = st.one_of(
    st.binary(min_size=16, max_size=64).map(lambda b: b[: len(b) // 16 * 16]),
    st.tuples(st.binary(max_size=40), st.sampled_from([b"\x80", b"\x81", b"\x00", b""]), st.integers(0, 20)).map(
        lambda t: t[0] + t[1] + bytes(t[2])).filter(lambda b: b and len(b) % 16 == 0),
    st.integers(1, 4).map(lambda n: bytes(16 * n)),
)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16), _PLAINTEXTS)
def test_opening_any_sealed_field_gives_what_the_old_path_gave_or_the_same_refusal(key, iv, plaintext):
    ctx = _fresh(key, iv, True)
    sealed = iv + ctx.update(plaintext) + ctx.finalize()
    try:
        expected = _opened_on_a_fresh_context(key, sealed)
    except DecryptionError:
        with pytest.raises(DecryptionError, match="padding"):
            open_field(BlockCipher("SM4", key), sealed)
    else:
        assert open_field(BlockCipher("SM4", key), sealed) == expected


def test_sealed_ivs_are_fresh_and_differ_for_equal_fields():
    cipher = BlockCipher("SM4", GB_KEY)
    ivs = {seal_field(cipher, b"6212345678901234D3012")[:16] for _ in range(200)}
    assert len(ivs) == 200


def test_threads_sharing_one_cipher_and_mac_each_get_their_own_results():
    # the running contexts are shared state: worker threads and the event loop use the same keys
    key = bytes(range(32, 48))
    cipher = BlockCipher("SM4", key)
    mac = CBCMAC(cipher, 2, 8)

    def work(seed: int) -> None:
        for i in range(300):
            data = bytes((seed * 31 + i + j) % 256 for j in range(i % 70))
            iv = bytes((seed + i + j) % 256 for j in range(16))
            sealed = seal_field(cipher, data)
            assert sealed == _sealed_on_a_fresh_context(key, data, sealed[:16])
            assert open_field(cipher, _sealed_on_a_fresh_context(key, data, iv)) == data
            assert mac.mac(data) == oracle.sm4_cbc_mac(key, data)[:8]

    run_in_threads(work)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_sm4_cbc_mac_in_one_call_equals_the_block_by_block_chain(data):
    cipher = BlockCipher("SM4", bytes(range(16, 32)))
    padded = data + b"\x80" + bytes(-(len(data) + 1) % 16)
    h = bytes(16)
    for i in range(0, len(padded), 16):
        h = cipher.encrypt_ecb(bytes(x ^ y for x, y in zip(h, padded[i:i + 16])))
    assert CBCMAC(cipher, 2, 8).mac(data) == h[:8]


def test_sm3_matches_cryptography_and_keyed_hmac_matches_hmac_sm3():
    from keys.hashes import HMACSM3, _cryptography_sm3

    for data in (b"", b"abc", bytes(range(256)) * 3):
        assert sm3(data) == _cryptography_sm3(data)
    keyed = HMACSM3(b"k" * 16)
    for data in (b"6212345678901234", b"", b"6212345678901234"):  # the keyed state is copied, never used up
        assert keyed.digest(data) == hmac_sm3(b"k" * 16, data)
    assert "k" * 16 not in repr(keyed)
