"""The host security module: a key store whose keys rest encrypted under an LMK.

Every key is kept as a key block (keys.keyblock) wrapped under the local master key,
in a SQLite file; the LMK itself lives in a separate file readable by the host's user
alone. Keys are named per owner, "one key per device": `terminal/<id>/<usage>`,
`channel/<name>/<usage>`, `issuer/<profile>/<usage>`, `host/<usage>`.

Operations take key names, never key bytes, and return only what may leave: key
blocks wrapped under a ZMK/TMK, SM2 envelopes, PIN blocks under another key, MACs,
verdicts and ARPCs. Clear keys are only held in this process's memory.
"""
from __future__ import annotations

import hmac
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from . import emv, envelope, keyblock
from .bounded import remember
from .errors import InvalidKey, KeyBlockError, KeyNotFound, KeyUsageError, MACError
from .hashes import HMACSM3
from .mac import CBCMAC, cmac, cup_ecb_mac, verify, x919_mac
from .model import Key, KeyAlgorithm, KeyUsage
from .pinblock import PinBlockFormat, decrypt_pin_block, encrypt_pin_block
from .symmetric import open_field, seal_field

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keys (
    name TEXT PRIMARY KEY,
    usage TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    version INTEGER NOT NULL,
    kcv TEXT NOT NULL,
    block TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""
MAC_METHODS = ("cbc", "cup_ecb", "x919", "cmac")
_CARD_KEYS = 4096  # cards whose ICC master key verify_arqc keeps (each a key schedule, ~1 KB)
_PIN_FORMATS = {KeyAlgorithm.TDES: PinBlockFormat.ISO0, KeyAlgorithm.SM4: PinBlockFormat.SM4,
                KeyAlgorithm.AES: PinBlockFormat.ISO4}


_USAGE_NAMES = {u.value: u.value for u in KeyUsage}


def _usage_name(usage: KeyUsage | str) -> str:
    # names are built on every request (the terminal's TAK, TDK, TPK), mostly from plain str:
    # one dict read, where KeyUsage(usage) costs as much as the rest of the name and its MAC check
    if type(usage) is str:
        name = _USAGE_NAMES.get(usage)
        if name is not None:
            return name
    return usage._value_ if type(usage) is KeyUsage else KeyUsage(usage).value


# What `HSM._keyed` keeps per key name, with the usages each may be made from:
_DATA_KEY = (KeyUsage.TDK,)
_TOKEN_KEY = (KeyUsage.TOKEN,)
_MAC_KEY = (KeyUsage.TAK, KeyUsage.ZAK)


def _sealer(key: Key):
    return partial(seal_field, key.cipher)


def _opener(key: Key):
    return partial(open_field, key.cipher)


def _keyed_hmac(key: Key):
    return HMACSM3(key.material).digest


def _cbc_mac(key: Key, length: int):
    return CBCMAC(key.cipher, 2, length).mac


def terminal_key_name(terminal_id: str, usage: KeyUsage | str) -> str:
    return f"terminal/{terminal_id}/{_usage_name(usage)}"


def channel_key_name(channel: str, usage: KeyUsage | str) -> str:
    return f"channel/{channel}/{_usage_name(usage)}"


def issuer_key_name(profile: str, usage: KeyUsage | str) -> str:
    return f"issuer/{profile}/{_usage_name(usage)}"


@dataclass(frozen=True)
class KeyInfo:
    name: str
    algorithm: KeyAlgorithm
    usage: KeyUsage
    version: int
    kcv: str

    def __str__(self) -> str:
        return f"{self.algorithm.value:4s} {self.usage.value:7s} v{self.version:<5d} kcv={self.kcv}"


def load_or_create_lmk(path: str | os.PathLike) -> Key:
    """The LMK file holds 32 hex digits; created 0600 on first use."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(16).hex().upper() + "\n")
    text = path.read_text().strip()
    try:
        material = bytes.fromhex(text)
    except ValueError:
        raise InvalidKey(f"LMK file {path} does not hold hex digits") from None
    return Key(KeyAlgorithm.SM4, KeyUsage.LMK, material)


class HSM:
    def __init__(self, db_path: str | os.PathLike, lmk: Key):
        lmk.require(KeyUsage.LMK)
        self._lmk = lmk
        self._lock = threading.RLock()
        self._cache: dict[str, Key] = {}
        # per key name, what its use needs made once (a MAC's `mac`, a token key's keyed HMAC, a data
        # key's seal and open), made after the usage check and dropped when the key is replaced or
        # deleted (_forget)
        self._macs: dict[tuple, object] = {}
        self._sm2: dict[str, object] = {}  # SM2PrivateKey per name: importing one costs a scalar multiplication
        self._card_keys: dict[tuple, tuple[Key, emv.CardKey]] = {}  # verify_arqc's, see _card_key
        self._db = sqlite3.connect(str(db_path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT v FROM meta WHERE k='lmk_kcv'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('lmk_kcv', ?)", (lmk.kcv,))
        elif row[0] != lmk.kcv:
            raise KeyBlockError(f"HSM store {db_path} was written under another LMK (kcv {row[0]}, this LMK {lmk.kcv})")

    @classmethod
    def open(cls, db_path: str | os.PathLike, lmk_path: str | os.PathLike) -> "HSM":
        return cls(db_path, load_or_create_lmk(lmk_path))

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._cache.clear()
            self._macs.clear()
            self._sm2.clear()
            self._card_keys.clear()

    def __repr__(self) -> str:
        return f"<HSM lmk_kcv={self._lmk.kcv}>"

    # --- the store -------------------------------------------------------------
    def _put(self, name: str, key: Key) -> KeyInfo:
        block = keyblock.wrap(self._lmk, key, exportable=True)
        with self._lock:
            self._db.execute(
                "INSERT INTO keys VALUES (?,?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET usage=excluded.usage,"
                " algorithm=excluded.algorithm, version=excluded.version, kcv=excluded.kcv, block=excluded.block,"
                " updated_at=excluded.updated_at",
                (name, key.usage.value, key.algorithm.value, key.version, key.kcv, block, time.time()),
            )
            self._cache[name] = key
            self._forget(name)
        return self.info(name)

    def _forget(self, name: str) -> None:
        """Drop what was made from the key `name` (it was replaced or deleted). Hold the lock."""
        self._sm2.pop(name, None)
        for k in [k for k in self._macs if k[0] == name]:
            del self._macs[k]

    def _get(self, name: str, *usages: KeyUsage) -> Key:
        key = self._cache.get(name)  # a dict read is atomic: the lock only guards loading
        if key is None:
            key = self._load(name)
        return key.require(*usages) if usages else key

    def _load(self, name: str) -> Key:
        with self._lock:
            key = self._cache.get(name)
            if key is None:
                row = self._db.execute("SELECT block FROM keys WHERE name=?", (name,)).fetchone()
                if row is None:
                    raise KeyNotFound(f"no key named {name!r}")
                key = keyblock.unwrap(self._lmk, row[0])
                self._cache[name] = key
        return key

    def info(self, name: str) -> KeyInfo:
        row = self._db.execute("SELECT algorithm, usage, version, kcv FROM keys WHERE name=?", (name,)).fetchone()
        if row is None:
            raise KeyNotFound(f"no key named {name!r}")
        return KeyInfo(name, KeyAlgorithm(row[0]), KeyUsage(row[1]), row[2], row[3])

    def exists(self, name: str) -> bool:
        if name in self._cache:  # every request asks for its terminal's TAK: skip SQLite then
            return True
        return self._db.execute("SELECT 1 FROM keys WHERE name=?", (name,)).fetchone() is not None

    def names(self, prefix: str = "") -> list[str]:
        rows = self._db.execute("SELECT name FROM keys WHERE name LIKE ? ESCAPE '\\' ORDER BY name",
                                (prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",))
        return [r[0] for r in rows]

    def describe(self, prefix: str = "") -> dict[str, str]:
        return {n: str(self.info(n)) for n in self.names(prefix)}

    def delete(self, name: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM keys WHERE name=?", (name,))
            self._cache.pop(name, None)
            self._forget(name)

    # --- key lifecycle ---------------------------------------------------------
    def generate(self, name: str, algorithm: KeyAlgorithm | str, usage: KeyUsage | str,
                 version: int | None = None, length: int | None = None) -> KeyInfo:
        """Create a fresh key; without `version`, one more than the key it replaces."""
        if version is None:
            version = self.info(name).version + 1 if self.exists(name) else 1
        return self._put(name, Key.generate(algorithm, usage, version, length))

    def import_clear(self, name: str, key: Key) -> KeyInfo:
        """Load a key given in clear (key ceremony, test personalisation)."""
        if key.usage is KeyUsage.LMK:
            raise KeyUsageError("an LMK is never stored in the key store")
        return self._put(name, key)

    def import_wrapped(self, name: str, block: str, under: str, expect_usage: KeyUsage | None = None) -> KeyInfo:
        kek = self._get(under, KeyUsage.ZMK, KeyUsage.TMK)
        return self._put(name, keyblock.unwrap(kek, block, expect_usage))

    def export_wrapped(self, name: str, under: str) -> str:
        kek = self._get(under, KeyUsage.ZMK, KeyUsage.TMK)
        key = self._get(name)
        if key.usage in (KeyUsage.LMK, KeyUsage.SIGN, KeyUsage.ENC):
            raise KeyUsageError(f"{key.usage.value} keys are not exportable")
        return keyblock.wrap(kek, key)

    def export_envelope(self, name: str, terminal_pub, terminal_id: str, signer: str,
                        nonce: bytes | None = None, now: float | None = None) -> bytes:
        """Send a key to a terminal in an SM2 envelope signed by the host key `signer`."""
        host = self._sm2_key(signer, KeyUsage.SIGN)
        return envelope.seal(host, terminal_pub, terminal_id, self._get(name), nonce=nonce, now=now)

    def _sm2_key(self, name: str, *usages: KeyUsage):
        from .sm2 import SM2PrivateKey

        key = self._get(name, *usages)
        with self._lock:
            sm2 = self._sm2.get(name)
            if sm2 is None:
                sm2 = self._sm2[name] = SM2PrivateKey.from_bytes(key.material)
        return sm2

    def public_key(self, name: str):
        return self._sm2_key(name, KeyUsage.SIGN, KeyUsage.ENC).public_key

    def sign(self, name: str, data: bytes) -> bytes:
        return self._sm2_key(name, KeyUsage.SIGN).sign(data)

    # --- PINs ------------------------------------------------------------------
    def translate_pin(self, pin_block: bytes, pan: str, source: str, destination: str) -> bytes:
        """Re-encrypt a PIN block from a TPK (or ZPK) to a ZPK; the PIN never leaves."""
        src = self._get(source, KeyUsage.TPK, KeyUsage.ZPK)
        dst = self._get(destination, KeyUsage.ZPK)
        pin = decrypt_pin_block(_PIN_FORMATS[src.algorithm], src.cipher, pin_block, pan)
        return encrypt_pin_block(_PIN_FORMATS[dst.algorithm], dst.cipher, pin, pan)

    def verify_pin(self, pin_block: bytes, pan: str, key_name: str, reference_pin_block: bytes) -> bool:
        """Compare a PIN block with the issuer's reference block (both under `key_name`)."""
        key = self._get(key_name, KeyUsage.ZPK, KeyUsage.TPK)
        fmt = _PIN_FORMATS[key.algorithm]
        return hmac.compare_digest(decrypt_pin_block(fmt, key.cipher, pin_block, pan),
                                    decrypt_pin_block(fmt, key.cipher, reference_pin_block, pan))

    def passcode_token(self, pin_block: bytes, pan: str, source: str, token_key: str) -> str:
        """The keyed token (`token`) of the passcode inside a PIN block under the TPK `source`.

        Face pay checks a passcode against a peppered record; this keeps the passcode clear
        only inside the HSM. Raises PinBlockError for a block that does not open."""
        src = self._get(source, KeyUsage.TPK)
        passcode = decrypt_pin_block(_PIN_FORMATS[src.algorithm], src.cipher, pin_block, pan)
        return self.token(token_key, passcode.encode("ascii"))

    # --- data keys ---------------------------------------------------------------
    def seal_data(self, name: str, data: bytes) -> bytes:
        return self._keyed((name, "seal"), _DATA_KEY, _sealer)(data)  # every approved sale seals its card

    def open_data(self, name: str, sealed: bytes) -> bytes:
        """Decrypt a field sealed under a terminal's TDK (e.g. track 2 for the issuer)."""
        return self._keyed((name, "open"), _DATA_KEY, _opener)(sealed)  # every sale opens its track 2

    def token(self, name: str, data: bytes) -> str:
        """A keyed token (HMAC-SM3, 128 bits, hex) standing for `data` (a PAN) without revealing it."""
        return self._keyed((name, "token"), _TOKEN_KEY, _keyed_hmac)(data)[:16].hex().upper()

    def _keyed(self, slot: tuple, usages: tuple, make, *args):
        """What `make(key, *args)` gives for the key `slot[0]` (of one of `usages`), kept under
        `slot` until that key is replaced or deleted. Kept, it is one dict read (atomic: every
        request and response asks); the first time it is made under the lock `_put` and
        `delete` hold, so nothing made from a replaced key is kept."""
        op = self._macs.get(slot)
        if op is None:
            with self._lock:
                op = self._macs.get(slot)
                if op is None:
                    op = self._macs[slot] = make(self._get(slot[0], *usages), *args)
        return op

    # --- MACs ------------------------------------------------------------------
    def generate_mac(self, name: str, data: bytes, method: str = "cbc", length: int = 8) -> bytes:
        if method == "cbc":  # every request and response: kept per key (`mac_function`)
            return self.mac_function(name, length)(data)
        key = self._get(name, *_MAC_KEY)
        if method == "cup_ecb":
            return cup_ecb_mac(key.cipher, data)
        if method == "x919":
            return x919_mac(key.material, data)[:length]
        if method == "cmac":
            return cmac(key.algorithm.symmetric, key.material, data, length)
        raise ValueError(f"MAC method must be one of {', '.join(MAC_METHODS)}, got {method!r}")

    def verify_mac(self, name: str, data: bytes, tag: bytes, method: str = "cbc") -> None:
        verify(self.generate_mac(name, data, method, len(tag)), tag)

    def mac_function(self, name: str, length: int = 8):
        """`generate_mac(name, data, "cbc", length)` as a function of `data`: for a caller that
        MACs one message under a name it has (the host's response), without the method dispatch.
        Like `generate_mac` it is made once per key and usage-checked then; a replaced key gets
        a new one (ask again per message: do not keep it)."""
        return self._keyed((name, "cbc", length), _MAC_KEY, _cbc_mac, length)

    # --- EMV -------------------------------------------------------------------
    def verify_arqc(self, imk_name: str, family: emv.CardFamily | str, pan: str, psn: str, atc: bytes,
                    data: bytes, arqc: bytes, arc: bytes) -> bytes:
        """Check an ARQC with the issuer master key; return the ARPC (method 1) for `arc`.

        Raises MACError when the cryptogram does not verify."""
        arpc = self._card_key(imk_name, family, pan, psn).check_arqc(atc, data, arqc, arc)
        if arpc is None:
            raise MACError("ARQC does not verify")
        return arpc

    def _card_key(self, imk_name: str, family: emv.CardFamily | str, pan: str, psn: str) -> emv.CardKey:
        """The card's ICC master key derived from the IMK, kept for the card's next ARQCs
        (at most _CARD_KEYS cards, the oldest dropped first). Each is kept with the IMK
        it came from and served only while that IMK is still the one under its name: a
        rotated or deleted IMK is never answered from an old derivation."""
        slot = (imk_name, family, pan, psn)
        kept = self._card_keys.get(slot)
        # A kept card key came from the Key object that passed the IMK_AC check when it was
        # made; while that object is still the one under its name, the check stands (a Key's
        # usage never changes), so once per sale it is only this identity test.
        if kept is not None and kept[0] is self._cache.get(imk_name):
            return kept[1]
        imk = self._get(imk_name, KeyUsage.IMK_AC)  # keys.emv checks the family
        card = emv.CardKey(family, imk.material, pan, psn)
        with self._lock:
            remember(self._card_keys, slot, (imk, card), _CARD_KEYS)
        return card

    def export_icc_master_key(self, imk_name: str, family: emv.CardFamily | str, pan: str, psn: str,
                              under: str) -> str:
        """The card's own AC key (option A), wrapped for a personalisation device."""
        family = emv.CardFamily(family)
        imk = self._get(imk_name, KeyUsage.IMK_AC)
        icc = emv.derive_icc_master_key(family, imk.material, pan, psn)
        return keyblock.wrap(self._get(under, KeyUsage.ZMK, KeyUsage.TMK),
                             Key(imk.algorithm, KeyUsage.ICC_AC, icc, imk.version))
