"""SM2 (GB/T 32918) through the system OpenSSL 3 libcrypto, by ctypes.

Signatures are raw r||s (64 bytes), SM3 over Z||M with the signer ID; ciphertexts are
raw C1||C3||C2 (GM/T 0003). OpenSSL speaks DER for both: we convert here in Python.
See /work/shared/CRYPTO.md for why ctypes and not a PyPI package.
"""
from __future__ import annotations

import base64
import binascii
import ctypes
import functools
import sys
import threading
import weakref
from ctypes import POINTER, Structure, byref, c_char_p, c_int, c_long, c_size_t, c_uint, c_ulong, c_void_p

from .errors import CryptoError, DecryptionError, InvalidKey, InvalidSignature, SM2Unavailable

__all__ = ["DEFAULT_SIGNER_ID", "SM2PrivateKey", "SM2PublicKey", "signature_to_der", "signature_from_der",
           "libcrypto_info"]

DEFAULT_SIGNER_ID = b"1234567812345678"
_DEFAULT_LIBRARY = "libcrypto.so.3"

# The SM2 recommended curve (GB/T 32918.5): y^2 = x^3 + ax + b over F_p, prime order n, cofactor 1.
_P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
_A = _P - 3
_B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
_N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
_NID_SM2 = 1172
_KEYPAIR, _PUBLIC_KEY = 0x87, 0x86  # EVP_PKEY_KEYPAIR / EVP_PKEY_PUBLIC_KEY selections
_UNSIGNED_INTEGER, _UTF8_STRING, _OCTET_STRING = 2, 4, 5  # OSSL_PARAM data types


class _Param(Structure):  # OSSL_PARAM of <openssl/core.h>; built here so there is nothing to free
    _fields_ = [("key", c_char_p), ("data_type", c_uint), ("data", c_void_p), ("data_size", c_size_t),
                ("return_size", c_size_t)]


# Every function we call, typed once: "name ret(args)" with p void*, P void**, s char*, i int,
# l long, L unsigned long, z size_t, Z size_t*, - void. Typed calls convert without guessing.
_PROTOTYPES = """
OpenSSL_version s(i)  ERR_get_error L()  ERR_clear_error -()  ERR_error_string_n -(Lsz)
EVP_MD_fetch p(pss)  EVP_MD_free -(p)  EVP_SIGNATURE_fetch p(pss)  EVP_SIGNATURE_free -(p)
EVP_ASYM_CIPHER_fetch p(pss)  EVP_ASYM_CIPHER_free -(p)
EVP_MD_CTX_new p()  EVP_MD_CTX_free -(p)  EVP_MD_CTX_get_pkey_ctx p(p)
EVP_DigestSignInit i(ppppp)  EVP_DigestVerifyInit i(ppppp)  EVP_DigestSign i(psZsz)  EVP_DigestVerify i(pszsz)
EVP_PKEY_CTX_new_from_name p(pss)  EVP_PKEY_CTX_new_from_pkey p(pps)  EVP_PKEY_CTX_free -(p)
EVP_PKEY_CTX_set_params i(pp)  EVP_PKEY_fromdata_init i(p)  EVP_PKEY_fromdata i(pPip)
EVP_PKEY_keygen_init i(p)  EVP_PKEY_generate i(pP)  EVP_PKEY_free -(p)  EVP_PKEY_get_bn_param i(psP)
EVP_PKEY_get_octet_string_param i(psszZ)  EVP_PKEY_get_utf8_string_param i(psszZ)
EVP_PKEY_encrypt_init i(p)  EVP_PKEY_encrypt i(psZsz)  EVP_PKEY_decrypt_init i(p)  EVP_PKEY_decrypt i(psZsz)
BN_bin2bn p(sip)  BN_bn2binpad i(psi)  BN_clear_free -(p)  BN_CTX_new p()  BN_CTX_free -(p)
EC_GROUP_new_by_curve_name p(i)  EC_GROUP_free -(p)  EC_POINT_new p(p)  EC_POINT_free -(p)
EC_POINT_mul i(pppppp)  EC_POINT_point2oct z(ppiszp)
d2i_PUBKEY p(pPl)  i2d_PUBKEY i(pP)  d2i_PKCS8_PRIV_KEY_INFO p(pPl)  i2d_PKCS8_PRIV_KEY_INFO i(pP)
EVP_PKCS82PKEY p(p)  EVP_PKEY2PKCS8 p(p)  PKCS8_PRIV_KEY_INFO_free -(p)
"""
_CTYPES = {"p": c_void_p, "P": POINTER(c_void_p), "s": c_char_p, "i": c_int, "l": c_long, "L": c_ulong,
           "z": c_size_t, "Z": POINTER(c_size_t), "-": None}


