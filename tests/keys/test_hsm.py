"""The host security module: keys at rest under the LMK, per-device names, operations."""
import sqlite3

import pytest

from keys import emv, envelope, keyblock
from keys.errors import KeyBlockError, KeyNotFound, KeyUsageError, MACError, PinBlockError
from keys.hsm import HSM, channel_key_name, issuer_key_name, load_or_create_lmk, terminal_key_name
from keys.model import Key, KeyUsage
from keys.pinblock import decrypt_pin_block, encrypt_pin_block
from keys.sm2 import SM2PrivateKey

PAN = "6212345678901234"


@pytest.fixture
def hsm(tmp_path):
    h = HSM.open(tmp_path / "hsm.db", tmp_path / "lmk")
    yield h
    h.close()


def test_keys_rest_encrypted_and_survive_a_restart(tmp_path):
    h = HSM.open(tmp_path / "hsm.db", tmp_path / "lmk")
    info = h.generate(terminal_key_name("T1", "TPK"), "SM4", "TPK")
    h.close()
    blocks = [r[0] for r in sqlite3.connect(tmp_path / "hsm.db").execute("SELECT block FROM keys")]
    assert len(blocks) == 1 and blocks[0].startswith("S0144P0")
    h2 = HSM.open(tmp_path / "hsm.db", tmp_path / "lmk")
    assert h2.info("terminal/T1/TPK") == info
    assert (tmp_path / "lmk").stat().st_mode & 0o777 == 0o600
    h2.close()


def test_another_lmk_cannot_open_the_store(tmp_path):
    HSM.open(tmp_path / "hsm.db", tmp_path / "lmk").close()
    with pytest.raises(KeyBlockError, match="another LMK"):
        HSM(tmp_path / "hsm.db", Key.generate("SM4", "LMK"))


def test_versions_rotate_and_describe_shows_no_key_bytes(hsm):
    name = terminal_key_name("T1", "TAK")
    assert hsm.generate(name, "SM4", "TAK").version == 1
    assert hsm.generate(name, "SM4", "TAK").version == 2
    hsm.generate(channel_key_name("cup", "ZPK"), "SM4", "ZPK")
    text = "\n".join(f"{k} {v}" for k, v in hsm.describe().items())
    assert "terminal/T1/TAK" in text and "v2" in text and "channel/cup/ZPK" in text
    assert hsm._get(name).material.hex().upper() not in text.upper()
    assert hsm.names("terminal/") == ["terminal/T1/TAK"]


def test_export_and_import_under_a_zmk(hsm, tmp_path):
    hsm.generate("channel/cup/ZMK", "SM4", "ZMK")
    hsm.generate("channel/cup/ZPK", "SM4", "ZPK")
    block = hsm.export_wrapped("channel/cup/ZPK", under="channel/cup/ZMK")
    other = HSM.open(tmp_path / "other.db", tmp_path / "other.lmk")
    other.import_clear("channel/cup/ZMK", hsm._get("channel/cup/ZMK"))  # the key ceremony
    info = other.import_wrapped("channel/cup/ZPK", block, under="channel/cup/ZMK", expect_usage=KeyUsage.ZPK)
    assert info.kcv == hsm.info("channel/cup/ZPK").kcv
    with pytest.raises(KeyUsageError):
        other.import_wrapped("x", block, under="channel/cup/ZMK", expect_usage=KeyUsage.TAK)
    other.close()


def test_only_key_encryption_keys_export_and_signing_keys_never_leave(hsm):
    hsm.generate("t/TPK", "SM4", "TPK")
    hsm.generate("t/TAK", "SM4", "TAK")
    with pytest.raises(KeyUsageError):
        hsm.export_wrapped("t/TPK", under="t/TAK")
    hsm.generate("host/SIGN", "SM2", "SIGN")
    hsm.generate("t/TMK", "SM4", "TMK")
    with pytest.raises(KeyUsageError, match="not exportable"):
        hsm.export_wrapped("host/SIGN", under="t/TMK")


