"""Known-answer self-check of the crypto core, run by `pos selfcheck` and the demo.

Each check computes a published or documented vector with the production code and
compares; a failure names the check and exits non-zero. Nothing secret is printed.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

GB_SM4_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")
SYNTHETIC_PAN = "62" + "0" * 14  # an all-zero account number: no card has it


def _sm4() -> str:
    from .symmetric import BlockCipher

    got = BlockCipher("SM4", GB_SM4_KEY).encrypt_ecb(GB_SM4_KEY).hex()
    assert got == "681edf34d206965e86b3e94f536e4246", got
    return "GB/T 32907 vector"


def _sm3() -> str:
    from .hashes import sm3

    got = sm3(b"abc").hex()
    assert got == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0", got
    return "GB/T 32905 'abc'"


def _sm4_gcm() -> str:
    from .symmetric import sm4_gcm_decrypt, sm4_gcm_encrypt

    nonce = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    pt = bytes.fromhex("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
    ct = sm4_gcm_encrypt(GB_SM4_KEY, nonce, pt, aad)
    assert ct[:16].hex().upper() == "17F399F08C67D5EE19D0DC9969C4BB7D", ct[:16].hex()
    assert sm4_gcm_decrypt(GB_SM4_KEY, nonce, ct, aad) == pt
    return "RFC 8998 prefix, round trip"


def _sm2() -> str:
    from .sm2 import SM2PrivateKey, SM2PublicKey, libcrypto_info

    # GB/T 32918.2 example key: the public point must come out as published
    d = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
    pub = SM2PrivateKey.from_bytes(d).public_key.to_bytes()
    assert pub.hex().upper().startswith("0409F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"), pub.hex()
    key = SM2PrivateKey.generate()
    sig = key.sign(b"selfcheck")
    SM2PublicKey.from_bytes(key.public_key.to_bytes(compressed=True)).verify(sig, b"selfcheck")
    assert key.decrypt(key.public_key.encrypt(b"selfcheck")) == b"selfcheck"
    return f"GB/T 32918 key, sign/verify, C1C3C2 round trip ({libcrypto_info()})"


def _macs() -> str:
    from .mac import cup_ecb_mac, sm4_cbc_mac
    from .symmetric import BlockCipher

    assert sm4_cbc_mac(GB_SM4_KEY, bytes(range(64))).hex().upper() == "9B928425EA63980DE66EFF136EF82D9C"
    assert cup_ecb_mac(BlockCipher("SM4", GB_SM4_KEY), bytes(range(40))) == b"31A90AFA"
    return "SM4 CBC-MAC and CUP ECB MAC vectors (docs/crypto.md)"


def _pin_blocks() -> str:
    from .pinblock import decrypt_pin_block, encrypt_pin_block
    from .symmetric import BlockCipher

    aes = BlockCipher("AES", bytes.fromhex("00112233445566778899AABBCCDDEEFF"))
    block = encrypt_pin_block("ISO-4", aes, "1234", "1234567890123456", bytes.fromhex("1122334455667788"))
    assert block.hex().upper() == "7CDF645C86CAF763AE34637A66997534"
    sm4 = BlockCipher("SM4", GB_SM4_KEY)
    assert decrypt_pin_block("SM4", sm4, encrypt_pin_block("SM4", sm4, "9876", SYNTHETIC_PAN),
                             SYNTHETIC_PAN) == "9876"
    return "ISO 9564 format 4 vector, SM4 round trip"


def _emv() -> str:
    from . import emv

    imk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    sk = emv.arqc_session("PBOC_SM4", imk, SYNTHETIC_PAN, "00", b"\x00\x01")
    ac = emv.generate_ac("PBOC_SM4", sk, b"amount, currency, date, UN, ...")
    assert emv.verify_ac("PBOC_SM4", sk, b"amount, currency, date, UN, ...", ac)
    return "PBOC SM4 ARQC generate/verify"


def _key_management() -> str:
    from . import envelope, keyblock
    from .hsm import HSM
    from .model import Key, KeyUsage
    from .sm2 import SM2PrivateKey

    tmk = Key.generate("SM4", "TMK")
    tpk = Key.generate("SM4", "TPK", version=2)
    assert keyblock.unwrap(tmk, keyblock.wrap(tmk, tpk), KeyUsage.TPK) == tpk
    with tempfile.TemporaryDirectory() as tmp:
        hsm = HSM.open(Path(tmp) / "hsm.db", Path(tmp) / "lmk")
        hsm.generate("host/SIGN", "SM2", "SIGN")
        hsm.generate("terminal/T1/TMK", "SM4", "TMK")
        device = SM2PrivateKey.generate()
        env = hsm.export_envelope("terminal/T1/TMK", device.public_key, "T1", "host/SIGN")
        got = envelope.open_envelope(device, hsm.public_key("host/SIGN"), env, "T1")
        assert got.kcv == hsm.info("terminal/T1/TMK").kcv
        hsm.close()
    return "key block, HSM store, SM2 envelope"


CHECKS: list[tuple[str, Callable[[], str]]] = [
    ("SM4", _sm4), ("SM3", _sm3), ("SM4-GCM", _sm4_gcm), ("SM2", _sm2), ("MACs", _macs),
    ("PIN blocks", _pin_blocks), ("EMV", _emv), ("key management", _key_management),
]


def run(verbose: bool = True) -> int:
    failures = 0
    for name, check in CHECKS:
        t = time.perf_counter()
        try:
            detail = check()
            status = "ok"
        except Exception as exc:  # report every check, then fail
            failures += 1
            detail = f"{type(exc).__name__}: {exc}"
            status = "FAILED"
        if verbose:
            print(f"  {status:6s} {name:15s} {detail} [{(time.perf_counter() - t) * 1000:.1f} ms]")
    if verbose:
        print(f"crypto core self-check: {len(CHECKS) - failures}/{len(CHECKS)} checks passed")
    return 1 if failures else 0
