"""keys.emv: EMV 3DES checked against pyemv 1.5.0, PBOC SM4 against a from-scratch SM4 oracle."""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings, strategies as st
from pyemv import ac as pyemv_ac, kd as pyemv_kd

from keys import emv
from keys.emv import CardFamily as F
from keys.errors import CryptoError, InvalidKey

# pyemv (the oracle) still calls TripleDES from its deprecated location; that is its business.
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

H = bytes.fromhex
FAST = settings(max_examples=60, deadline=None)

keys16 = st.binary(min_size=16, max_size=16)
# Bias toward keys whose halves match up to parity bits (single DES in disguise).
tdes_keys = keys16 | st.binary(min_size=8, max_size=8).flatmap(
    lambda h: st.integers(0, 255).map(lambda m: h + bytes(b ^ (m >> i & 1) for i, b in enumerate(h))))
pans = st.text("0123456789", min_size=12, max_size=19)
psns = st.text("0123456789", min_size=2, max_size=2)
atcs = st.binary(min_size=2, max_size=2)
datas = st.binary(max_size=80)
families = st.sampled_from(list(F))


# --- EMV 3DES: the examples published in pyemv 1.5.0's docstrings, verbatim ---------------

def test_icc_mk_option_a_pyemv_docstring_examples():
    imk = H("0123456789ABCDEFFEDCBA9876543210")
    assert emv.derive_icc_master_key(F.EMV_TDES, imk, "99012345678901234", "45") == H(
        "67F8292358083E5EA7AB7FDA58D53B6B")
    assert emv.derive_icc_master_key(F.EMV_TDES, imk, "12345678901234567", "01") == H(
        "73AD54688CEF2934B0979857E3C719F1")


def test_common_session_key_pyemv_docstring_example():
    # pyemv: derive_common_sk(mk, R = 001C000000000000)
    mk = H("0123456789ABCDEFFEDCBA9876543210")
    assert emv.derive_session_key(F.EMV_TDES, mk, H("001C")) == H("E9FB384AF807B940FEDCEA613461B0C4")


def test_ac_and_arpc_pyemv_module_docstring_example():
    sk = H("29B33180E567CE38EA4CBC9D753B0E61")
    arqc = emv.generate_ac(F.EMV_TDES, sk, H("0123456789ABCDEF0123456789ABCDEF"))
    assert arqc == H("FA624250B008B59A")
    assert emv.generate_arpc_method1(F.EMV_TDES, sk, arqc, H("0000")) == H("45D4255EEF10C920")


