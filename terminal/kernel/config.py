"""The kernel's configuration: accepted AIDs, limits, TACs, CA public keys, relay thresholds.

Read from TOML (`default_config.toml` beside this file is the shipped default). Every
error names the file and the field. Each `[[aid]]` takes its settings from its family
table (`[family.PBOC_SM4]`, `[family.EMV_TDES]`) and may override any of them.

CA public keys come from a separate `ca_keys.toml` (the format `hardware.emvcard.ca`
writes; this module reads it on its own, the kernel never imports the card simulator).
Every key's checksum is checked; a key that fails is left out and remembered in
`ca_key_problems`, so that cards under it fail ODA with that reason instead of the
whole terminal refusing to start.
"""
from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from keys.hashes import sm3

from .relay import RelayPolicy

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_config.toml")
CA_KEYS_FILE = "ca_keys.toml"
FAMILIES = ("PBOC_SM4", "EMV_TDES")
FAMILY_KEYS = ("ttq", "application_version", "floor_limit", "cvm_limit", "contactless_limit",
               "tac_default", "tac_denial", "tac_online")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and the field."""


def default_ca_keys_path() -> Path:
    """Where the card personaliser writes the CA list: the card state directory
    ($SOFTPOS_STATE_DIR, else $XDG_STATE_HOME/softpos, else ~/.local/state/softpos)."""
    if os.environ.get("SOFTPOS_STATE_DIR"):
        return Path(os.environ["SOFTPOS_STATE_DIR"]) / CA_KEYS_FILE
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "softpos" / CA_KEYS_FILE


@dataclass(frozen=True)
class CAPublicKey:
    rid: bytes
    index: int
    algorithm: str  # "RSA" | "SM2"
    modulus: int = 0
    exponent: int = 0
    point: bytes = b""  # SM2: 04 || x || y

    @property
    def modulus_length(self) -> int:
        return (self.modulus.bit_length() + 7) // 8

    @property
    def label(self) -> str:
        return f"{self.rid.hex().upper()}/{self.index:02X}"


@dataclass(frozen=True)
class AidConfig:
    """One accepted application, with its family's settings resolved."""

    aid: bytes
    family: str
    priority: int  # the terminal's preference when the card's priorities tie
    partial: bool  # also accept longer card AIDs that start with this one
    ttq: bytes  # 9F66 base value; the kernel adds online/CVM-required bits per transaction
    application_version: bytes | None  # 9F09; None: the version is not compared
    floor_limit: int  # amounts at or above it go online (fen)
    cvm_limit: int  # amounts above it need a CVM (online PIN unless the phone verified)
    contactless_limit: int  # amounts above it: use another interface
    tac_default: bytes
    tac_denial: bytes
    tac_online: bytes


@dataclass(frozen=True)
class TerminalConfig:
    country: str = "0156"
    currency: str = "0156"
    terminal_type: bytes = b"\x22"
    capabilities: bytes = bytes.fromhex("004840")
    ifd_serial_number: bytes = b"SOFTPOS1"


@dataclass(frozen=True)
class KernelConfig:
    terminal: TerminalConfig
    aids: tuple[AidConfig, ...]
    relay: RelayPolicy
    ca_keys: dict = field(default_factory=dict)  # (rid, index) -> CAPublicKey
    ca_key_problems: dict = field(default_factory=dict)  # (rid, index) or "file" -> reason
    source: str = ""

    @classmethod
    def load(cls, path: str | os.PathLike, ca_keys_path: str | os.PathLike | None = None) -> "KernelConfig":
        path = Path(path)
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: kernel configuration file not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(doc, source=str(path), base_dir=path.parent, ca_keys_path=ca_keys_path)

    @classmethod
    def default(cls, ca_keys_path: str | os.PathLike | None = None) -> "KernelConfig":
        return cls.load(DEFAULT_CONFIG_PATH, ca_keys_path)

    @classmethod
    def from_dict(cls, doc: dict, *, source: str = "<dict>", base_dir: str | os.PathLike = ".",
                  ca_keys_path: str | os.PathLike | None = None) -> "KernelConfig":
        top = _Table(source, doc)
        term = top.sub("terminal")
        terminal = TerminalConfig(
            country=term.digits("country", "0156"), currency=term.digits("currency", "0156"),
            terminal_type=term.hex("terminal_type", 1, "22"), capabilities=term.hex("capabilities", 3, "004840"),
            ifd_serial_number=term.ascii("ifd_serial_number", 8, "SOFTPOS1"))
        rel = top.sub("relay")
        unknown = sorted(set(rel.table) - set(RelayPolicy.__dataclass_fields__))
        if unknown:
            raise rel.fail(unknown[0], "unknown setting")
        try:
            relay = RelayPolicy(**rel.table)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        families = {name: top.sub("family").sub(name).table for name in FAMILIES}
        aids = tuple(_aid(top, n, entry, families) for n, entry in enumerate(top.list("aid")))
        if not aids:
            raise top.fail("aid", "at least one [[aid]] is needed")
        if ca_keys_path is not None:
            keys_path, required = Path(ca_keys_path), True
        elif term.table.get("ca_keys_file"):
            keys_path, required = Path(base_dir) / term.get("ca_keys_file", str), True
        else:
            keys_path, required = default_ca_keys_path(), False
        keys, problems = read_ca_keys(keys_path, required)
        return cls(terminal, aids, relay, keys, problems, source)

    def aid_config(self, aid: bytes) -> AidConfig | None:
        return next((a for a in self.aids if a.aid == aid), None)