def test_translate_pin_from_tpk_to_zpk(hsm):
    hsm.generate("terminal/T1/TPK", "SM4", "TPK")
    hsm.generate("channel/cup/ZPK", "TDES", "ZPK", length=16)
    tpk, zpk = hsm._get("terminal/T1/TPK"), hsm._get("channel/cup/ZPK")
    under_tpk = encrypt_pin_block("SM4", tpk.cipher, "246810", PAN)
    under_zpk = hsm.translate_pin(under_tpk, PAN, "terminal/T1/TPK", "channel/cup/ZPK")
    assert len(under_zpk) == 8
    assert decrypt_pin_block("ISO-0", zpk.cipher, under_zpk, PAN) == "246810"
    with pytest.raises(PinBlockError):
        hsm.translate_pin(under_tpk, "6212345678901999", "terminal/T1/TPK", "channel/cup/ZPK")
    with pytest.raises(KeyUsageError):
        hsm.translate_pin(under_tpk, PAN, "terminal/T1/TPK", "terminal/T1/TPK")


def test_passcode_token_opens_the_block_inside_and_equals_the_token_of_the_passcode(hsm):
    hsm.generate("terminal/T1/TPK", "SM4", "TPK")
    hsm.generate("host/PEPPER", "SM4", "TOKEN")
    pan = "0000000001230"  # face pay's PAN substitute: 000000 + STAN + 0
    block = encrypt_pin_block("SM4", hsm._get("terminal/T1/TPK").cipher, "802413", pan)
    token = hsm.passcode_token(block, pan, "terminal/T1/TPK", "host/PEPPER")
    assert token == hsm.token("host/PEPPER", b"802413") and "802413" not in token
    with pytest.raises(PinBlockError):  # a block captured from another request (another STAN)
        hsm.passcode_token(block, "0000000001240", "terminal/T1/TPK", "host/PEPPER")
    with pytest.raises(KeyUsageError):  # only a TPK may open a passcode block
        hsm.passcode_token(block, pan, "host/PEPPER", "host/PEPPER")


def test_macs_by_name_and_tamper(hsm):
    hsm.generate("terminal/T1/TAK", "SM4", "TAK")
    for method in ("cbc", "cup_ecb", "cmac"):
        tag = hsm.generate_mac("terminal/T1/TAK", b"0200 message", method)
        assert len(tag) == 8
        hsm.verify_mac("terminal/T1/TAK", b"0200 message", tag, method)
        with pytest.raises(MACError):
            hsm.verify_mac("terminal/T1/TAK", b"0200 messagE", tag, method)
    hsm.generate("terminal/T1/TPK", "SM4", "TPK")
    with pytest.raises(KeyUsageError):
        hsm.generate_mac("terminal/T1/TPK", b"x")
    with pytest.raises(KeyNotFound):
        hsm.generate_mac("terminal/T9/TAK", b"x")


def test_rotating_a_mac_key_drops_the_cached_mac(hsm):
    hsm.generate("t/TAK", "SM4", "TAK")
    before = hsm.generate_mac("t/TAK", b"msg")
    hsm.generate("t/TAK", "SM4", "TAK")
    assert hsm.generate_mac("t/TAK", b"msg") != before


def test_mac_function_is_generate_mac_and_follows_a_rotated_key(hsm):
    hsm.generate("t/TAK", "SM4", "TAK")
    for length in (8, 16):
        mac = hsm.mac_function("t/TAK", length)
        assert mac(b"0210 response") == hsm.generate_mac("t/TAK", b"0210 response", "cbc", length)
    before = hsm.mac_function("t/TAK")(b"msg")
    hsm.generate("t/TAK", "SM4", "TAK")
    assert hsm.mac_function("t/TAK")(b"msg") == hsm.generate_mac("t/TAK", b"msg") != before
    hsm.generate("t/TPK", "SM4", "TPK")
    with pytest.raises(KeyUsageError):
        hsm.mac_function("t/TPK")
    with pytest.raises(KeyNotFound):
        hsm.mac_function("t/none")


def test_key_names_take_a_usage_as_member_or_text_and_refuse_others():
    for usage in KeyUsage:
        assert terminal_key_name("T1", usage) == terminal_key_name("T1", usage.value) == f"terminal/T1/{usage.value}"
    assert channel_key_name("upi", "ZAK") == "channel/upi/ZAK" and issuer_key_name("p", KeyUsage.IMK_AC) == "issuer/p/IMK_AC"
    for bad in ("tak", "NOPE", "", 3):
        with pytest.raises(ValueError):
            terminal_key_name("T1", bad)


