"""The test certificate authority: one SM2 and one RSA CA key pair, made on first use.

The private keys stay in `<state>/ca/` (0600 PEM files): only personalisation signs
with them. Their public halves go to `<state>/ca_keys.toml`, the file a terminal loads
as its CA public key list. Indexes 80 (RID A000000333) and 92 (RID A000000003) are
*test* indexes: no production terminal may trust these keys.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from keys.hashes import sm3
from keys.sm2 import SM2PrivateKey, SM2PublicKey

from .oda_rsa import RSAKeyPair, RSAPublic
from .profile import DEFAULT_CA
from keys.emv import CardFamily

CA_RSA_BITS = 1408  # a real EMV CA length; long enough that issuer keys need tag 92
CA_KEYS_FILE = "ca_keys.toml"


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_public(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class CAPublicKey:
    """One entry of the terminal's CA public key list."""

    rid: bytes
    index: int
    rsa: RSAPublic | None = None
    sm2: SM2PublicKey | None = None

    @property
    def algorithm(self) -> str:
        return "RSA" if self.rsa is not None else "SM2"

    @property
    def checksum(self) -> bytes:
        """EMV: SHA-1(RID || index || modulus || exponent); SM2: SM3(RID || index || x || y), 20 bytes."""
        head = self.rid + bytes([self.index])
        if self.rsa is not None:
            return hashlib.sha1(head + self.rsa.modulus_bytes + self.rsa.exponent_bytes).digest()
        return sm3(head + self.sm2.to_bytes()[1:])[:20]


class CertificateAuthority:
    """The project's own CA for simulated cards; `load_or_create(state_dir)` to get it."""

    def __init__(self, state_dir: Path, sm2: SM2PrivateKey, rsa_key: RSAKeyPair) -> None:
        self.state_dir = state_dir
        self.sm2 = sm2
        self.rsa = rsa_key
        self.sm2_rid, self.sm2_index = bytes.fromhex(DEFAULT_CA[CardFamily.PBOC_SM4][0]), DEFAULT_CA[CardFamily.PBOC_SM4][1]
        self.rsa_rid, self.rsa_index = bytes.fromhex(DEFAULT_CA[CardFamily.EMV_TDES][0]), DEFAULT_CA[CardFamily.EMV_TDES][1]

    def __repr__(self) -> str:
        return f"<CertificateAuthority {self.state_dir} SM2 {self.sm2_index:02X}, RSA {self.rsa_index:02X}>"

    @classmethod
    def load_or_create(cls, state_dir: str | os.PathLike) -> "CertificateAuthority":
        state = Path(state_dir)
        ca_dir = state / "ca"
        ca_dir.mkdir(parents=True, exist_ok=True)
        sm2_path, rsa_path = ca_dir / "sm2-ca.pem", ca_dir / "rsa-ca.pem"
        # One creator at a time: two card processes on a fresh state dir must share one CA.
        with open(ca_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not sm2_path.exists():
                write_private(sm2_path, SM2PrivateKey.generate().to_pem())
            if not rsa_path.exists():
                write_private(rsa_path, RSAKeyPair.generate(CA_RSA_BITS).to_pem())
            ca = cls(state, SM2PrivateKey.from_pem(sm2_path.read_bytes()), RSAKeyPair.from_pem(rsa_path.read_bytes()))
            keys_file = state / CA_KEYS_FILE
            text = render_ca_keys(ca.public_keys())
            if not keys_file.exists() or keys_file.read_text() != text:
                write_public(keys_file, text)
        return ca

    def public_keys(self) -> list[CAPublicKey]:
        return [CAPublicKey(self.sm2_rid, self.sm2_index, sm2=self.sm2.public_key),
                CAPublicKey(self.rsa_rid, self.rsa_index, rsa=self.rsa.public)]

    @property
    def keys_file(self) -> Path:
        return self.state_dir / CA_KEYS_FILE


def render_ca_keys(keys: list[CAPublicKey]) -> str:
    lines = ["# CA public keys of the project's TEST certificate authority (hardware/emvcard/ca.py).",
             "# Test indexes only: never load these into a production terminal.", ""]
    for key in keys:
        lines += ["[[ca]]", f'rid = "{key.rid.hex().upper()}"', f'index = "{key.index:02X}"',
                  f'algorithm = "{key.algorithm}"']
        if key.rsa is not None:
            lines += [f'modulus = "{key.rsa.modulus_bytes.hex().upper()}"',
                      f'exponent = "{key.rsa.exponent_bytes.hex().upper()}"']
        else:
            lines.append(f'public_key = "{key.sm2.to_bytes().hex().upper()}"')
        lines += [f'checksum = "{key.checksum.hex().upper()}"', ""]
    return "\n".join(lines)


def read_ca_keys(path: str | os.PathLike) -> dict[tuple[bytes, int], CAPublicKey]:
    """The terminal side: (RID, index) -> CA public key, each checked against its checksum."""
    doc = tomllib.loads(Path(path).read_text())
    out: dict[tuple[bytes, int], CAPublicKey] = {}
    for n, entry in enumerate(doc.get("ca", [])):
        rid, index = bytes.fromhex(entry["rid"]), int(entry["index"], 16)
        if entry["algorithm"] == "RSA":
            key = CAPublicKey(rid, index, rsa=RSAPublic(int(entry["modulus"], 16), int(entry["exponent"], 16)))
        elif entry["algorithm"] == "SM2":
            key = CAPublicKey(rid, index, sm2=SM2PublicKey.from_bytes(bytes.fromhex(entry["public_key"])))
        else:
            raise ValueError(f"{path}: ca[{n}].algorithm must be RSA or SM2")
        if key.checksum.hex().upper() != entry["checksum"].upper():
            raise ValueError(f"{path}: ca[{n}] ({entry['rid']} {entry['index']}): checksum does not match the key")
        out[(rid, index)] = key
    return out