def test_ac_pyemv_generate_ac_docstring_example():
    sk = H("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
    data = H("000000002000" "000000000000" "0124" "0000008000" "0124" "110309" "00"
             "3804823E" "5800" "0001")
    assert emv.generate_ac(F.EMV_TDES, sk, data) == H("3B76CF10FECD8789")
    assert emv.verify_ac(F.EMV_TDES, sk, data, H("3B76CF10FECD8789"))


def test_arpc_pyemv_generate_arpc_1_docstring_example():
    sk = H("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
    assert emv.generate_arpc_method1(F.EMV_TDES, sk, H("1234567890ABCDEF"), H("0000")) == H(
        "F5E6F44147E2F1B0")


def test_full_issuer_chain_pyemv_cvn18_docstring_example():
    # Visa CVN 18 = option B (equal to option A for a 16-digit PAN) + common session key +
    # EMV padding: the same chain as EMV_TDES, so pyemv's published ARQC must come out.
    atc = H("0FFF")
    sk = emv.arqc_session(F.EMV_TDES, H("AA" * 16), "1234567890123456", "00", atc)
    data = H("000000009999" "000000000000" "0840" "8000048000" "0840" "991231" "01"
             "52BF4585" "1800") + atc + H("06011203A0B800")
    assert emv.generate_ac(F.EMV_TDES, sk, data) == H("769577B5ABE9FE62")


# --- EMV 3DES: random cross-checks against pyemv -------------------------------------------

@FAST
@given(imk=tdes_keys, pan=pans, psn=psns, atc=atcs, un=st.none() | st.binary(min_size=4, max_size=4),
       data=datas, arc=atcs)
def test_tdes_chain_matches_pyemv(imk, pan, psn, atc, un, data, arc):
    mk = emv.derive_icc_master_key(F.EMV_TDES, imk, pan, psn)
    assert mk == pyemv_kd.derive_icc_mk_a(imk, pan, psn)
    sk = emv.derive_session_key(F.EMV_TDES, mk, atc, un=un)
    assert sk == pyemv_kd.derive_common_sk(mk, atc + bytes(2) + (un or bytes(4)))
    arqc = emv.generate_ac(F.EMV_TDES, sk, data)
    assert arqc == pyemv_ac.generate_ac(sk, data, pyemv_ac.PaddingType.EMV)
    assert emv.generate_arpc_method1(F.EMV_TDES, sk, arqc, arc) == pyemv_ac.generate_arpc_1(sk, arqc, arc)


# --- PBOC SM4: an independent oracle built only on `cryptography`'s SM4-ECB ----------------

def _sm4(key: bytes, block: bytes) -> bytes:
    e = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return e.update(block) + e.finalize()


def _inv(b: bytes) -> bytes:
    return bytes(x ^ 0xFF for x in b)


def oracle_udk(imk: bytes, pan: str, psn: str) -> bytes:
    y = bytes.fromhex((pan + psn)[-16:].zfill(16))
    return _sm4(imk, y + _inv(y))


def oracle_sk(udk: bytes, atc: bytes) -> bytes:
    return _sm4(udk, bytes(6) + atc + bytes(6) + _inv(atc))


def oracle_mac(sk: bytes, data: bytes) -> bytes:
    m = data + b"\x80" + bytes(-(len(data) + 1) % 16)
    chain = bytes(16)
    for i in range(0, len(m), 16):  # CBC by hand so the oracle shares no mode code with emv.py
        chain = _sm4(sk, bytes(a ^ b for a, b in zip(chain, m[i:i + 16])))
    return chain[:8]


def oracle_arpc(sk: bytes, arqc: bytes, arc: bytes) -> bytes:
    y = bytes(a ^ b for a, b in zip(arqc, arc + bytes(6)))
    return _sm4(sk, y + bytes(8))[:8]


def test_sm4_oracle_is_sm4():
    # GB/T 32907 example, so the oracle itself is known good.
    k = H("0123456789abcdeffedcba9876543210")
    assert _sm4(k, k) == H("681edf34d206965e86b3e94f536e4246")


def test_pboc_sm4_worked_example():
    # Worked example of a UnionPay SM4 card published in "金融ARQC、ARPC验证生成规则"
    # (iteye.com/blog/scjava-2309584); see docs/emv-crypto.md. The PAN is a test PAN.
    imk, pan, psn, atc = H("F23BF4AE92B554C116139D4F67322667"), "6214988660100000304", "00", H("0001")
    data = H("00000000000000000000000001560000000800015616051800412AB4B67D00000103A00000")
    udk = emv.derive_icc_master_key(F.PBOC_SM4, imk, pan, psn)
    assert udk == oracle_udk(imk, pan, psn) == H("016F6E76BD8E6FB4A17C28C4B05E03A8")
    sk = emv.derive_session_key(F.PBOC_SM4, udk, atc)
    assert sk == oracle_sk(udk, atc) == H("9ECF9220F32AE56187D3C2444967FC0E")
    assert emv.arqc_session(F.PBOC_SM4, imk, pan, psn, atc) == sk
    arqc = emv.generate_ac(F.PBOC_SM4, sk, data)
    assert arqc == oracle_mac(sk, data) == H("179E0D01A7D1791D")
    # ARC "00" travels as ASCII; the example's ARQC XOR (ARC || 00*6) is stated there too.
    assert bytes(a ^ b for a, b in zip(arqc, b"00" + bytes(6))) == H("27AE0D01A7D1791D")
    assert emv.generate_arpc_method1(F.PBOC_SM4, sk, arqc, b"00") == oracle_arpc(sk, arqc, b"00")


@FAST
@given(imk=keys16, pan=pans, psn=psns, atc=atcs, data=datas, arc=atcs)
def test_sm4_chain_matches_oracle(imk, pan, psn, atc, data, arc):
    udk = emv.derive_icc_master_key(F.PBOC_SM4, imk, pan, psn)
    assert udk == oracle_udk(imk, pan, psn)
    sk = emv.derive_session_key(F.PBOC_SM4, udk, atc)
    assert sk == oracle_sk(udk, atc)
    arqc = emv.generate_ac(F.PBOC_SM4, sk, data)
    assert arqc == oracle_mac(sk, data)
    assert emv.generate_arpc_method1(F.PBOC_SM4, sk, arqc, arc) == oracle_arpc(sk, arqc, arc)


@FAST
@given(family=families, imk=tdes_keys, pan=pans, psn=psns, atc=atcs, data=datas, arc=atcs, bit=st.integers(0, 63))
def test_card_key_checks_and_answers_as_the_step_by_step_functions(family, imk, pan, psn, atc, data, arc, bit):
    """CardKey (what the HSM keeps per card) gives the ARPC of the published chain, one
    session-key context for both the MAC and the ARPC, and None for any other ARQC."""
    sk = emv.arqc_session(family, imk, pan, psn, atc)
    arqc = emv.generate_ac(family, sk, data)
    card = emv.CardKey(family, imk, pan, psn)
    assert card.check_arqc(atc, data, arqc, arc) == emv.generate_arpc_method1(family, sk, arqc, arc)
    wrong = bytearray(arqc)
    wrong[bit // 8] ^= 1 << bit % 8
    assert card.check_arqc(atc, data, bytes(wrong), arc) is None
    assert card.check_arqc(atc, data, arqc[:7], arc) is None


def test_card_key_on_the_published_examples():
    imk, pan, psn, atc = H("F23BF4AE92B554C116139D4F67322667"), "6214988660100000304", "00", H("0001")
    data = H("00000000000000000000000001560000000800015616051800412AB4B67D00000103A00000")
    arpc = emv.CardKey(F.PBOC_SM4, imk, pan, psn).check_arqc(atc, data, H("179E0D01A7D1791D"), b"00")
    assert arpc == oracle_arpc(H("9ECF9220F32AE56187D3C2444967FC0E"), H("179E0D01A7D1791D"), b"00")
    atc = H("0FFF")  # the Visa CVN 18 chain above
    data = H("000000009999" "000000000000" "0840" "8000048000" "0840" "991231" "01" "52BF4585" "1800") + atc + H(
        "06011203A0B800")
    card = emv.CardKey(F.EMV_TDES, H("AA" * 16), "1234567890123456", "00")
    sk = emv.arqc_session(F.EMV_TDES, H("AA" * 16), "1234567890123456", "00", atc)
    assert card.check_arqc(atc, data, H("769577B5ABE9FE62"), b"00") == pyemv_ac.generate_arpc_1(
        sk, H("769577B5ABE9FE62"), b"00")
    assert "CardKey EMV_TDES" in repr(card) and "AA" not in repr(card)


# --- both families: properties ---------------------------------------------------------------

@FAST
@given(family=families, sk=tdes_keys, data=datas, bit=st.integers(min_value=0))
def test_ac_round_trip_and_tamper(family, sk, data, bit):
    ac = emv.generate_ac(family, sk, data)
    assert len(ac) == 8
    assert emv.verify_ac(family, sk, data, ac)
    flipped_ac = bytearray(ac)
    flipped_ac[bit // 8 % 8] ^= 1 << bit % 8
    assert not emv.verify_ac(family, sk, data, bytes(flipped_ac))
    if data:
        flipped = bytearray(data)
        flipped[bit // 8 % len(data)] ^= 1 << bit % 8
        assert not emv.verify_ac(family, sk, bytes(flipped), ac)
    assert not emv.verify_ac(family, sk, data + b"\x00", ac)  # padding method 2 is unambiguous
    assert not emv.verify_ac(family, sk, data, ac[:4])


@FAST
@given(family=families, sk=tdes_keys, arqc=st.binary(min_size=8, max_size=8), arc1=atcs, arc2=atcs)
def test_arpc_depends_on_arc(family, sk, arqc, arc1, arc2):
    a1 = emv.generate_arpc_method1(family, sk, arqc, arc1)
    assert len(a1) == 8
    assert (a1 == emv.generate_arpc_method1(family, sk, arqc, arc2)) == (arc1 == arc2)


def test_families_differ_and_accept_strings():
    sk, data = H("00112233445566778899AABBCCDDEEFF"), b"transaction"
    assert emv.generate_ac("EMV_TDES", sk, data) != emv.generate_ac("PBOC_SM4", sk, data)


def test_tdes_derived_keys_have_odd_parity():
    mk = emv.derive_icc_master_key(F.EMV_TDES, H("0123456789ABCDEFFEDCBA9876543210"), "4761739001010010")
    sk = emv.derive_session_key(F.EMV_TDES, mk, H("0001"))
    assert all(bin(b).count("1") % 2 for b in mk + sk)


# --- errors ----------------------------------------------------------------------------------

IMK = H("0123456789ABCDEFFEDCBA9876543210")
PAN = "6214988660100000304"


@pytest.mark.parametrize("family", list(F))
@pytest.mark.parametrize("pan", ["62149886601", "62149886601000003041", "6214 988660100000", "62149886601O0000",
                                 "\u0666\u0662\u0661\u0664" * 4, "", 6214988660100000304])
def test_bad_pan_rejected_without_echoing_it(family, pan):
    with pytest.raises(ValueError, match="PAN must be 12-19 decimal digits") as e:
        emv.derive_icc_master_key(family, IMK, pan)
    assert isinstance(e.value, CryptoError)
    assert str(pan)[:6] not in str(e.value) or not pan  # not even the BIN


@pytest.mark.parametrize("psn", ["0", "001", "A1", 1])
def test_bad_psn_masks_pan(psn):
    with pytest.raises(ValueError, match="sequence number") as e:
        emv.derive_icc_master_key(F.EMV_TDES, IMK, PAN, psn)
    assert "621498****0304" in str(e.value) and PAN not in str(e.value)


@pytest.mark.parametrize("family", list(F))
@pytest.mark.parametrize("atc", [b"", b"\x01", b"\x00\x01\x02", "0001"])
def test_bad_atc_length(family, atc):
    mk = emv.derive_icc_master_key(family, IMK, PAN)
    with pytest.raises(ValueError, match="ATC must be 2 bytes"):
        emv.derive_session_key(family, mk, atc)
    with pytest.raises(ValueError, match="ATC must be 2 bytes"):
        emv.arqc_session(family, IMK, PAN, "00", atc)


@pytest.mark.parametrize("family", list(F))
@pytest.mark.parametrize("key", [bytes(8), bytes(15), bytes(24), bytes(32)])
def test_wrong_key_length(family, key):
    key = bytes(range(1, len(key) + 1))
    for call in (lambda: emv.derive_icc_master_key(family, key, PAN),
                 lambda: emv.derive_session_key(family, key, H("0001")),
                 lambda: emv.generate_ac(family, key, b"data"),
                 lambda: emv.verify_ac(family, key, b"data", bytes(8)),
                 lambda: emv.generate_arpc_method1(family, key, bytes(8), b"00")):
        with pytest.raises(InvalidKey, match=f"must be 16 bytes for {family.value}, got {len(key)}") as e:
            call()
        assert key.hex() not in str(e.value).lower()


@pytest.mark.parametrize("family", list(F))
def test_bad_arc_arqc_un_family(family):
    with pytest.raises(ValueError, match="ARC must be 2 bytes"):
        emv.generate_arpc_method1(family, IMK, bytes(8), b"0")
    with pytest.raises(ValueError, match="ARQC must be 8 bytes"):
        emv.generate_arpc_method1(family, IMK, bytes(7), b"00")
    with pytest.raises(ValueError, match="unknown card family"):
        emv.generate_ac("VISA", IMK, b"")
    with pytest.raises(ValueError, match="unpredictable number must be 4 bytes|PBOC_SM4 session keys"):
        emv.derive_session_key(family, IMK, H("0001"), un=bytes(3))
    with pytest.raises(ValueError, match="PBOC_SM4 session keys take no unpredictable number"):
        emv.derive_session_key(F.PBOC_SM4, IMK, H("0001"), un=bytes(4))
