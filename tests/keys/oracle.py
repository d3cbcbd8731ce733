"""Independent implementations used only as test oracles (gmssl's pure-Python SM3/SM4,
pycryptodome's DES), so our results are checked against code we did not write."""
from __future__ import annotations

from Crypto.Cipher import DES
from gmssl import sm3 as _gsm3
from gmssl.sm4 import SM4_ENCRYPT, CryptSM4


def sm4_ecb_block(key: bytes, block: bytes) -> bytes:
    c = CryptSM4(padding_mode=None)  # neither PKCS7 (0) nor ZERO (1): no padding
    c.set_key(key, SM4_ENCRYPT)
    return bytes(c.crypt_ecb(block))


def sm3(data: bytes) -> bytes:
    return bytes.fromhex(_gsm3.sm3_hash(list(data)))


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    if len(key) > 64:
        key = sm3(key)
    key = key.ljust(64, b"\0")
    inner = sm3(bytes(b ^ 0x36 for b in key) + data)
    return sm3(bytes(b ^ 0x5C for b in key) + inner)


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def sm4_cbc_mac(key: bytes, data: bytes) -> bytes:
    data = data + b"\x80" + bytes(-(len(data) + 1) % 16)
    h = bytes(16)
    for i in range(0, len(data), 16):
        h = sm4_ecb_block(key, xor(h, data[i : i + 16]))
    return h


def sm4_cmac(key: bytes, data: bytes) -> bytes:
    """NIST SP 800-38B with SM4 (Rb = 0x87 for 128-bit blocks)."""
    def dbl(b: bytes) -> bytes:
        v = int.from_bytes(b) << 1
        if v >> 128:
            v = (v & ((1 << 128) - 1)) ^ 0x87
        return v.to_bytes(16)

    l_ = sm4_ecb_block(key, bytes(16))
    k1 = dbl(l_)
    k2 = dbl(k1)
    if data and len(data) % 16 == 0:
        last = xor(data[-16:], k1)
        body = data[:-16]
    else:
        rem = len(data) % 16
        tail = data[len(data) - rem :] if rem else b""
        last = xor(tail + b"\x80" + bytes(15 - len(tail)), k2)
        body = data[: len(data) - rem] if rem else data
    h = bytes(16)
    for i in range(0, len(body), 16):
        h = sm4_ecb_block(key, xor(h, body[i : i + 16]))
    return sm4_ecb_block(key, xor(h, last))


def des_ecb(key: bytes, block: bytes) -> bytes:
    return DES.new(key, DES.MODE_ECB).encrypt(block)
