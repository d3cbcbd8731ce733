"""No key bytes, PIN or full PAN in any repr, log line or exception text of keys/."""
import logging

import pytest

from keys import emv, envelope, keyblock
from keys.errors import CryptoError
from keys.hsm import HSM
from keys.mac import CBCMAC
from keys.model import Key, KeyUsage
from keys.pinblock import decrypt_pin_block, encrypt_pin_block
from keys.sm2 import SM2PrivateKey, SM2PublicKey
from keys.symmetric import BlockCipher

PAN = "6212345678901234567"
PIN = "8024619375"  # long enough that random hex cannot contain it by chance


def _forms(secret: bytes) -> list[str]:
    return [secret.hex(), secret.hex().upper(), repr(secret)[2:-1], secret[:8].hex(), secret[-8:].hex().upper()]


def test_nothing_secret_reaches_text(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    secrets: list[bytes] = []

    def expect_error(fn, *args, **kw):
        with pytest.raises((CryptoError, ValueError)) as info:
            fn(*args, **kw)
        texts.extend([str(info.value), repr(info.value)])

    hsm = HSM.open(tmp_path / "hsm.db", tmp_path / "lmk")
    secrets.append(bytes.fromhex((tmp_path / "lmk").read_text().strip()))
    for name, alg, usage in [("t/TMK", "SM4", "TMK"), ("t/TPK", "SM4", "TPK"), ("t/TAK", "SM4", "TAK"),
                             ("c/ZPK", "TDES", "ZPK"), ("i/IMK", "SM4", "IMK_AC"), ("h/SIGN", "SM2", "SIGN")]:
        hsm.generate(name, alg, usage)
        key = hsm._get(name)
        secrets.append(key.material)
        texts += [repr(key), str(key), f"{key!r}", str(hsm.info(name))]
    texts += [repr(hsm), str(hsm.describe())]

    tpk, tak, tmk = hsm._get("t/TPK"), hsm._get("t/TAK"), hsm._get("t/TMK")
    texts += [repr(tpk.cipher), repr(CBCMAC(tak.cipher))]
    device = SM2PrivateKey.generate()
    secrets.append(device.private_bytes())
    texts += [repr(device), str(device), repr(device.public_key)]

    block = encrypt_pin_block("SM4", tpk.cipher, PIN, PAN)
    expect_error(decrypt_pin_block, "SM4", BlockCipher("SM4", bytes(16)), block, PAN)
    expect_error(encrypt_pin_block, "SM4", tpk.cipher, PIN + "123456789", PAN)
    expect_error(hsm.translate_pin, block, PAN, "t/TPK", "t/TAK")
    expect_error(hsm.verify_mac, "t/TAK", b"data", b"\0" * 8)
    expect_error(hsm.generate_mac, "t/TPK", b"data")
    wrapped = keyblock.wrap(tmk, tpk)
    expect_error(keyblock.unwrap, tmk, wrapped, KeyUsage.TAK)
    expect_error(keyblock.unwrap, Key.generate("SM4", "TMK"), wrapped)
    expect_error(keyblock.unwrap, tmk, wrapped[:-1] + ("1" if wrapped[-1] == "0" else "0"))  # always a change
    expect_error(Key, "SM4", "TPK", tpk.material[:15])
    env = hsm.export_envelope("t/TMK", device.public_key, "T1", "h/SIGN")
    expect_error(envelope.open_envelope, device, hsm.public_key("h/SIGN"), env, "T2")
    expect_error(envelope.open_envelope, SM2PrivateKey.generate(), hsm.public_key("h/SIGN"), env, "T1")
    expect_error(device.decrypt, device.public_key.encrypt(b"secret")[:-1] + b"\0")
    expect_error(hsm.public_key("h/SIGN").verify, b"\0" * 64, b"data")
    expect_error(SM2PublicKey.from_bytes, b"\x04" + bytes(64))
    expect_error(SM2PrivateKey.from_bytes, device.private_bytes()[:31])
    expect_error(hsm.verify_arqc, "i/IMK", "PBOC_SM4", PAN, "01", b"\0\1", b"data", b"\0" * 8, b"00")
    expect_error(emv.derive_icc_master_key, "PBOC_SM4", hsm._get("i/IMK").material, PAN + "x", "01")
    expect_error(emv.derive_icc_master_key, "PBOC_SM4", hsm._get("i/IMK").material[:8], PAN, "01")
    hsm.close()

    corpus = "\n".join(texts) + "\n" + caplog.text
    assert len(texts) > 40
    for n, secret in enumerate(secrets):
        for k, form in enumerate(_forms(secret)):
            if form in corpus:  # name where, never what
                where = [i for i, t in enumerate(texts) if form in t] or ["log"]
                pytest.fail(f"key material (secret {n}, form {k}) appears in text {where}")
    assert PIN not in corpus, "PIN appears in text"
    assert PAN not in corpus and PAN[:-1] not in corpus, "PAN appears in text"
