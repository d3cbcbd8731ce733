"""Block ciphers: SM4 (via `cryptography`), 3DES and AES (via `pycryptodome`).

One `BlockCipher` object per key keeps its key schedule and ECB contexts, so
single-block work (MACs, PIN blocks, check values) does not re-expand the key each
call. Modes beyond ECB are small functions over the same objects.
"""
from __future__ import annotations

import enum
import os

from Crypto.Cipher import AES as _AES
from Crypto.Cipher import DES3 as _DES3
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.exceptions import InvalidTag

from .errors import DecryptionError, InvalidKey


class Algorithm(str, enum.Enum):
    SM4 = "SM4"
    TDES = "TDES"
    AES = "AES"

    @property
    def block_size(self) -> int:
        return 8 if self is Algorithm.TDES else 16

    @property
    def key_sizes(self) -> tuple[int, ...]:
        return {Algorithm.SM4: (16,), Algorithm.TDES: (16, 24), Algorithm.AES: (16, 24, 32)}[self]


def _check_key(algorithm: Algorithm, key: bytes) -> None:
    if len(key) not in algorithm.key_sizes:
        raise InvalidKey(
            f"{algorithm.value} key must be {' or '.join(map(str, algorithm.key_sizes))} bytes, got {len(key)}"
        )


class BlockCipher:
    """Raw block encryption under one key. Holds the key: never log or repr it."""

    __slots__ = ("algorithm", "block_size", "_enc", "_dec", "_key")

    def __init__(self, algorithm: Algorithm | str, key: bytes):
        algorithm = Algorithm(algorithm)
        key = bytes(key)
        _check_key(algorithm, key)
        self.algorithm = algorithm
        self.block_size = algorithm.block_size
        self._key = key
        if algorithm is Algorithm.SM4:
            cipher = Cipher(algorithms.SM4(key), modes.ECB())
            self._enc = cipher.encryptor()
            self._dec = cipher.decryptor()
        elif algorithm is Algorithm.TDES:
            # DES3 refuses keys whose halves are equal (single DES); EMV test keys
            # sometimes are, so fall back to the equivalent single-length key schedule.
            try:
                c = _DES3.new(key, _DES3.MODE_ECB)
            except ValueError:
                from Crypto.Cipher import DES as _DES

                if key[:8] != key[8:16]:
                    raise InvalidKey("TDES key is degenerate") from None
                c = _DES.new(key[:8], _DES.MODE_ECB)
            self._enc = c
            self._dec = c
        else:
            c = _AES.new(key, _AES.MODE_ECB)
            self._enc = c
            self._dec = c

    def __repr__(self) -> str:
        return f"<BlockCipher {self.algorithm.value}>"

    def encrypt_ecb(self, data: bytes) -> bytes:
        self._check_blocks(data)
        if self.algorithm is Algorithm.SM4:
            return self._enc.update(data)
        return self._enc.encrypt(data)

    def decrypt_ecb(self, data: bytes) -> bytes:
        self._check_blocks(data)
        if self.algorithm is Algorithm.SM4:
            return self._dec.update(data)
        return self._dec.decrypt(data)

    def encrypt_cbc(self, data: bytes, iv: bytes | None = None) -> bytes:
        """CBC without padding; the IV defaults to zeros (payment convention)."""
        self._check_blocks(data)
        iv = self._iv(iv)
        if self.algorithm is Algorithm.SM4:
            e = Cipher(algorithms.SM4(self._key), modes.CBC(iv)).encryptor()
            return e.update(data) + e.finalize()
        return self._legacy(iv).encrypt(data)

    def decrypt_cbc(self, data: bytes, iv: bytes | None = None) -> bytes:
        self._check_blocks(data)
        iv = self._iv(iv)
        if self.algorithm is Algorithm.SM4:
            d = Cipher(algorithms.SM4(self._key), modes.CBC(iv)).decryptor()
            return d.update(data) + d.finalize()
        return self._legacy(iv).decrypt(data)

    def crypt_ctr(self, data: bytes, nonce: bytes) -> bytes:
        """CTR mode (its own inverse); `nonce` is the full initial counter block."""
        if len(nonce) != self.block_size:
            raise InvalidKey(f"CTR initial counter must be {self.block_size} bytes")
        if self.algorithm is Algorithm.SM4:
            e = Cipher(algorithms.SM4(self._key), modes.CTR(nonce)).encryptor()
            return e.update(data) + e.finalize()
        if self.algorithm is Algorithm.AES:
            c = _AES.new(self._key, _AES.MODE_CTR, nonce=b"", initial_value=nonce)
        else:
            c = _DES3.new(self._key, _DES3.MODE_CTR, nonce=b"", initial_value=nonce)
        return c.encrypt(data)

    def kcv(self, length: int = 3) -> bytes:
        """Key check value: the first `length` bytes of the key encrypting a zero block."""
        return self.encrypt_ecb(bytes(self.block_size))[:length]

    def _check_blocks(self, data: bytes) -> None:
        if len(data) % self.block_size:
            raise DecryptionError(
                f"{self.algorithm.value} data must be a multiple of {self.block_size} bytes, got {len(data)}"
            )

    def _iv(self, iv: bytes | None) -> bytes:
        iv = bytes(self.block_size) if iv is None else iv
        if len(iv) != self.block_size:
            raise InvalidKey(f"IV must be {self.block_size} bytes, got {len(iv)}")
        return iv

    def _legacy(self, iv: bytes):
        if self.algorithm is Algorithm.AES:
            return _AES.new(self._key, _AES.MODE_CBC, iv=iv)
        return _DES3.new(self._key, _DES3.MODE_CBC, iv=iv)


