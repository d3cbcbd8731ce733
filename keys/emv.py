"""EMV application cryptograms (ARQC/TC/AAC) and ARPC method 1, for two card families.

EMV_TDES  international EMV, double-length 3DES (EMV 4.3 Book 2, Annex A1.4.1 option A,
          A1.3.1 common session key, A1.2.1 MAC, section 8.2.1 ARPC method 1).
PBOC_SM4  China UnionPay PBOC 3.0 cards on SM4 (16-byte blocks).

The exact formulas, their sources and which parts are analogies rather than quotations
are in docs/emv-crypto.md. Error messages never carry key bytes or a full PAN.

An issuer verifies many cryptograms: `CardKey` keeps one card's ICC master key (derived
once, as its key schedule) and checks an ARQC and makes its ARPC with one short-lived
cipher context for the session key (`_SessionCipher`), which serves that ATC only.
"""
from __future__ import annotations

import enum
import functools
import hmac

from Crypto.Cipher import DES as _DES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers.algorithms import SM4  # not through the module's deprecation wrapper

from .errors import CryptoError, InvalidKey
from .symmetric import Algorithm, BlockCipher, pad_iso9797_m2

try:
    # What Cipher(algorithm, mode).encryptor() calls once its checks have passed. The issuer
    # makes an SM4 context per authorisation (the session key's), and those checks (ABC
    # isinstance, the mode's validation) cost more than the OpenSSL context itself; here
    # the algorithm is always SM4 with a checked 16-byte key and the modes are the two
    # below. cryptography is pinned (pyproject.toml); without this entry point, the public way.
    from cryptography.hazmat.bindings._rust import openssl as _rust_openssl

    _new_encryptor = _rust_openssl.ciphers.create_encryption_ctx
except (ImportError, AttributeError):  # pragma: no cover - another cryptography release
    def _new_encryptor(algorithm, mode):
        return Cipher(algorithm, mode).encryptor()

__all__ = [
    "CardFamily",
    "EMVDataError",
    "derive_icc_master_key",
    "derive_session_key",
    "generate_ac",
    "verify_ac",
    "generate_arpc_method1",
    "arqc_session",
    "CardKey",
]

AC_LENGTH = 8  # ARQC/TC/AAC and ARPC are 8 bytes in both families
_KEY_LENGTH = 16  # EMV uses double-length 3DES keys only; SM4 keys are 16 bytes


class CardFamily(str, enum.Enum):
    EMV_TDES = "EMV_TDES"
    PBOC_SM4 = "PBOC_SM4"

    @property
    def algorithm(self) -> Algorithm:
        return Algorithm.TDES if self is CardFamily.EMV_TDES else Algorithm.SM4


class EMVDataError(CryptoError, ValueError):
    """Card or transaction data (PAN, PSN, ATC, ARC, UN, ARQC) of the wrong form."""


def mask_pan(pan: str) -> str:
    """first6****last4; anything too short to mask safely is hidden entirely."""
    return f"{pan[:6]}****{pan[-4:]}" if len(pan) >= 12 else "****"


def _family(family: CardFamily | str) -> CardFamily:
    if type(family) is CardFamily:  # every step of an authorisation checks it: skip the enum lookup
        return family
    try:
        return CardFamily(family)
    except ValueError:
        raise EMVDataError(f"unknown card family {family!r}; use EMV_TDES or PBOC_SM4") from None


def _key(family: CardFamily, key: bytes, role: str) -> bytes:
    if not isinstance(key, (bytes, bytearray)):
        raise InvalidKey(f"{role} must be bytes")
    if len(key) != _KEY_LENGTH:
        raise InvalidKey(f"{role} must be {_KEY_LENGTH} bytes for {family.value}, got {len(key)}")
    return bytes(key)


def _cipher(family: CardFamily, key: bytes, role: str) -> BlockCipher:
    return _cached_cipher(family.algorithm, _key(family, key, role))


@functools.lru_cache(maxsize=4096)
def _cached_cipher(algorithm: Algorithm, key: bytes) -> BlockCipher:
    # issuer and ICC master keys recur on every authorisation: keep their key schedules
    return BlockCipher(algorithm, key)


