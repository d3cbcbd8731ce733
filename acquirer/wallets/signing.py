"""The signing and encryption schemes the three wallet styles use, both directions.

- Alipay style: the sorted `k=v&...` string of every non-empty parameter but `sign`,
  signed RSA2 (SHA256withRSA) or SM2 (SM3), base64; `sign_type` names which.
- WeChat v3 style: SM2-with-SM3 over `METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n` for
  requests and `TIMESTAMP\\nNONCE\\nBODY\\n` for answers and notifies; notify bodies carry
  an SM4-GCM encrypted resource (the associated data is authenticated, not hidden).
- UnionPay style: SM2 over the sorted `k=v&...` string without `signature`.

Signers hide where the private key lives: in memory for simulators and tests, in the
HSM (`HSMSigner`) for the host's SM2 keys.
"""
from __future__ import annotations

import base64
import binascii
import secrets
import string
from typing import Mapping, Protocol

from cryptography.exceptions import InvalidSignature as _RSAInvalid
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keys.errors import CryptoError
from keys.sm2 import SM2PrivateKey, SM2PublicKey
from keys.symmetric import sm4_gcm_decrypt, sm4_gcm_encrypt

RSA2, SM2 = "RSA2", "SM2"


class Signer(Protocol):
    algorithm: str

    def sign(self, data: bytes) -> bytes: ...


class Verifier(Protocol):
    algorithm: str

    def verify(self, signature: bytes, data: bytes) -> bool: ...


class SM2Signer:
    algorithm = SM2

    def __init__(self, key: SM2PrivateKey):
        self._key = key

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    @property
    def verifier(self) -> "SM2Verifier":
        return SM2Verifier(self._key.public_key)

    def private_pem(self) -> str:
        return self._key.to_pem().decode()

    def __repr__(self) -> str:
        return "SM2Signer(<private key>)"


class HSMSigner:
    """An SM2 SIGN key held by the host's HSM, by name: the key never leaves it."""

    algorithm = SM2

    def __init__(self, hsm, name: str):
        self._hsm, self.name = hsm, name

    def sign(self, data: bytes) -> bytes:
        return self._hsm.sign(self.name, data)

    @property
    def verifier(self) -> "SM2Verifier":
        return SM2Verifier(self._hsm.public_key(self.name))


class SM2Verifier:
    algorithm = SM2

    def __init__(self, key: SM2PublicKey):
        self.key = key

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self.key.verify(signature, data)
            return True
        except CryptoError:
            return False

    def to_pem(self) -> str:
        return self.key.to_pem().decode()


class RSA2Signer:
    algorithm = RSA2

    def __init__(self, key: rsa.RSAPrivateKey):
        self._key = key

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    @property
    def verifier(self) -> "RSA2Verifier":
        return RSA2Verifier(self._key.public_key())

    def private_pem(self) -> str:
        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()).decode()

    def __repr__(self) -> str:
        return "RSA2Signer(<private key>)"


class RSA2Verifier:
    algorithm = RSA2

    def __init__(self, key: rsa.RSAPublicKey):
        self.key = key

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self.key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            return True
        except (_RSAInvalid, ValueError):
            return False

    def to_pem(self) -> str:
        return self.key.public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def new_signer(algorithm: str):
    if algorithm == RSA2:
        return RSA2Signer(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    if algorithm == SM2:
        return SM2Signer(SM2PrivateKey.generate())
    raise ValueError(f"sign_type must be RSA2 or SM2, not {algorithm!r}")


def signer_from_pem(algorithm: str, pem: str | bytes):
    data = pem.encode() if isinstance(pem, str) else pem
    if algorithm == RSA2:
        return RSA2Signer(serialization.load_pem_private_key(data, password=None))
    return SM2Signer(SM2PrivateKey.from_pem(data))


def verifier_from_pem(algorithm: str, pem: str | bytes):
    data = pem.encode() if isinstance(pem, str) else pem
    if algorithm == RSA2:
        return RSA2Verifier(serialization.load_pem_public_key(data))
    return SM2Verifier(SM2PublicKey.from_pem(data))


def sign_b64(signer: Signer, text: str) -> str:
    return base64.b64encode(signer.sign(text.encode())).decode()


def verify_b64(verifier: Verifier, signature: str, text: str) -> bool:
    """False for a bad signature and for one that is not even base64: both are forgeries."""
    try:
        raw = base64.b64decode(signature or "", validate=True)
    except (binascii.Error, ValueError):
        return False
    return bool(raw) and verifier.verify(raw, text.encode())


def sorted_params(params: Mapping[str, str], exclude: tuple[str, ...] = ("sign",)) -> str:
    """`k=v&...` by key, leaving out empty values and the signature fields."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in exclude and params[k] not in ("", None))


def nonce_str(length: int = 32) -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(length))


# --- WeChat v3 style -----------------------------------------------------------------
WECHAT_SCHEMA = "WECHATPAY2-SM2-WITH-SM3"


def wechat_request_message(method: str, url: str, timestamp: str, nonce: str, body: str) -> str:
    return f"{method}\n{url}\n{timestamp}\n{nonce}\n{body}\n"


def wechat_answer_message(timestamp: str, nonce: str, body: str) -> str:
    return f"{timestamp}\n{nonce}\n{body}\n"


def wechat_authorization(mchid: str, serial_no: str, timestamp: str, nonce: str, signature: str) -> str:
    return (f'{WECHAT_SCHEMA} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{serial_no}"')


def parse_wechat_authorization(header: str) -> dict[str, str]:
    schema, _, rest = header.partition(" ")
    if schema != WECHAT_SCHEMA:
        raise ValueError(f"Authorization schema must be {WECHAT_SCHEMA}")
    fields = {}
    for part in rest.split(","):
        key, _, value = part.strip().partition("=")
        fields[key] = value.strip('"')
    missing = {"mchid", "nonce_str", "signature", "timestamp", "serial_no"} - fields.keys()
    if missing:
        raise ValueError(f"Authorization lacks {', '.join(sorted(missing))}")
    return fields


def encrypt_resource(key: bytes, plaintext: bytes, associated_data: str) -> dict[str, str]:
    nonce = nonce_str(12)  # WeChat's resource nonce is 12 printable characters used as the GCM IV
    ciphertext = sm4_gcm_encrypt(key, nonce.encode(), plaintext, associated_data.encode())
    return {"algorithm": "AEAD_SM4_GCM", "ciphertext": base64.b64encode(ciphertext).decode(),
            "associated_data": associated_data, "nonce": nonce}


def decrypt_resource(key: bytes, resource: Mapping[str, str]) -> bytes:
    """Raises keys.errors.DecryptionError when the ciphertext or associated data was altered."""
    if resource.get("algorithm") != "AEAD_SM4_GCM":
        raise ValueError(f"resource algorithm {resource.get('algorithm')!r} is not AEAD_SM4_GCM")
    return sm4_gcm_decrypt(key, resource["nonce"].encode(), base64.b64decode(resource["ciphertext"]),
                           resource.get("associated_data", "").encode())
