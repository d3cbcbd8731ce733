"""Message authentication codes used on POS links and by EMV.

Each algorithm, exactly (|| is concatenation, E_K one block of the cipher under K):

* ``cbc_mac`` - ISO/IEC 9797-1 MAC algorithm 1. Pad with method 1 (zeros to a block
  boundary; an empty message becomes one zero block) or method 2 (0x80 then zeros,
  always). H_0 = 0; H_i = E_K(H_{i-1} XOR D_i); MAC = leftmost ``length`` bytes of H_q.
  With SM4 this is the "SM4 CBC-MAC" of our wire protocol (method 2, 16-byte blocks).
* ``cmac`` - NIST SP 800-38B / ISO/IEC 9797-1 algorithm 5, for SM4 and AES, through
  `cryptography`.
* ``x919_mac`` - ANSI X9.19 "retail MAC" (= ISO 9797-1 algorithm 3 with DES):
  a double-length key K = KL || KR; pad with method 1 (zeros), CBC-MAC with single DES
  under KL over all blocks, then the final block: E_KL(D_KR(H_q)). 8 bytes.
* ``cup_ecb_mac`` - the China UnionPay POS "ECB" MAC, DES form (8-byte blocks):
  1. pad the message with zeros to a multiple of 8 bytes;
  2. XOR all 8-byte blocks together into one block R;
  3. expand R to 16 upper-case hex ASCII characters; A = first 8, B = last 8;
  4. C = E_K(A) (K a single-length DES key or a double/triple-length 3DES key);
  5. C = E_K(C XOR B);
  6. expand C to 16 upper-case hex characters; the MAC is the first 8 characters
     (as 8 ASCII bytes).
  The SM4 form is the same with 16-byte blocks: R is 16 bytes, its hex expansion 32
  characters (A, B 16 each), C = E_K(E_K(A) XOR B), MAC = first 8 hex characters of C.
  Both forms put 8 bytes into field 64.
"""
from __future__ import annotations

import hmac as _hmac
import threading

from Crypto.Cipher import DES as _DES
from cryptography.hazmat.primitives import cmac as _cmac
from cryptography.hazmat.primitives.ciphers import algorithms

from .errors import InvalidKey, MACError
from .symmetric import Algorithm, BlockCipher, pad_iso9797_m2


def _pad_m1(data: bytes, block: int) -> bytes:
    """ISO 9797-1 padding method 1: zeros to a block boundary (empty data: one block of them)."""
    return data + bytes(-len(data) % block) if data else bytes(block)


_PADDINGS = {1: _pad_m1, 2: pad_iso9797_m2}


def _padding(method: int):
    """The ISO 9797-1 padding function (data, block) -> bytes of `method` 1 or 2."""
    try:
        return _PADDINGS[method]
    except (KeyError, TypeError):
        raise ValueError(f"ISO 9797-1 padding method must be 1 or 2, got {method}") from None


def _pad(data: bytes, block: int, method: int) -> bytes:
    return _padding(method)(data, block)


class CBCMAC:
    """ISO 9797-1 algorithm 1 under one key, with the key schedule kept between calls
    (a 64-byte SM4 MAC is five block encryptions; re-expanding the key would triple it).

    SM4 runs on a CBC context of its own that is never finalised: each MAC continues the
    chain of the one before. One block in front of the message brings the chain back to
    zero: with S the last ciphertext block the context gave and Z = D_K(0), the block
    S XOR Z enciphers to E_K(Z) = 0, so the padded message after it runs as CBC under a
    zero IV and the last block out is its MAC. That block (`_reset`, S XOR Z for the next
    MAC) is worked out once per MAC, and the message goes to OpenSSL in one call with no
    surgery on its first block."""

    __slots__ = ("_cipher", "_block", "_method", "_pad", "_length", "_update", "_sm4", "_lock", "_zero", "_reset")

    def __init__(self, cipher: BlockCipher, padding: int = 2, length: int | None = None):
        self._cipher = cipher
        self._block = cipher.block_size
        self._method = padding
        self._length = length or cipher.block_size
        self._update = cipher.ecb_block_function
        self._pad = _padding(padding)  # chosen (and the method validated) once, not per message
        self._sm4 = cipher.algorithm is Algorithm.SM4
        if self._sm4:
            self._update = cipher.cbc_context()
            self._lock = threading.Lock()  # the running chain is shared state (worker threads MAC too)
            zero = cipher.zero_preimage()
            self._zero = int.from_bytes(zero)  # Z = D_K(0), as an integer
            self._reset = zero  # a fresh context's S is the zero IV: its reset block is Z itself

    def __repr__(self) -> str:
        return f"<CBCMAC {self._cipher.algorithm.value} pad={self._method} len={self._length}>"

    def mac(self, data: bytes) -> bytes:
        b = self._block
        data = self._pad(data, b)
        if self._sm4:  # the last block of CBC under a zero IV, in one call on the running chain
            with self._lock:
                tail = self._update(self._reset + data)[-16:]
                self._reset = (int.from_bytes(tail) ^ self._zero).to_bytes(16)
            return tail[: self._length]
        upd, fb = self._update, int.from_bytes
        h = 0
        for i in range(0, len(data), b):
            h = fb(upd((h ^ fb(data[i : i + b])).to_bytes(b)))
        return h.to_bytes(b)[: self._length]

    def verify(self, data: bytes, tag: bytes) -> None:
        verify(self.mac(data), tag)