def _fixed(value: bytes, length: int, name: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != length:
        got = len(value) if isinstance(value, (bytes, bytearray)) else type(value).__name__
        raise EMVDataError(f"{name} must be {length} bytes, got {got}")
    return bytes(value)


def _xor(a: bytes, b: bytes) -> bytes:
    if len(a) != len(b):
        raise ValueError(f"XOR of {len(a)} and {len(b)} bytes")
    return (int.from_bytes(a) ^ int.from_bytes(b)).to_bytes(len(a))


# DES keys carry a parity bit per byte; EMV sets it odd on derived keys so HSMs accept them.
_ODD_PARITY = bytes(b ^ (1 - bin(b).count("1") % 2) for b in range(256))


def _odd_parity(key: bytes) -> bytes:
    return bytes(key).translate(_ODD_PARITY)


def _cbc_last_block(encrypt_block, padded: bytes, size: int) -> bytes:
    """The last block of CBC under a zero IV, chained one block call at a time on an ECB
    context (the 3DES MAC's single-DES part: a CBC context would be one more to make)."""
    h, from_bytes = 0, int.from_bytes
    for i in range(0, len(padded), size):
        h = from_bytes(encrypt_block((h ^ from_bytes(padded[i : i + size])).to_bytes(size)))
    return h.to_bytes(size)


def _pan_block(pan: str, psn: str) -> bytes:
    if not isinstance(pan, str) or not (pan.isascii() and pan.isdigit()) or not 12 <= len(pan) <= 19:
        # Say nothing of the value: it may be a real PAN with a typo in it.
        size = len(pan) if isinstance(pan, str) else type(pan).__name__
        raise EMVDataError(f"PAN must be 12-19 decimal digits (got {size} characters)")
    if not isinstance(psn, str) or len(psn) != 2 or not (psn.isascii() and psn.isdigit()):
        raise EMVDataError(f"PAN sequence number for PAN {mask_pan(pan)} must be 2 decimal digits")
    # Option A: the rightmost 16 digits of PAN || PSN, left-padded with zeros, packed as BCD.
    return bytes.fromhex((pan + psn)[-16:].rjust(16, "0"))


def derive_icc_master_key(
    family: CardFamily | str, issuer_master_key: bytes, pan: str, psn: str = "00"
) -> bytes:
    """ICC master key (UDK) from the issuer master key, option A: ENC(IMK)[Y || ~Y].

    For 3DES that is two 8-byte blocks (left and right key halves), then odd parity; for
    SM4 the same 16 bytes form one block and the ciphertext is the key (SM4 has no parity).
    """
    family = _family(family)
    y = _pan_block(pan, psn)
    key = _cipher(family, issuer_master_key, "issuer master key").encrypt_ecb(y + _xor(y, b"\xff" * 8))
    return _odd_parity(key) if family is CardFamily.EMV_TDES else key


def derive_session_key(
    family: CardFamily | str, icc_master_key: bytes, atc: bytes, *, un: bytes | None = None
) -> bytes:
    """AC session key from the ICC master key and the 2-byte ATC.

    EMV_TDES: EMV common session key, R = ATC || 00 00 || (UN or 00 00 00 00);
              SK = 3DES(MK)[R with byte 3 = F0] || 3DES(MK)[R with byte 3 = 0F], odd parity.
    PBOC_SM4: SK = SM4(MK)[00*6 || ATC || 00*6 || (ATC XOR FFFF)]; no UN form exists.
    """
    family = _family(family)
    atc = _fixed(atc, 2, "ATC")
    return _session_key(family, _cipher(family, icc_master_key, "ICC master key").encrypt_ecb, atc, un)


def _session_key(family: CardFamily, encrypt_ecb, atc: bytes, un: bytes | None = None) -> bytes:
    """`derive_session_key` with the ICC master key's ECB encryption, for a checked 2-byte ATC."""
    if family is CardFamily.PBOC_SM4:
        if un is not None:
            raise EMVDataError("PBOC_SM4 session keys take no unpredictable number")
        return encrypt_ecb(bytes(6) + atc + bytes(6) + _xor(atc, b"\xff\xff"))
    tail = bytes(4) if un is None else _fixed(un, 4, "unpredictable number")
    return _odd_parity(encrypt_ecb(atc + b"\xf0\x00" + tail + atc + b"\x0f\x00" + tail))


_ZERO_BLOCK = bytes(16)
_SIX_ZEROS = bytes(6)
_CBC_ZERO_IV = modes.CBC(_ZERO_BLOCK)  # a mode object holds only its IV: one serves every key
_ECB = modes.ECB()


class _SessionCipher:
    """Block encryption under one AC session key, for the one authorisation it serves: the
    cryptogram's MAC, then the ARPC, from as few cipher contexts as the family allows.
    (A session key never comes back, so keeping its key schedule, as `_cached_cipher`
    does for keys that recur, would only push those out.)

    PBOC_SM4: one SM4-CBC context under a zero IV. The MAC is the last block it puts out
    for the padded data; after that, one block X is encrypted alone (ECB) by feeding it
    X XOR the last ciphertext block, since the context chains from that block.
    EMV_TDES: single-DES contexts for the two halves K1, K2 of the key. The MAC's CBC
    part is single DES under K1, and 3DES (K1, K2, K1) is E_K1(D_K2(E_K1(x))): two
    single-DES contexts cost less than the DES3 one and the DES one they replace, and a
    degenerate key (K1 = K2 up to parity) gives single DES by itself, as BlockCipher runs it.
    """

    __slots__ = ("family", "_encrypt", "_decrypt_k2", "_last")

    def __init__(self, family: CardFamily, key: bytes):
        self.family = family
        if family is CardFamily.PBOC_SM4:
            self._last = _ZERO_BLOCK  # what the CBC context chains from
            self._encrypt = _new_encryptor(SM4(key), _CBC_ZERO_IV).update
        else:
            self._encrypt = _DES.new(key[:8], _DES.MODE_ECB).encrypt  # DES ignores the parity bits
            self._decrypt_k2 = _DES.new(key[8:], _DES.MODE_ECB).decrypt

    def _tdes(self, block: bytes) -> bytes:
        e = self._encrypt
        return e(self._decrypt_k2(e(block)))

    def encrypt_block(self, block: bytes) -> bytes:
        """ENC(K)[block] for one whole block."""
        if self.family is CardFamily.PBOC_SM4:
            self._last = self._encrypt(_xor(block, self._last))
            return self._last
        return self._tdes(block)

    def mac(self, data: bytes) -> bytes:
        """The 8-byte application cryptogram of `data` (ISO 9797-1 padding method 2)."""
        if not isinstance(data, (bytes, bytearray)):
            raise EMVDataError("cryptogram data must be bytes")
        if self.family is CardFamily.PBOC_SM4:
            # Plain CBC-MAC (ISO 9797-1 algorithm 1), leftmost 8 bytes of the last ciphertext block.
            self._last = self._encrypt(pad_iso9797_m2(bytes(data), 16))[-16:]
            return self._last[:AC_LENGTH]
        # ISO 9797-1 MAC algorithm 3: single-DES CBC under K1 for all blocks but the last,
        # then full 3DES (K1, K2, K1) on the last one.
        padded = pad_iso9797_m2(bytes(data), 8)
        chain = _cbc_last_block(self._encrypt, padded[:-8], 8)
        return self._tdes(_xor(chain, padded[-8:]))

    def arpc(self, arqc: bytes, arc: bytes) -> bytes:
        """ARPC method 1 under this key (`generate_arpc_method1`)."""
        return self.encrypt_block(_arpc_input(self.family, arqc, arc))[:AC_LENGTH]


def _arpc_input(family: CardFamily, arqc: bytes, arc: bytes) -> bytes:
    """ARQC XOR (ARC || 00*6), zero-padded to the family's block."""
    y = _xor(_fixed(arqc, AC_LENGTH, "ARQC"), _fixed(arc, 2, "ARC") + bytes(6))
    return y.ljust(family.algorithm.block_size, b"\x00")


def _mac(family: CardFamily, session_key: bytes, data: bytes) -> bytes:
    return _SessionCipher(family, _key(family, session_key, "session key")).mac(data)


def generate_ac(family: CardFamily | str, session_key: bytes, data: bytes) -> bytes:
    """8-byte application cryptogram (ARQC, TC or AAC) over the CDOL-selected data."""
    return _mac(_family(family), session_key, data)


def verify_ac(family: CardFamily | str, session_key: bytes, data: bytes, ac: bytes) -> bool:
    """True when `ac` is the cryptogram of `data`; compared in constant time."""
    expected = _mac(_family(family), session_key, data)
    return isinstance(ac, (bytes, bytearray)) and hmac.compare_digest(expected, bytes(ac))


def generate_arpc_method1(
    family: CardFamily | str, session_key: bytes, arqc: bytes, arc: bytes
) -> bytes:
    """ARPC method 1: ENC(K)[ (ARQC XOR (ARC || 00*6)) zero-padded to a block ], leftmost 8.

    EMV 4.x Book 2 section 8.2.1 names SK_AC as K. Some scheme profiles (Visa CVN 10,
    M/Chip CVN 16/17) use the ICC master key instead: pass that key here for those.
    """
    family = _family(family)
    cipher = _cipher(family, session_key, "ARPC key")
    return cipher.encrypt_ecb(_arpc_input(family, arqc, arc))[:AC_LENGTH]


def arqc_session(
    family: CardFamily | str, issuer_master_key: bytes, pan: str, psn: str, atc: bytes
) -> bytes:
    """Issuer side in one call: IMK -> ICC master key -> AC session key for this ATC."""
    family = _family(family)
    _fixed(atc, 2, "ATC")  # fail on the cheap check before any key work
    return derive_session_key(family, derive_icc_master_key(family, issuer_master_key, pan, psn), atc)


class CardKey:
    """The issuer's side of one card: its ICC master key (option A), derived from the
    issuer master key once and kept as its key schedule, for the card's next ARQCs.

    Holds a clear key: only the HSM keeps these (keys.hsm), and never shows them."""

    __slots__ = ("family", "_encrypt_ecb")

    def __init__(self, family: CardFamily | str, issuer_master_key: bytes, pan: str, psn: str = "00"):
        self.family = family = _family(family)
        key = derive_icc_master_key(family, issuer_master_key, pan, psn)
        # it only ever encrypts whole blocks (session keys): for SM4 the bare ECB context is enough
        self._encrypt_ecb = (_new_encryptor(SM4(key), _ECB).update if family is CardFamily.PBOC_SM4
                             else BlockCipher(family.algorithm, key).encrypt_ecb)

    def __repr__(self) -> str:
        return f"<CardKey {self.family.value}>"

    def check_arqc(self, atc: bytes, data: bytes, arqc: bytes, arc: bytes) -> bytes | None:
        """The ARPC (method 1, under the AC session key) answering `arc` when `arqc` is the
        card's cryptogram of `data` at this ATC; None when it is not. Compared in constant time."""
        atc = _fixed(atc, 2, "ATC")
        if self.family is CardFamily.PBOC_SM4:
            return self._check_arqc_sm4(atc, data, arqc, arc)
        session = _SessionCipher(self.family, _session_key(self.family, self._encrypt_ecb, atc))
        expected = session.mac(data)
        if not (isinstance(arqc, (bytes, bytearray)) and hmac.compare_digest(expected, bytes(arqc))):
            return None
        return session.arpc(arqc, arc)

    def _check_arqc_sm4(self, atc: bytes, data: bytes, arqc: bytes, arc: bytes) -> bytes | None:
        """`check_arqc` of a PBOC_SM4 card: what `_session_key` and `_SessionCipher` do for
        it, written out in one place (the issuer's per-sale path: their calls, the object and
        the XORs of whole byte strings cost about as much as the SM4 work itself).
        SK = SM4(MK)[00*6 || ATC || 00*6 || ATC XOR FFFF]; the MAC is the leftmost 8 bytes
        of the last block of SM4-CBC (zero IV) over the padded data; the ARPC is SM4(SK) of
        (ARQC XOR ARC || 00*6) || 00*8, fed to the same CBC context XOR its last block."""
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray)):
                raise EMVDataError("cryptogram data must be bytes")
            data = bytes(data)
        session_key = self._encrypt_ecb(_SIX_ZEROS + atc + _SIX_ZEROS + (int.from_bytes(atc) ^ 0xFFFF).to_bytes(2))
        encrypt = _new_encryptor(_session_sm4(session_key), _CBC_ZERO_IV).update
        last = encrypt(pad_iso9797_m2(data, 16))[-16:]
        if not (isinstance(arqc, (bytes, bytearray)) and hmac.compare_digest(last[:AC_LENGTH], bytes(arqc))):
            return None
        x = (int.from_bytes(_fixed(arqc, AC_LENGTH, "ARQC")) ^ int.from_bytes(_fixed(arc, 2, "ARC")) << 48) << 64
        return encrypt((x ^ int.from_bytes(last)).to_bytes(16))[:AC_LENGTH]


def _session_sm4(key: bytes) -> SM4:
    """SM4(key) for a session key of 16 bytes (an SM4 block, so by construction): made without
    the constructor's byte-like and key-size checks, which cost more than making the object."""
    algorithm = object.__new__(SM4)  # SM4 defines no __new__ and its __init__ only sets .key
    algorithm.key = key
    return algorithm
