"""The SM2 key envelope for remote key download: happy path and every refusal."""
import pytest
from hypothesis import given, settings, strategies as st

from keys import envelope
from keys.envelope import ReplayGuard, open_envelope, seal
from keys.errors import EnvelopeError
from keys.model import Key, KeyUsage
from keys.sm2 import SM2PrivateKey

HOST = SM2PrivateKey.generate()
DEVICE = SM2PrivateKey.generate()
NOW = 1_800_000_000.0


def _seal(key=None, tid="T0000001", **kw):
    kw.setdefault("now", NOW)
    return seal(HOST, DEVICE.public_key, tid, key or Key.generate("SM4", "TMK", version=1), **kw)


def _open(env, tid="T0000001", **kw):
    kw.setdefault("now", NOW + 1)
    return open_envelope(DEVICE, HOST.public_key, env, tid, **kw)


@settings(max_examples=25, deadline=None)
@given(alg=st.sampled_from(["SM4", "TDES", "AES"]), usage=st.sampled_from([KeyUsage.TMK, KeyUsage.TPK, KeyUsage.TAK]),
       version=st.integers(0, 0xFFFF), tid=st.text("ABCDEFGH0123456789", min_size=1, max_size=16))
def test_round_trip(alg, usage, version, tid):
    key = Key.generate(alg, usage, version)
    got = _open(_seal(key, tid), tid)
    assert got == key and got.usage is usage and got.version == version


def test_answer_to_the_terminals_challenge_is_accepted_and_other_nonces_refused():
    nonce = bytes(range(16))
    env = _seal(nonce=nonce)
    assert _open(env, expected_nonce=nonce).usage is KeyUsage.TMK
    with pytest.raises(EnvelopeError, match="challenge"):
        _open(env, expected_nonce=bytes(16))


def test_replayed_envelope_is_refused():
    guard = ReplayGuard()
    env = _seal(Key.generate("SM4", "TMK", version=4))
    _open(env, guard=guard)
    with pytest.raises(EnvelopeError, match="replayed"):
        _open(env, guard=guard)


def test_older_key_version_is_refused_even_with_a_fresh_nonce():
    guard = ReplayGuard()
    _open(_seal(Key.generate("SM4", "TMK", version=5)), guard=guard)
    with pytest.raises(EnvelopeError, match="not newer than v5"):
        _open(_seal(Key.generate("SM4", "TMK", version=5)), guard=guard)
    assert _open(_seal(Key.generate("SM4", "TMK", version=6)), guard=guard).version == 6


def test_envelope_for_another_terminal_is_refused():
    with pytest.raises(EnvelopeError, match="another terminal"):
        _open(_seal(tid="T0000002"), tid="T0000001")


def test_stale_and_future_envelopes_are_refused():
    env = _seal()
    with pytest.raises(EnvelopeError, match="stale"):
        _open(env, now=NOW + 301)
    with pytest.raises(EnvelopeError, match="future"):
        _open(env, now=NOW - 60)


def test_forged_signature_is_refused():
    forger = SM2PrivateKey.generate()
    env = seal(forger, DEVICE.public_key, "T0000001", Key.generate("SM4", "TMK"), now=NOW)
    with pytest.raises(EnvelopeError, match="signature"):
        _open(env)


def test_every_tampered_byte_is_refused():
    env = _seal()
    for i in range(0, len(env), 3):
        bad = bytearray(env)
        bad[i] ^= 0x01
        with pytest.raises(EnvelopeError):
            _open(bytes(bad))


def test_envelope_for_another_device_key_does_not_open():
    other = SM2PrivateKey.generate()
    env = seal(HOST, other.public_key, "T0000001", Key.generate("SM4", "TMK"), now=NOW)
    with pytest.raises(EnvelopeError, match="does not decrypt"):
        _open(env)


@pytest.mark.parametrize("cut", [0, 3, 10, 40, -1, -65])
def test_truncated_envelopes_are_refused(cut):
    env = _seal()
    with pytest.raises(EnvelopeError):
        _open(env[:cut] if cut else b"")


def test_parse_reads_the_header_without_the_key():
    key = Key.generate("SM4", "TMK", version=7)
    header, ciphertext, _, _ = envelope.parse(_seal(key))
    assert (header.terminal_id, header.usage, header.version, header.kcv) == ("T0000001", KeyUsage.TMK, 7, key.kcv)
    assert key.material not in ciphertext