def _load_libcrypto(path: str) -> ctypes.CDLL:
    """Open `path`, check it is OpenSSL >= 3 with SM2 and SM3, and type every function we call."""
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise SM2Unavailable(f"cannot load libcrypto {path!r}: {e}") from None
    try:
        lib.OpenSSL_version_num.restype = c_ulong
        lib.OpenSSL_version_num.argtypes = []
        num = lib.OpenSSL_version_num()
    except AttributeError:
        raise SM2Unavailable(f"{path!r} is not an OpenSSL libcrypto (no OpenSSL_version_num)") from None
    if num < 0x30000000:
        lib.OpenSSL_version.restype = c_char_p  # present since 1.1.0; 1.0.x is caught by the except
        try:
            found = lib.OpenSSL_version(0).decode(errors="replace")
        except AttributeError:
            found = f"version {num:#x}"
        raise SM2Unavailable(f"{path!r} is {found}; SM2 through EVP needs OpenSSL >= 3.0")
    try:
        for name, sig in zip(*[iter(_PROTOTYPES.split())] * 2):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = _CTYPES[sig[0]], [_CTYPES[c] for c in sig[2:-1]]
    except AttributeError as e:
        raise SM2Unavailable(f"{path!r} (OpenSSL {num:#x}) lacks a needed function: {e}") from None
    version = lib.OpenSSL_version(0).decode(errors="replace")
    sig = lib.EVP_SIGNATURE_fetch(None, b"SM2", None)
    ciph = lib.EVP_ASYM_CIPHER_fetch(None, b"SM2", None)
    sm3 = lib.EVP_MD_fetch(None, b"SM3", None)
    lib.EVP_SIGNATURE_free(sig)
    lib.EVP_ASYM_CIPHER_free(ciph)
    lib.ERR_clear_error()
    if not (sig and ciph and sm3):
        lib.EVP_MD_free(sm3)
        raise SM2Unavailable(f"{path!r} ({version}) has no SM2 signature/encryption or no SM3 "
                             "(built with no-sm2/no-sm3, or restricted by its provider configuration)")
    lib.sm2_sm3 = sm3  # fetched once, kept for the process: every signature reuses it
    lib.sm2_version = version
    lib.sm2_path = path
    return lib


_L = None
_load_lock = threading.Lock()


def _lib():
    global _L
    if _L is None:
        with _load_lock:
            if _L is None:
                _L = _load_libcrypto(_DEFAULT_LIBRARY)
    return _L


def libcrypto_info() -> str:
    """Which libcrypto file and version this module uses, e.g. for a startup log line."""
    lib = _lib()
    addr = ctypes.cast(lib.OpenSSL_version, c_void_p).value
    where = lib.sm2_path
    try:  # the mapping that holds one of its functions names the real file behind the soname
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split()
                lo, hi = (int(v, 16) for v in parts[0].split("-"))
                if lo <= addr < hi and len(parts) >= 6:
                    where = parts[5]
                    break
    except OSError:
        pass
    return f"{where}: {lib.sm2_version}"


def _why(lib) -> str:
    """Drain this thread's OpenSSL error queue (it would otherwise keep stale entries); return the last."""
    last = 0
    for _ in range(64):
        code = lib.ERR_get_error()
        if not code:
            break
        last = code
    if not last:
        return ""
    buf = ctypes.create_string_buffer(256)
    lib.ERR_error_string_n(last, buf, 256)
    return f" ({buf.value.decode(errors='replace')})"


# ---------------------------------------------------------------- DER and points, in Python
def _der_len(n: int) -> bytes:
    return bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")


def _der_tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(body)) + body


def _der_int(v: int) -> bytes:
    return _der_tlv(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))  # +1 byte keeps it positive


