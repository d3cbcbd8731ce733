"""Block ciphers: SM4 (via `cryptography`), 3DES and AES (via `pycryptodome`).

One `BlockCipher` object per key keeps its key schedule and ECB contexts, so
single-block work (MACs, PIN blocks, check values) does not re-expand the key each
call. Modes beyond ECB are small functions over the same objects.

SM4-CBC keeps long-lived CBC contexts too, never finalised (making a context costs about
ten times what a 3-block message does). A running context chains from the last
ciphertext block S it saw instead of from the IV:

* encrypting under a given IV, only the first block depends on S: it goes in XOR IV XOR S
  (S is kept, as an integer, beside the context);
* decrypting, the IV goes in first, as one more ciphertext block: its output (D(IV) XOR S)
  is dropped, and every block after it comes out as D(C_i) XOR C_{i-1} with C_0 = IV, which
  is the plaintext. Nothing to keep, no XOR in Python;
* sealing (`seal_field` without an IV), a random block R goes in first on a context of
  its own: its output E_K(R XOR S) is uniformly random because R is and S does not depend
  on it, so it is the IV itself, and the blocks after it are CBC under that IV. The IV is
  then a random block enciphered under the key, one of the ways NIST SP 800-38A
  (appendix C) gives for making a CBC IV unpredictable.

Each result is exactly CBC under its IV (tests/keys/test_primitives.py checks all three
against fresh contexts).
"""
from __future__ import annotations

import enum
import os
import threading

from Crypto.Cipher import AES as _AES
from Crypto.Cipher import DES as _DES
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

    __slots__ = ("algorithm", "block_size", "_enc", "_dec", "_key", "_module", "_cbc_enc", "_cbc_dec", "_cbc_seal",
                 "_cbc_lock")

    def __init__(self, algorithm: Algorithm | str, key: bytes):
        algorithm = Algorithm(algorithm)
        key = bytes(key)
        _check_key(algorithm, key)
        self.algorithm = algorithm
        self.block_size = algorithm.block_size
        self._key = key
        self._module = _legacy_module(algorithm, key)
        # SM4's running CBC contexts (module docstring), each made on first use:
        self._cbc_enc: list | None = None  # [update, its last ciphertext block as an integer]
        self._cbc_dec = None  # update of the decryption context
        self._cbc_seal = None  # update of the encryption context `seal_field` chains IVs on
        self._cbc_lock = threading.Lock()  # one caller at a time on the contexts (worker threads use keys too)
        if algorithm is Algorithm.SM4:
            self._enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
            self._dec = None  # made on first decryption: most keys only ever encrypt
        else:
            c = self._legacy(_MODE_ECB)
            self._enc = c
            self._dec = c

    def __repr__(self) -> str:
        return f"<BlockCipher {self.algorithm.value}>"

    def encrypt_ecb(self, data: bytes) -> bytes:
        self._check_blocks(data)
        if self.algorithm is Algorithm.SM4:
            return self._enc.update(data)
        return self._enc.encrypt(data)

    @property
    def ecb_block_function(self):
        """The bare block-encryption callable, without length checks: for hot loops
        (CBC-MAC) that feed it whole blocks themselves."""
        return self._enc.update if self.algorithm is Algorithm.SM4 else self._enc.encrypt

    def cbc_context(self):
        """`update` of a fresh SM4-CBC encryption context under a zero IV, never finalised:
        for a caller that keeps its own running chain (keys.mac.CBCMAC) and its own lock."""
        if self.algorithm is not Algorithm.SM4:
            raise InvalidKey("a running CBC context is offered for SM4 only")
        return self._sm4_cbc_update(True)

    def zero_preimage(self) -> bytes:
        """D_K(0): the block this key enciphers to zeros (keys.mac.CBCMAC resets its chain
        with it). Made on a context of its own, dropped after, as most such keys never decrypt."""
        if self.algorithm is Algorithm.SM4:
            return Cipher(algorithms.SM4(self._key), modes.ECB()).decryptor().update(bytes(16))
        return self.decrypt_ecb(bytes(self.block_size))

    def decrypt_ecb(self, data: bytes) -> bytes:
        self._check_blocks(data)
        if self.algorithm is Algorithm.SM4:
            if self._dec is None:
                self._dec = Cipher(algorithms.SM4(self._key), modes.ECB()).decryptor()
            return self._dec.update(data)
        return self._dec.decrypt(data)

    def encrypt_cbc(self, data: bytes, iv: bytes | None = None) -> bytes:
        """CBC without padding; the IV defaults to zeros (payment convention)."""
        self._check_blocks(data)
        iv = self._iv(iv)
        if self.algorithm is Algorithm.SM4:
            return self._running_encrypt(data, iv) if data else b""
        return self._legacy(_MODE_CBC, iv=iv).encrypt(data)

    def decrypt_cbc(self, data: bytes, iv: bytes | None = None) -> bytes:
        self._check_blocks(data)
        iv = self._iv(iv)
        if self.algorithm is Algorithm.SM4:
            return self._running_decrypt(iv + data)[16:] if data else b""
        return self._legacy(_MODE_CBC, iv=iv).decrypt(data)

    def _running_encrypt(self, data: bytes, iv: bytes) -> bytes:
        """SM4-CBC of whole blocks (at least one) under `iv`, on the running context (module docstring)."""
        with self._cbc_lock:
            state = self._cbc_enc
            if state is None:
                state = self._cbc_enc = [self._sm4_cbc_update(True), 0]
            update, last = state
            out = update((int.from_bytes(data[:16]) ^ int.from_bytes(iv) ^ last).to_bytes(16) + data[16:])
            state[1] = int.from_bytes(out[-16:])
        return out

    def _running_decrypt(self, chained: bytes) -> bytes:
        """SM4-CBC decryption of `chained` = IV || whole ciphertext blocks on the running context.
        The first 16 bytes out are the IV's own output, not plaintext (module docstring): the
        caller skips them, so that a sealed field (IV || ciphertext) goes in as it stands."""
        with self._cbc_lock:
            update = self._cbc_dec
            if update is None:
                update = self._cbc_dec = self._sm4_cbc_update(False)
            return update(chained)

    def _seal_cbc(self, padded: bytes) -> bytes:
        """Random IV || SM4-CBC(`padded`) under it, in one call: the IV is the running context's
        output for a random block put in front (module docstring)."""
        chained = os.urandom(16) + padded
        with self._cbc_lock:
            update = self._cbc_seal
            if update is None:
                update = self._cbc_seal = self._sm4_cbc_update(True)
            return update(chained)

    def _sm4_cbc_update(self, encrypt: bool):
        c = Cipher(algorithms.SM4(self._key), modes.CBC(bytes(16)))
        return (c.encryptor() if encrypt else c.decryptor()).update

    def crypt_ctr(self, data: bytes, nonce: bytes) -> bytes:
        """CTR mode (its own inverse); `nonce` is the full initial counter block."""
        if len(nonce) != self.block_size:
            raise InvalidKey(f"CTR initial counter must be {self.block_size} bytes")
        if self.algorithm is Algorithm.SM4:
            e = Cipher(algorithms.SM4(self._key), modes.CTR(nonce)).encryptor()
            return e.update(data) + e.finalize()
        return self._legacy(_MODE_CTR, nonce=b"", initial_value=nonce).encrypt(data)

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

    def _legacy(self, mode: int, **kwargs):
        module, key = self._module
        return module.new(key, mode, **kwargs)