class _Table:
    """Typed access to one TOML table; errors read `file: table.field: why`."""

    def __init__(self, source: str, table: dict, prefix: str = "") -> None:
        self.source, self.table, self.prefix = source, table, prefix

    def fail(self, key: str, why: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.prefix}{key}: {why}")

    def sub(self, key: str) -> "_Table":
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        return _Table(self.source, value, f"{self.prefix}{key}.")

    def list(self, key: str) -> list:
        value = self.table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(key, "must be an array of tables ([[...]])")
        return value

    def get(self, key: str, kind: type, default=...):
        if key not in self.table:
            if default is ...:
                raise self.fail(key, "is missing")
            return default
        value = self.table[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(key, f"must be a {kind.__name__}")
        return value

    def hex(self, key: str, length: int | None, default=...) -> bytes:
        text = self.get(key, str, default)
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise self.fail(key, "must be hex digits") from None
        if length is not None and len(value) != length:
            raise self.fail(key, f"must be {length} bytes ({2 * length} hex digits)")
        return value

    def digits(self, key: str, default=...) -> str:
        value = self.get(key, str, default)
        if not (value.isascii() and value.isdigit() and len(value) == 4):
            raise self.fail(key, "must be 4 digits, e.g. \"0156\"")
        return value

    def ascii(self, key: str, length: int, default=...) -> bytes:
        value = self.get(key, str, default)
        if not (value.isascii() and len(value) == length):
            raise self.fail(key, f"must be {length} ASCII characters")
        return value.encode()

    def amount(self, key: str) -> int:
        value = self.get(key, int)
        if not 0 <= value <= 999_999_999_999:
            raise self.fail(key, "must be 0..999999999999 fen")
        return value


def _aid(top: _Table, n: int, entry: dict, families: dict[str, dict]) -> AidConfig:
    t = _Table(top.source, entry, f"aid[{n}].")
    family = t.get("family", str)
    if family not in FAMILIES:
        raise t.fail("family", f"must be one of {', '.join(FAMILIES)}")
    unknown = set(entry) - {"aid", "family", "priority", "partial", *FAMILY_KEYS}
    if unknown:
        raise t.fail(sorted(unknown)[0], "unknown setting")
    shared = _Table(top.source, families[family], f"family.{family}.")

    def src(key: str) -> _Table:
        """The table a setting comes from, so that an error names where to fix it."""
        return t if key in entry else shared

    aid = t.hex("aid", None)
    if not 5 <= len(aid) <= 16:
        raise t.fail("aid", "must be 5..16 bytes")
    priority = t.get("priority", int, 1)
    if not 1 <= priority <= 15:
        raise t.fail("priority", "must be 1..15")
    version = src("application_version").table.get("application_version")
    return AidConfig(
        aid=aid, family=family, priority=priority, partial=t.get("partial", bool, False),
        ttq=src("ttq").hex("ttq", 4),
        application_version=src("application_version").hex("application_version", 2) if version else None,
        floor_limit=src("floor_limit").amount("floor_limit"), cvm_limit=src("cvm_limit").amount("cvm_limit"),
        contactless_limit=src("contactless_limit").amount("contactless_limit"),
        tac_default=src("tac_default").hex("tac_default", 5), tac_denial=src("tac_denial").hex("tac_denial", 5),
        tac_online=src("tac_online").hex("tac_online", 5))


def ca_checksum(key: CAPublicKey) -> bytes:
    """EMV: SHA-1(RID || index || modulus || exponent); SM2: SM3(RID || index || x || y), 20 bytes."""
    head = key.rid + bytes([key.index])
    if key.algorithm == "RSA":
        exponent = key.exponent.to_bytes((key.exponent.bit_length() + 7) // 8, "big")
        return hashlib.sha1(head + key.modulus.to_bytes(key.modulus_length, "big") + exponent).digest()
    return sm3(head + key.point[1:])[:20]


def read_ca_keys(path: Path, required: bool = True) -> tuple[dict, dict]:
    """(keys by (RID, index), problems). A missing default file means no keys (ODA fails)."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: CA public key file not found") from None
        return {}, {"file": f"no CA public key file at {path}"}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    keys, problems = {}, {}
    for n, entry in enumerate(doc.get("ca", [])):
        t = _Table(str(path), entry, f"ca[{n}].")
        rid, index = t.hex("rid", 5), int.from_bytes(t.hex("index", 1))
        algorithm = t.get("algorithm", str)
        if algorithm == "RSA":
            key = CAPublicKey(rid, index, "RSA", modulus=int.from_bytes(t.hex("modulus", None)),
                              exponent=int.from_bytes(t.hex("exponent", None)))
        elif algorithm == "SM2":
            point = t.hex("public_key", 65)
            if point[0] != 0x04:
                raise t.fail("public_key", "must be an uncompressed point (04 || x || y)")
            key = CAPublicKey(rid, index, "SM2", point=point)
        else:
            raise t.fail("algorithm", "must be RSA or SM2")
        if ca_checksum(key) != t.hex("checksum", 20):
            problems[(rid, index)] = f"CA key {key.label} rejected: its checksum does not match"
            continue
        keys[(rid, index)] = key
    return keys, problems