def _der_take(buf: bytes, pos: int, tag: int) -> tuple[int, int]:
    """Bounds of the value of the TLV at `pos`; strict DER (minimal definite lengths)."""
    if pos + 2 > len(buf) or buf[pos] != tag:
        raise ValueError
    n, pos = buf[pos + 1], pos + 2
    if n & 0x80:
        k = n & 0x7F
        if not 1 <= k <= 4 or pos + k > len(buf) or buf[pos] == 0:
            raise ValueError
        n, pos = int.from_bytes(buf[pos:pos + k], "big"), pos + k
        if n < 0x80:
            raise ValueError
    if pos + n > len(buf):
        raise ValueError
    return pos, pos + n


def _der_uint256(buf: bytes, pos: int) -> tuple[int, int]:
    s, e = _der_take(buf, pos, 0x02)
    body = buf[s:e]
    if not body or body[0] & 0x80 or (len(body) > 1 and body[0] == 0 and not body[1] & 0x80):
        raise ValueError  # empty, negative or not minimal
    if len(body) > 33 or (len(body) == 33 and body[0]):
        raise ValueError  # wider than 256 bits
    return int.from_bytes(body, "big"), e


def signature_to_der(raw64: bytes) -> bytes:
    """Raw r||s (64 bytes) -> DER SEQUENCE { INTEGER r, INTEGER s }."""
    if len(raw64) != 64:
        raise InvalidSignature(f"an SM2 signature is 64 bytes (r||s), got {len(raw64)}")
    r, s = int.from_bytes(raw64[:32], "big"), int.from_bytes(raw64[32:], "big")
    return _der_tlv(0x30, _der_int(r) + _der_int(s))


def signature_from_der(der: bytes) -> bytes:
    """DER SEQUENCE { INTEGER r, INTEGER s } -> raw r||s (64 bytes); strict DER."""
    try:
        s, e = _der_take(der, 0, 0x30)
        r, p = _der_uint256(der, s)
        sv, p = _der_uint256(der, p)
        if p != e or e != len(der):
            raise ValueError
    except (ValueError, TypeError):
        raise InvalidSignature("malformed DER SM2 signature") from None
    return r.to_bytes(32, "big") + sv.to_bytes(32, "big")


def _on_curve(x: int, y: int) -> bool:
    return x < _P and y < _P and (y * y - x * x * x - _A * x - _B) % _P == 0