def cbc_mac(cipher: BlockCipher, data: bytes, padding: int = 2, length: int | None = None) -> bytes:
    return CBCMAC(cipher, padding, length).mac(data)


def sm4_cbc_mac(key: bytes, data: bytes, length: int = 16) -> bytes:
    return CBCMAC(BlockCipher(Algorithm.SM4, key), 2, length).mac(data)


def cmac(algorithm: Algorithm | str, key: bytes, data: bytes, length: int | None = None) -> bytes:
    algorithm = Algorithm(algorithm)
    if algorithm is Algorithm.SM4:
        alg = algorithms.SM4(key) if len(key) == 16 else None
    elif algorithm is Algorithm.AES:
        alg = algorithms.AES(key) if len(key) in (16, 24, 32) else None
    else:
        raise InvalidKey("CMAC is offered for SM4 and AES only")
    if alg is None:
        raise InvalidKey(f"{algorithm.value} CMAC key has the wrong length ({len(key)} bytes)")
    c = _cmac.CMAC(alg)
    c.update(data)
    return c.finalize()[: length or 16]


def x919_mac(key: bytes, data: bytes, padding: int = 1) -> bytes:
    if len(key) != 16:
        raise InvalidKey(f"X9.19 needs a double-length DES key (16 bytes), got {len(key)}")
    left = _DES.new(key[:8], _DES.MODE_ECB)
    right = _DES.new(key[8:], _DES.MODE_ECB)
    data = _pad(data, 8, padding)
    h = bytes(8)
    for i in range(0, len(data), 8):
        h = left.encrypt(bytes(a ^ b for a, b in zip(h, data[i : i + 8])))
    return left.encrypt(right.decrypt(h))


def _xor_fold(data: bytes, block: int) -> bytes:
    data = data + bytes(-len(data) % block) if data else bytes(block)
    acc = 0
    for i in range(0, len(data), block):
        acc ^= int.from_bytes(data[i : i + block])
    return acc.to_bytes(block)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def cup_ecb_mac(cipher: BlockCipher, data: bytes) -> bytes:
    """China UnionPay POS "ECB" MAC; DES/3DES form for 8-byte ciphers, SM4 form for 16."""
    b = cipher.block_size
    expanded = _xor_fold(data, b).hex().upper().encode()
    c = cipher.encrypt_ecb(expanded[:b])
    c = cipher.encrypt_ecb(_xor(c, expanded[b:]))
    return c.hex().upper().encode()[:8]


def single_des_cipher(key: bytes) -> BlockCipher:
    """A BlockCipher for a single-length DES key (K||K as 3DES), as old POS MAKs are."""
    if len(key) != 8:
        raise InvalidKey(f"single DES key must be 8 bytes, got {len(key)}")
    return BlockCipher(Algorithm.TDES, key + key)


def verify(expected: bytes, tag: bytes) -> None:
    """Constant-time MAC comparison raising MACError."""
    if not _hmac.compare_digest(expected, tag):
        raise MACError("MAC mismatch")
