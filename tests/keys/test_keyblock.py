"""Typed keys and SM4 key blocks: binding, integrity, usage checks."""
import pickle

import pytest
from hypothesis import given, strategies as st

from keys import keyblock
from keys.errors import InvalidKey, KeyBlockError, KeyUsageError
from keys.model import Key, KeyAlgorithm, KeyUsage

TMK = Key("SM4", "TMK", bytes.fromhex("0123456789abcdeffedcba9876543210"))


def test_key_repr_shows_binding_and_kcv_only():
    k = Key("SM4", "TPK", bytes.fromhex("00112233445566778899aabbccddeeff"), version=3)
    text = repr(k) + str(k) + f"{k}" + repr([k])
    assert "SM4" in text and "TPK" in text and "v3" in text and k.kcv in text
    assert "00112233" not in text.lower() and "8899aabb" not in text.lower()


def test_keys_refuse_pickling_so_they_cannot_leak_into_caches_or_queues():
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(TMK)


def test_key_validation():
    with pytest.raises(InvalidKey, match="SM4 TPK key must be 16 bytes"):
        Key("SM4", "TPK", bytes(8))
    with pytest.raises(InvalidKey, match="version"):
        Key("SM4", "TPK", bytes(16), version=70000)
    with pytest.raises(ValueError):
        Key("SM4", "NOT_A_USAGE", bytes(16))


def test_require_refuses_other_usages():
    tak = Key.generate("SM4", "TAK")
    assert tak.require(KeyUsage.TAK, KeyUsage.ZAK) is tak
    with pytest.raises(KeyUsageError, match="TAK v1 presented where TPK is required"):
        tak.require(KeyUsage.TPK)


@given(alg=st.sampled_from([KeyAlgorithm.SM4, KeyAlgorithm.TDES, KeyAlgorithm.AES]),
       usage=st.sampled_from(list(KeyUsage)), version=st.integers(0, 0xFFFF), data=st.data())
def test_key_block_round_trip(alg, usage, version, data):
    material = data.draw(st.sampled_from(alg.key_sizes).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
    key = Key(alg, usage, material, version)
    block = keyblock.wrap(TMK, key)
    assert len(block) == keyblock.TOTAL_LEN and block.isascii()
    assert material.hex().upper() not in block
    back = keyblock.unwrap(TMK, block, usage)
    assert back == key and back.version == version and back.usage is usage and back.algorithm is alg


def test_sm2_private_keys_travel_in_key_blocks_too():
    key = Key("SM2", "SIGN", bytes(range(1, 33)))
    assert keyblock.unwrap(TMK, keyblock.wrap(TMK, key), KeyUsage.SIGN) == key


def test_every_header_and_body_change_is_detected():
    block = keyblock.wrap(TMK, Key.generate("SM4", "TPK", version=5))
    for i in range(len(block)):
        c = block[i]
        replacement = "0" if c != "0" else "1"
        tampered = block[:i] + replacement + block[i + 1 :]
        with pytest.raises((KeyBlockError, KeyUsageError)):
            keyblock.unwrap(TMK, tampered, KeyUsage.TPK)


def test_relabelling_the_usage_breaks_integrity():
    block = keyblock.wrap(TMK, Key.generate("SM4", "TPK"))
    as_tak = block[:5] + KeyUsage.TAK.code + block[7:]
    with pytest.raises(KeyBlockError, match="integrity"):
        keyblock.unwrap(TMK, as_tak)


def test_key_for_the_wrong_usage_is_refused():
    block = keyblock.wrap(TMK, Key.generate("SM4", "TAK"))
    with pytest.raises(KeyUsageError, match="TPK"):
        keyblock.unwrap(TMK, block, KeyUsage.TPK)


def test_unwrapping_under_another_key_fails_cleanly():
    block = keyblock.wrap(TMK, Key.generate("SM4", "TDK"))
    with pytest.raises(KeyBlockError, match="integrity check failed"):
        keyblock.unwrap(Key.generate("SM4", "TMK"), block)


def test_only_key_encryption_keys_may_wrap():
    with pytest.raises(KeyUsageError, match="may not wrap"):
        keyblock.wrap(Key.generate("SM4", "TPK"), Key.generate("SM4", "TAK"))
    with pytest.raises(KeyUsageError, match="must be SM4"):
        keyblock.wrap(Key.generate("AES", "ZMK"), Key.generate("SM4", "TAK"))


@pytest.mark.parametrize("bad", ["", "S0144", "X" * keyblock.TOTAL_LEN, "S0144P0SN0001E00" + "Z" * 128,
                                 "S9999P0SN0001E00" + "0" * 128, "S0144P0QN0001E00" + "0" * 128])
def test_malformed_blocks_are_refused(bad):
    with pytest.raises(KeyBlockError):
        keyblock.unwrap(TMK, bad)


def test_peek_header_reads_the_binding():
    h = keyblock.peek_header(keyblock.wrap(TMK, Key.generate("TDES", "ZPK", version=9), exportable=False))
    assert (h.usage, h.algorithm, h.version, h.exportable) == (KeyUsage.ZPK, KeyAlgorithm.TDES, 9, False)