_MODE_ECB, _MODE_CBC, _MODE_CTR = _AES.MODE_ECB, _AES.MODE_CBC, _AES.MODE_CTR  # same values in DES/DES3


def _legacy_module(algorithm: Algorithm, key: bytes):
    """pycryptodome module and key for AES/3DES; None for SM4 (served by `cryptography`)."""
    if algorithm is Algorithm.SM4:
        return None
    if algorithm is Algorithm.AES:
        return _AES, key
    try:
        return _DES3, _DES3.adjust_key_parity(key)
    except ValueError:
        # DES3 refuses K1 == K2 (single DES in disguise); old POS MAKs and EMV test keys
        # are like that, so run them as the single DES they are equivalent to.
        # parity bits (the low bit of each byte) do not take part in DES
        halves = {bytes(b & 0xFE for b in key[i : i + 8]) for i in range(0, len(key), 8)}
        if len(halves) == 1:
            return _DES, key[:8]
        raise InvalidKey("TDES key is degenerate (K1 = K2 or K2 = K3)") from None


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


# method 2's tails per block size, by the length of the last partial block: a lookup and one
# concatenation per message instead of building 0x80 + zeros (MACs pad every request and response)
_M2_TAILS = {b: tuple(b"\x80" + bytes(-(n + 1) % b) for n in range(b)) for b in (8, 16)}


def pad_iso9797_m2(data: bytes, block_size: int) -> bytes:
    """ISO/IEC 9797-1 padding method 2: append 0x80, then zeros to a block boundary."""
    tails = _M2_TAILS.get(block_size)
    if tails is None:
        return data + b"\x80" + bytes(-(len(data) + 1) % block_size)
    return data + tails[len(data) % block_size]


def unpad_iso9797_m2(data: bytes, start: int = 0) -> bytes:
    """The message padded with method 2 in `data[start:]` (a caller whose buffer holds something
    else in front, as `open_field`'s does, saves a copy)."""
    stripped = data.rstrip(b"\x00")
    if len(stripped) <= start or stripped[-1] != 0x80:
        raise DecryptionError("bad ISO 9797-1 method 2 padding")
    return stripped[start:-1]


def seal_field(cipher: BlockCipher, data: bytes, iv: bytes | None = None) -> bytes:
    """Encrypt a sensitive message field (track 2, PAN): random IV || CBC(pad method 2).

    A fresh IV per message keeps equal PANs from producing equal ciphertexts."""
    b = cipher.block_size
    data = pad_iso9797_m2(data, b)
    if cipher.algorithm is Algorithm.SM4:
        if iv is None:  # IV and ciphertext in one call (module docstring)
            return cipher._seal_cbc(data)
        if len(iv) == b:  # whole blocks, a sound IV: straight to the chain
            return iv + cipher._running_encrypt(data, iv)
    iv = os.urandom(b) if iv is None else iv
    return iv + cipher.encrypt_cbc(data, iv)


def open_field(cipher: BlockCipher, sealed: bytes) -> bytes:
    b = cipher.block_size
    if len(sealed) < 2 * b or len(sealed) % b:
        raise DecryptionError(f"sealed field must be IV plus whole {b}-byte blocks, got {len(sealed)} bytes")
    if cipher.algorithm is Algorithm.SM4:  # lengths checked above: IV || ciphertext straight to the chain
        return unpad_iso9797_m2(cipher._running_decrypt(sealed), b)
    return unpad_iso9797_m2(cipher.decrypt_cbc(sealed[b:], sealed[:b]))