@pytest.mark.parametrize("family", list(emv.CardFamily))
def test_arqc_verification_and_arpc(hsm, family):
    name = issuer_key_name("profile-a", "IMK_AC")
    hsm.generate(name, "SM4" if family is emv.CardFamily.PBOC_SM4 else "TDES", "IMK_AC", length=16)
    imk = hsm._get(name).material
    atc, data = b"\x00\x2a", bytes(range(33))
    sk = emv.arqc_session(family, imk, PAN, "01", atc)  # what the card computes with its own key
    arqc = emv.generate_ac(family, sk, data)
    arpc = hsm.verify_arqc(name, family, PAN, "01", atc, data, arqc, b"\x30\x30")
    assert arpc == emv.generate_arpc_method1(family, sk, arqc, b"\x30\x30")
    with pytest.raises(MACError):
        hsm.verify_arqc(name, family, PAN, "01", atc, data + b"!", arqc, b"\x30\x30")
    hsm.generate("perso/ZMK", "SM4", "ZMK")
    block = hsm.export_icc_master_key(name, family, PAN, "01", under="perso/ZMK")
    icc = keyblock.unwrap(hsm._get("perso/ZMK"), block, KeyUsage.ICC_AC)
    assert icc.material == emv.derive_icc_master_key(family, imk, PAN, "01")


@pytest.mark.parametrize("family", list(emv.CardFamily))
def test_arqc_keys_kept_per_card_follow_the_imk(hsm, family, monkeypatch):
    """verify_arqc keeps each card's derived key, bounded, and never serves it once the IMK
    under that name is another key (regenerated) or gone (deleted)."""
    import keys.hsm as hsm_module

    monkeypatch.setattr(hsm_module, "_CARD_KEYS", 3)
    name, algorithm = issuer_key_name("profile-b", "IMK_AC"), "SM4" if family is emv.CardFamily.PBOC_SM4 else "TDES"
    atc, data = b"\x00\x07", b"covered data"

    def card_arqc(pan):
        sk = emv.arqc_session(family, hsm._get(name).material, pan, "01", atc)
        return emv.generate_ac(family, sk, data), emv.generate_arpc_method1(family, sk, emv.generate_ac(
            family, sk, data), b"00")

    hsm.generate(name, algorithm, "IMK_AC", length=16)
    pans = [f"621234567890{n:04d}" for n in range(5)]
    for pan in pans + pans:  # more cards than kept: the oldest go, and come back derived again
        arqc, arpc = card_arqc(pan)
        assert hsm.verify_arqc(name, family, pan, "01", atc, data, arqc, b"00") == arpc
    assert len(hsm._card_keys) == 3
    old_arqc, _ = card_arqc(pans[-1])
    hsm.generate(name, algorithm, "IMK_AC", length=16)  # the issuer rotates its IMK
    with pytest.raises(MACError):
        hsm.verify_arqc(name, family, pans[-1], "01", atc, data, old_arqc, b"00")
    arqc, arpc = card_arqc(pans[-1])
    assert hsm.verify_arqc(name, family, pans[-1], "01", atc, data, arqc, b"00") == arpc
    hsm.delete(name)
    with pytest.raises(KeyNotFound):
        hsm.verify_arqc(name, family, pans[-1], "01", atc, data, arqc, b"00")


def test_remote_key_download_envelope(hsm):
    hsm.generate("host/SIGN", "SM2", "SIGN")
    hsm.generate("terminal/T1/TMK", "SM4", "TMK")
    device = SM2PrivateKey.generate()
    env = hsm.export_envelope("terminal/T1/TMK", device.public_key, "T1", "host/SIGN")
    key = envelope.open_envelope(device, hsm.public_key("host/SIGN"), env, "T1")
    assert key.kcv == hsm.info("terminal/T1/TMK").kcv and key.usage is KeyUsage.TMK


def test_lmk_is_never_stored_and_bad_lmk_file_is_a_clear_error(hsm, tmp_path):
    with pytest.raises(KeyUsageError):
        hsm.import_clear("lmk", Key.generate("SM4", "LMK"))
    bad = tmp_path / "bad.lmk"
    bad.write_text("not hex")
    with pytest.raises(Exception, match="does not hold hex"):
        load_or_create_lmk(bad)