def sm4_gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """SM4-GCM (16-byte tag appended). `cryptography`'s bundled OpenSSL has it even
    where Debian's OpenSSL 3.0 does not."""
    _check_key(Algorithm.SM4, key)
    e = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    e.authenticate_additional_data(aad)
    return e.update(plaintext) + e.finalize() + e.tag


def sm4_gcm_decrypt(key: bytes, nonce: bytes, data: bytes, aad: bytes = b"") -> bytes:
    _check_key(Algorithm.SM4, key)
    if len(data) < 16:
        raise DecryptionError("SM4-GCM ciphertext shorter than its 16-byte tag")
    d = Cipher(algorithms.SM4(key), modes.GCM(nonce, data[-16:])).decryptor()
    d.authenticate_additional_data(aad)
    try:
        return d.update(data[:-16]) + d.finalize()
    except InvalidTag:
        raise DecryptionError("SM4-GCM tag mismatch: ciphertext or associated data altered") from None


def aes_gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    _check_key(Algorithm.AES, key)
    return AESGCM(key).encrypt(nonce, plaintext, aad)


def aes_gcm_decrypt(key: bytes, nonce: bytes, data: bytes, aad: bytes = b"") -> bytes:
    _check_key(Algorithm.AES, key)
    try:
        return AESGCM(key).decrypt(nonce, data, aad)
    except InvalidTag:
        raise DecryptionError("AES-GCM tag mismatch: ciphertext or associated data altered") from None


def random_key(algorithm: Algorithm | str, length: int | None = None) -> bytes:
    algorithm = Algorithm(algorithm)
    return os.urandom(length or algorithm.key_sizes[0])


def pad_iso9797_m2(data: bytes, block_size: int) -> bytes:
    """ISO/IEC 9797-1 padding method 2: append 0x80, then zeros to a block boundary."""
    data = data + b"\x80"
    return data + bytes(-len(data) % block_size)


def unpad_iso9797_m2(data: bytes) -> bytes:
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80:
        raise DecryptionError("bad ISO 9797-1 method 2 padding")
    return stripped[:-1]