def _uncompressed(point: bytes) -> bytes:
    """65-byte 04||x||y of an on-curve point given as 65 (04..) or 33 (02/03..) bytes."""
    if len(point) == 65 and point[0] == 4:
        x, y = int.from_bytes(point[1:33], "big"), int.from_bytes(point[33:], "big")
    elif len(point) == 33 and point[0] in (2, 3):
        x = int.from_bytes(point[1:], "big")
        y = pow((x * x * x + _A * x + _B) % _P, (_P + 1) // 4, _P)  # p = 3 mod 4: one exponentiation
        if y & 1 != point[0] & 1:
            y = _P - y
    else:
        raise InvalidKey(f"an SM2 public point is 65 bytes (04||x||y) or 33 (02/03||x), got {len(point)} "
                         f"bytes starting {point[:1].hex() or 'empty'}")
    if not _on_curve(x, y):
        raise InvalidKey("the SM2 public point is not on the curve")
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def _pem_decode(pem: bytes | str, label: bytes) -> bytes:
    text = pem.encode("ascii") if isinstance(pem, str) else bytes(pem)
    begin, end = b"-----BEGIN " + label + b"-----", b"-----END " + label + b"-----"
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise InvalidKey(f"no PEM block labelled {label.decode()!r} (encrypted and SEC1 keys are not accepted)")
    try:
        return base64.b64decode(b"".join(text[i + len(begin):j].split()), validate=True)
    except binascii.Error:
        raise InvalidKey(f"the PEM {label.decode()} body is not valid base64") from None


def _pem_encode(der: bytes, label: bytes) -> bytes:
    b64 = base64.b64encode(der)
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return b"-----BEGIN " + label + b"-----\n" + b"\n".join(lines) + b"\n-----END " + label + b"-----\n"


# ---------------------------------------------------------------- EVP_PKEY helpers
@functools.lru_cache(maxsize=64)
def _distid(signer_id: bytes):
    """A read-only OSSL_PARAM list setting the signer ID; cached, so the default ID costs nothing per call."""
    if len(signer_id) > 8190:  # ENTL is a 16-bit bit count; OpenSSL refuses 8191 bytes and more
        raise ValueError(f"the SM2 signer ID is at most 8190 bytes, got {len(signer_id)}")
    buf = ctypes.create_string_buffer(signer_id, max(len(signer_id), 1))
    params = (_Param * 2)()
    params[0] = _Param(b"distid", _OCTET_STRING, ctypes.addressof(buf), len(signer_id), 0)
    return params, buf


def _pkey_fromdata(pub65: bytes, d: bytes | None) -> int:
    """A new SM2 EVP_PKEY from the public point (and the private scalar, if given)."""
    lib = _lib()
    group = b"SM2"
    scalar = ctypes.create_string_buffer(32)
    params = (_Param * 4)()
    params[0] = _Param(b"group", _UTF8_STRING, ctypes.cast(group, c_void_p), len(group), 0)
    params[1] = _Param(b"pub", _OCTET_STRING, ctypes.cast(pub65, c_void_p), 65, 0)
    if d is not None:  # OSSL_PARAM integers are in native byte order
        ctypes.memmove(scalar, d[::-1] if sys.byteorder == "little" else d, 32)
        params[2] = _Param(b"priv", _UNSIGNED_INTEGER, ctypes.addressof(scalar), 32, 0)
    ctx = lib.EVP_PKEY_CTX_new_from_name(None, b"SM2", None)
    pkey = c_void_p()
    try:
        if not ctx or lib.EVP_PKEY_fromdata_init(ctx) != 1 or lib.EVP_PKEY_fromdata(
                ctx, byref(pkey), _KEYPAIR if d is not None else _PUBLIC_KEY, params) != 1:
            raise InvalidKey("OpenSSL refused the SM2 key" + _why(lib))
        return pkey.value
    finally:
        ctypes.memset(scalar, 0, 32)
        lib.EVP_PKEY_CTX_free(ctx)


def _derive_public(d: bytes) -> bytes:
    """d*G as 04||x||y (EVP_PKEY_fromdata would not compute it)."""
    lib = _lib()
    group = lib.EC_GROUP_new_by_curve_name(_NID_SM2)
    bnctx = lib.BN_CTX_new()
    point = lib.EC_POINT_new(group) if group else None
    bn = lib.BN_bin2bn(d, 32, None)
    out = ctypes.create_string_buffer(65)
    try:
        if not (group and bnctx and point and bn) or lib.EC_POINT_mul(group, point, bn, None, None, bnctx) != 1 \
                or lib.EC_POINT_point2oct(group, point, 4, out, 65, bnctx) != 65:
            raise CryptoError("could not derive the SM2 public point" + _why(lib))
        return out.raw
    finally:
        lib.BN_clear_free(bn)
        lib.EC_POINT_free(point)
        lib.BN_CTX_free(bnctx)
        lib.EC_GROUP_free(group)


def _export(lib, pkey: int, want_private: bool) -> tuple[bytes | None, bytes]:
    """(d or None, 04||x||y) of an EVP_PKEY that must be on the SM2 curve."""
    name, n = ctypes.create_string_buffer(64), c_size_t(0)
    if lib.EVP_PKEY_get_utf8_string_param(pkey, b"group", name, 64, byref(n)) != 1 or name.value != b"SM2":
        lib.ERR_clear_error()
        raise InvalidKey("not an SM2 key (the curve must be SM2, OID 1.2.156.10197.1.301)")
    pub = ctypes.create_string_buffer(133)
    if lib.EVP_PKEY_get_octet_string_param(pkey, b"pub", pub, 133, byref(n)) != 1:
        raise InvalidKey("the SM2 key has no public point" + _why(lib))
    point = _uncompressed(pub.raw[:n.value])
    if not want_private:
        return None, point
    bn, d = c_void_p(), ctypes.create_string_buffer(32)
    try:
        if lib.EVP_PKEY_get_bn_param(pkey, b"priv", byref(bn)) != 1 or lib.BN_bn2binpad(bn, d, 32) != 32:
            raise InvalidKey("the SM2 key has no usable private scalar" + _why(lib))
        return d.raw, point
    finally:
        lib.BN_clear_free(bn)
        ctypes.memset(d, 0, 32)


def _i2d(lib, fn, obj: int) -> bytes:
    n = fn(obj, None)
    if n <= 0:
        raise CryptoError("OpenSSL could not encode the SM2 key" + _why(lib))
    buf = ctypes.create_string_buffer(n)
    try:
        if fn(obj, byref(c_void_p(ctypes.addressof(buf)))) != n:
            raise CryptoError("OpenSSL could not encode the SM2 key" + _why(lib))
        return buf.raw
    finally:
        ctypes.memset(buf, 0, n)  # it may hold a private key


def _d2i(lib, fn, der: bytes, what: str) -> int:
    """Decode with a d2i_* function; the whole input must be one structure."""
    der = bytes(der)
    buf = ctypes.create_string_buffer(der, max(len(der), 1))
    cur = c_void_p(ctypes.addressof(buf))
    try:
        obj = fn(None, byref(cur), len(der))
        if obj and cur.value - ctypes.addressof(buf) == len(der):
            return obj
        (lib.PKCS8_PRIV_KEY_INFO_free if fn is lib.d2i_PKCS8_PRIV_KEY_INFO else lib.EVP_PKEY_free)(obj)
        raise InvalidKey(f"not a DER {what}" + (_why(lib) if not obj else " (trailing data)"))
    finally:
        ctypes.memset(buf, 0, len(der))


# ---------------------------------------------------------------- keys
class SM2PublicKey:
    __slots__ = ("_pkey", "_point", "__weakref__")

    def __init__(self):
        raise TypeError("use SM2PublicKey.from_bytes / from_der / from_pem, or SM2PrivateKey.public_key")

    @classmethod
    def _adopt(cls, pkey: int, point: bytes):
        self = object.__new__(cls)
        self._pkey, self._point = pkey, point
        weakref.finalize(self, _L.EVP_PKEY_free, pkey)  # the EVP_PKEY lives exactly as long as this object
        return self

    @classmethod
    def from_bytes(cls, point: bytes) -> "SM2PublicKey":
        point = _uncompressed(bytes(point))
        return cls._adopt(_pkey_fromdata(point, None), point)

    @classmethod
    def from_der(cls, der: bytes) -> "SM2PublicKey":
        lib = _lib()
        pkey = _d2i(lib, lib.d2i_PUBKEY, der, "SubjectPublicKeyInfo")
        try:
            _, point = _export(lib, pkey, False)
        finally:
            lib.EVP_PKEY_free(pkey)
        return cls.from_bytes(point)  # rebuilt as an SM2-typed key (an EC-typed one would sign ECDSA)

    @classmethod
    def from_pem(cls, pem: bytes) -> "SM2PublicKey":
        return cls.from_der(_pem_decode(pem, b"PUBLIC KEY"))

    def to_bytes(self, compressed: bool = False) -> bytes:
        return bytes([2 | (self._point[64] & 1)]) + self._point[1:33] if compressed else self._point

    def to_der(self) -> bytes:
        return _i2d(_L, _L.i2d_PUBKEY, self._pkey)

    def to_pem(self) -> bytes:
        return _pem_encode(self.to_der(), b"PUBLIC KEY")

    def verify(self, signature: bytes, data: bytes, signer_id: bytes = DEFAULT_SIGNER_ID) -> None:
        """Raise InvalidSignature unless `signature` (r||s) is valid for `data` under this key and ID."""
        der = signature_to_der(signature)
        if type(data) is not bytes:
            data = bytes(data)
        params = _distid(bytes(signer_id))[0]
        lib = _L
        mctx = lib.EVP_MD_CTX_new()
        try:
            # the ID must be set after Init: OpenSSL 3.0 drops a distid given to Init itself
            if not mctx or lib.EVP_DigestVerifyInit(mctx, None, lib.sm2_sm3, None, self._pkey) != 1 \
                    or lib.EVP_PKEY_CTX_set_params(lib.EVP_MD_CTX_get_pkey_ctx(mctx), params) != 1:
                raise CryptoError("SM2 verify setup failed" + _why(lib))
            if lib.EVP_DigestVerify(mctx, der, len(der), data, len(data)) != 1:
                lib.ERR_clear_error()
                raise InvalidSignature("SM2 signature does not verify")
        finally:
            lib.EVP_MD_CTX_free(mctx)

    def encrypt(self, plaintext: bytes) -> bytes:
        """C1||C3||C2 (SM3), with a fresh random k from OpenSSL's DRBG."""
        if type(plaintext) is not bytes:
            plaintext = bytes(plaintext)
        if not plaintext:  # OpenSSL 3.0 fails on it, and GB/T 32918.4 has no empty message
            raise ValueError("SM2 encryption needs a non-empty plaintext")
        lib = _L
        ctx = lib.EVP_PKEY_CTX_new_from_pkey(None, self._pkey, None)
        size = c_size_t(0)
        try:
            if not ctx or lib.EVP_PKEY_encrypt_init(ctx) != 1 \
                    or lib.EVP_PKEY_encrypt(ctx, None, byref(size), plaintext, len(plaintext)) != 1:
                raise CryptoError("SM2 encrypt setup failed" + _why(lib))
            out = ctypes.create_string_buffer(size.value)
            if lib.EVP_PKEY_encrypt(ctx, out, byref(size), plaintext, len(plaintext)) != 1:
                raise CryptoError("SM2 encryption failed" + _why(lib))
        finally:
            lib.EVP_PKEY_CTX_free(ctx)
        der = out.raw[:size.value]
        s, e = _der_take(der, 0, 0x30)  # OpenSSL's SEQUENCE { x, y, C3, C2 }
        x, p = _der_uint256(der, s)
        y, p = _der_uint256(der, p)
        c3s, c3e = _der_take(der, p, 0x04)
        c2s, c2e = _der_take(der, c3e, 0x04)
        return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big") + der[c3s:c3e] + der[c2s:c2e]

    def __eq__(self, other):
        return isinstance(other, SM2PublicKey) and other._point == self._point

    def __hash__(self):
        return hash(self._point)

    def __repr__(self):
        return f"<SM2PublicKey {self._point[:3].hex()}..{self._point[-2:].hex()}>"

    def __reduce__(self):
        return SM2PublicKey.from_bytes, (self._point,)


class SM2PrivateKey:
    __slots__ = ("_pkey", "_point", "_public", "__weakref__")

    def __init__(self):
        raise TypeError("use SM2PrivateKey.generate / from_bytes / from_der / from_pem")

    @classmethod
    def _adopt(cls, pkey: int, point: bytes):
        self = object.__new__(cls)
        self._pkey, self._point, self._public = pkey, point, None
        weakref.finalize(self, _L.EVP_PKEY_free, pkey)
        return self

    @classmethod
    def generate(cls) -> "SM2PrivateKey":
        lib = _lib()
        ctx = lib.EVP_PKEY_CTX_new_from_name(None, b"SM2", None)
        pkey = c_void_p()
        try:
            if not ctx or lib.EVP_PKEY_keygen_init(ctx) != 1 or lib.EVP_PKEY_generate(ctx, byref(pkey)) != 1:
                raise CryptoError("SM2 key generation failed" + _why(lib))
            _, point = _export(lib, pkey.value, False)
        except BaseException:
            lib.EVP_PKEY_free(pkey)
            raise
        finally:
            lib.EVP_PKEY_CTX_free(ctx)
        return cls._adopt(pkey.value, point)

    @classmethod
    def from_bytes(cls, d: bytes) -> "SM2PrivateKey":
        """From the 32-byte big-endian scalar; 1 <= d <= n-2 (SM2 signing needs 1+d invertible)."""
        d = bytes(d)
        if len(d) != 32:
            raise InvalidKey(f"an SM2 private key is 32 bytes, got {len(d)}")
        if not 1 <= int.from_bytes(d, "big") <= _N - 2:
            raise InvalidKey("the SM2 private scalar is out of range [1, n-2]")
        point = _derive_public(d)
        return cls._adopt(_pkey_fromdata(point, d), point)

    @classmethod
    def from_der(cls, der: bytes) -> "SM2PrivateKey":
        lib = _lib()
        p8 = _d2i(lib, lib.d2i_PKCS8_PRIV_KEY_INFO, der, "PKCS#8 PrivateKeyInfo (unencrypted)")
        pkey = None
        try:
            pkey = lib.EVP_PKCS82PKEY(p8)
            if not pkey:
                raise InvalidKey("cannot read the PKCS#8 private key" + _why(lib))
            d, point = _export(lib, pkey, True)
        finally:
            lib.EVP_PKEY_free(pkey)
            lib.PKCS8_PRIV_KEY_INFO_free(p8)
        key = cls.from_bytes(d)  # rebuilt as an SM2-typed key with a public point we derived
        if key._point != point:
            raise InvalidKey("the public key inside the PKCS#8 does not match its private key")
        return key

    @classmethod
    def from_pem(cls, pem: bytes) -> "SM2PrivateKey":
        return cls.from_der(_pem_decode(pem, b"PRIVATE KEY"))

    def private_bytes(self) -> bytes:
        return _export(_L, self._pkey, True)[0]

    def to_der(self) -> bytes:
        lib = _L
        p8 = lib.EVP_PKEY2PKCS8(self._pkey)
        if not p8:
            raise CryptoError("OpenSSL could not build the PKCS#8 structure" + _why(lib))
        try:
            return _i2d(lib, lib.i2d_PKCS8_PRIV_KEY_INFO, p8)
        finally:
            lib.PKCS8_PRIV_KEY_INFO_free(p8)

    def to_pem(self) -> bytes:
        return _pem_encode(self.to_der(), b"PRIVATE KEY")

    @property
    def public_key(self) -> SM2PublicKey:
        if self._public is None:  # a race only builds two equal objects; one is kept
            self._public = SM2PublicKey._adopt(_pkey_fromdata(self._point, None), self._point)
        return self._public

    def sign(self, data: bytes, signer_id: bytes = DEFAULT_SIGNER_ID) -> bytes:
        """r||s over SM3(Z||data), Z from `signer_id` and the public key (GB/T 32918.2)."""
        if type(data) is not bytes:
            data = bytes(data)
        params = _distid(bytes(signer_id))[0]
        lib = _L
        mctx = lib.EVP_MD_CTX_new()
        sig, size = ctypes.create_string_buffer(80), c_size_t(80)
        try:
            if not mctx or lib.EVP_DigestSignInit(mctx, None, lib.sm2_sm3, None, self._pkey) != 1 \
                    or lib.EVP_PKEY_CTX_set_params(lib.EVP_MD_CTX_get_pkey_ctx(mctx), params) != 1 \
                    or lib.EVP_DigestSign(mctx, sig, byref(size), data, len(data)) != 1:
                raise CryptoError("SM2 signing failed" + _why(lib))
        finally:
            lib.EVP_MD_CTX_free(mctx)
        return signature_from_der(sig.raw[:size.value])

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Plaintext of C1||C3||C2; DecryptionError on a bad shape, C1 off the curve or a C3 mismatch."""
        if type(ciphertext) is not bytes:
            ciphertext = bytes(ciphertext)
        n = len(ciphertext) - 97
        if n < 1 or ciphertext[0] != 4:
            raise DecryptionError(f"an SM2 ciphertext is C1 (65 bytes, 04..) || C3 (32) || C2 (1 or more), "
                                  f"got {len(ciphertext)} bytes")
        x, y = int.from_bytes(ciphertext[1:33], "big"), int.from_bytes(ciphertext[33:65], "big")
        if not _on_curve(x, y):
            raise DecryptionError("C1 of the SM2 ciphertext is not a point on the curve")
        der = _der_tlv(0x30, _der_int(x) + _der_int(y) + _der_tlv(0x04, ciphertext[65:97])
                       + _der_tlv(0x04, ciphertext[97:]))
        lib = _L
        ctx = lib.EVP_PKEY_CTX_new_from_pkey(None, self._pkey, None)
        out, size = ctypes.create_string_buffer(n), c_size_t(n)
        try:
            if not ctx or lib.EVP_PKEY_decrypt_init(ctx) != 1:
                raise CryptoError("SM2 decrypt setup failed" + _why(lib))
            if lib.EVP_PKEY_decrypt(ctx, out, byref(size), der, len(der)) != 1 or size.value != n:
                lib.ERR_clear_error()
                raise DecryptionError("the SM2 ciphertext failed its integrity check (C3)")
            return out.raw
        finally:
            ctypes.memset(out, 0, n)
            lib.EVP_PKEY_CTX_free(ctx)

    def __repr__(self):
        return f"<SM2PrivateKey public={self._point[:2].hex()}..{self._point[-1:].hex()}>"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("an SM2PrivateKey cannot be pickled; export it explicitly (to_der/private_bytes)")

    def __copy__(self):
        return self  # immutable

    def __deepcopy__(self, memo):
        return self