def test_a_tampered_stored_block_is_refused_not_used(tmp_path):
    h = HSM.open(tmp_path / "hsm.db", tmp_path / "lmk")
    h.generate("t/TAK", "SM4", "TAK")
    h.close()
    db = sqlite3.connect(tmp_path / "hsm.db")
    block = db.execute("SELECT block FROM keys").fetchone()[0]
    db.execute("UPDATE keys SET block=?", (block[:20] + ("0" if block[20] != "0" else "1") + block[21:],))
    db.commit()
    h = HSM.open(tmp_path / "hsm.db", tmp_path / "lmk")
    with pytest.raises(KeyBlockError, match="integrity"):
        h.generate_mac("t/TAK", b"x")
    h.close()


def test_sealed_fields_under_the_tdk(hsm):
    hsm.generate("terminal/T1/TDK", "SM4", "TDK")
    track2 = b"6212345678901234D30122011234500000"
    a, b = hsm.seal_data("terminal/T1/TDK", track2), hsm.seal_data("terminal/T1/TDK", track2)
    assert a != b and track2 not in a and len(a) <= 64
    assert hsm.open_data("terminal/T1/TDK", a) == track2
    from keys.errors import DecryptionError
    # integrity comes from the message MAC; here only the shape is checked
    with pytest.raises(DecryptionError):
        hsm.open_data("terminal/T1/TDK", a[:20])
    hsm.generate("terminal/T1/TAK", "SM4", "TAK")
    with pytest.raises(KeyUsageError):
        hsm.seal_data("terminal/T1/TAK", track2)


def test_seal_and_open_are_kept_per_key_and_follow_rotation_and_deletion(hsm):
    from keys.errors import DecryptionError
    from keys.symmetric import BlockCipher, open_field, seal_field

    name, track2 = "terminal/T1/TDK", b"6212345678901234D30122011234500000"
    hsm.import_clear(name, Key("SM4", "TDK", bytes(16)))
    old = seal_field(BlockCipher("SM4", bytes(16)), track2, bytes(range(16)))
    assert hsm.open_data(name, old) == track2
    assert open_field(BlockCipher("SM4", bytes(16)), hsm.seal_data(name, track2)) == track2
    hsm.import_clear(name, Key("SM4", "TDK", bytes(range(16)), version=2))
    assert open_field(BlockCipher("SM4", bytes(range(16))), hsm.seal_data(name, track2)) == track2
    try:
        opened = hsm.open_data(name, old)
    except DecryptionError:
        opened = None
    assert opened != track2  # the replaced key is not served from what was made with it
    hsm.delete(name)
    for use in (hsm.seal_data, hsm.open_data):
        with pytest.raises(KeyNotFound):
            use(name, old)
    hsm.generate("terminal/T1/TAK", "SM4", "TAK")
    for use in (hsm.seal_data, hsm.open_data):
        with pytest.raises(KeyUsageError):
            use("terminal/T1/TAK", old)


def test_tokens_are_kept_per_key_and_follow_rotation_and_deletion(hsm):
    from keys.hashes import hmac_sm3

    hsm.generate("host/TOKEN", "SM4", "TOKEN")
    first = hsm.token("host/TOKEN", PAN.encode())
    assert first == hsm.token("host/TOKEN", PAN.encode()) != hsm.token("host/TOKEN", b"6212345678901235")
    hsm.import_clear("host/TOKEN", Key("SM4", "TOKEN", bytes(16), version=2))
    assert hsm.token("host/TOKEN", PAN.encode()) == hmac_sm3(bytes(16), PAN.encode())[:16].hex().upper() != first
    hsm.delete("host/TOKEN")
    with pytest.raises(KeyNotFound):
        hsm.token("host/TOKEN", PAN.encode())
    hsm.generate("host/TAK", "SM4", "TAK")
    with pytest.raises(KeyUsageError):
        hsm.token("host/TAK", PAN.encode())


def test_a_deleted_mac_key_is_not_served_from_the_kept_mac(hsm):
    hsm.generate("t/TAK", "SM4", "TAK")
    hsm.generate_mac("t/TAK", b"msg")
    hsm.delete("t/TAK")
    with pytest.raises(KeyNotFound):
        hsm.generate_mac("t/TAK", b"msg")
    with pytest.raises(KeyNotFound):
        hsm.verify_mac("t/TAK", b"msg", bytes(8))
