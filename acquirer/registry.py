"""Merchants and terminals: who may transact, with which device, from where.

A terminal goes registered -> active (one-time activation code, device key bound) and
can be locked and unlocked by an operator; a locked terminal is refused everything.
Every administrative action is written to an audit table. SQLite (WAL, synchronous
FULL); the host reads terminal rows on every request, so they are cached in memory and
the cache is refreshed on every write made through this object.
"""
from __future__ import annotations

import enum
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass

from acquirer.sqlite_tx import write_transaction
from keys.hashes import sm3

ACTIVATION_TTL_S = 24 * 3600
MAX_ACTIVATION_FAILURES = 5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS merchants (
    merchant_id TEXT PRIMARY KEY, name TEXT NOT NULL, mcc TEXT NOT NULL DEFAULT '5411',
    rate_bp INTEGER NOT NULL DEFAULT 38, fixed_fee INTEGER NOT NULL DEFAULT 0,
    risk_grade TEXT NOT NULL DEFAULT 'B', latitude REAL, longitude REAL, radius_m REAL NOT NULL DEFAULT 500,
    mobile INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT 'active', created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS terminals (
    terminal_id TEXT PRIMARY KEY, merchant_id TEXT NOT NULL REFERENCES merchants(merchant_id),
    status TEXT NOT NULL, locked INTEGER NOT NULL DEFAULT 0, device_id TEXT, device_public_key BLOB,
    activation_digest BLOB, activation_salt BLOB, activation_expires REAL, activation_failures INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, activated_at REAL, last_sign_on REAL
);
CREATE TABLE IF NOT EXISTS measurements (value TEXT PRIMARY KEY, label TEXT NOT NULL, added_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    subject TEXT NOT NULL, details TEXT NOT NULL
);
"""


class RegistryError(Exception):
    """An administrative request that cannot be done; the message says why."""


class TerminalStatus(str, enum.Enum):
    REGISTERED = "registered"  # added, waiting for activation
    ACTIVE = "active"


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    name: str
    mcc: str
    rate_bp: int
    fixed_fee: int
    risk_grade: str
    latitude: float | None
    longitude: float | None
    radius_m: float
    mobile: bool
    status: str


@dataclass(frozen=True)
class Terminal:
    terminal_id: str
    merchant_id: str
    status: TerminalStatus
    locked: bool
    device_id: str | None
    device_public_key: bytes | None

    @property
    def usable(self) -> bool:
        return self.status is TerminalStatus.ACTIVE and not self.locked


class Registry:
    def __init__(self, path: str | os.PathLike):
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()
        self._terminals: dict[str, Terminal] = {}

    def close(self) -> None:
        self._db.close()

    def _audit(self, actor: str, action: str, subject: str, **details) -> None:
        self._db.execute("INSERT INTO audit (at, actor, action, subject, details) VALUES (?,?,?,?,?)",
                         (time.time(), actor, action, subject, json.dumps(details, sort_keys=True)))

    # --- merchants --------------------------------------------------------------
    def add_merchant(self, merchant_id: str, name: str, *, mcc: str = "5411", rate_bp: int = 38, fixed_fee: int = 0,
                     risk_grade: str = "B", latitude: float | None = None, longitude: float | None = None,
                     radius_m: float = 500.0, mobile: bool = False, actor: str = "operator") -> Merchant:
        if len(merchant_id) != 15 or not merchant_id.isalnum():
            raise RegistryError("merchant id must be 15 letters or digits")
        if not 0 <= rate_bp <= 1000:
            raise RegistryError("merchant rate must be 0 to 1000 basis points")
        try:
            with write_transaction(self._db, self._lock) as db:
                db.execute(
                    "INSERT INTO merchants (merchant_id, name, mcc, rate_bp, fixed_fee, risk_grade, latitude, longitude,"
                    " radius_m, mobile, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (merchant_id, name, mcc, rate_bp, fixed_fee, risk_grade, latitude, longitude, radius_m,
                     int(mobile), time.time()))
                self._audit(actor, "merchant.add", merchant_id, name=name, rate_bp=rate_bp)
        except sqlite3.IntegrityError:
            raise RegistryError(f"merchant {merchant_id} already exists") from None
        return self.merchant(merchant_id)

    def merchant(self, merchant_id: str) -> Merchant:
        row = self._db.execute(
            "SELECT merchant_id, name, mcc, rate_bp, fixed_fee, risk_grade, latitude, longitude, radius_m, mobile,"
            " status FROM merchants WHERE merchant_id=?", (merchant_id,)).fetchone()
        if row is None:
            raise RegistryError(f"no merchant {merchant_id}")
        return Merchant(*row[:9], bool(row[9]), row[10])

    def set_merchant_locked(self, merchant_id: str, locked: bool, actor: str = "operator",
                            reason: str = "") -> Merchant:
        """A locked merchant's static code takes no payments (its terminals are locked one by one)."""
        with write_transaction(self._db, self._lock) as db:
            cur = db.execute("UPDATE merchants SET status=? WHERE merchant_id=?",
                             ("locked" if locked else "active", merchant_id))
            if cur.rowcount != 1:
                raise RegistryError(f"no merchant {merchant_id}")
            self._audit(actor, "merchant.lock" if locked else "merchant.unlock", merchant_id, reason=reason)
        return self.merchant(merchant_id)

    def merchants(self) -> list[Merchant]:
        return [self.merchant(r[0]) for r in self._db.execute("SELECT merchant_id FROM merchants ORDER BY 1")]

    # --- terminals --------------------------------------------------------------
    def add_terminal(self, terminal_id: str, merchant_id: str, actor: str = "operator",
                     now: float | None = None) -> str:
        """Register a terminal; returns its one-time activation code (shown once)."""
        if len(terminal_id) != 8 or not terminal_id.isalnum():
            raise RegistryError("terminal id must be 8 letters or digits")
        self.merchant(merchant_id)
        code = f"{secrets.randbelow(10**8):08d}"
        salt = os.urandom(16)
        now = time.time() if now is None else now
        with self._lock:
            try:
                with write_transaction(self._db) as db:
                    db.execute(
                        "INSERT INTO terminals (terminal_id, merchant_id, status, activation_digest, activation_salt,"
                        " activation_expires, created_at) VALUES (?,?,?,?,?,?,?)",
                        (terminal_id, merchant_id, TerminalStatus.REGISTERED.value, sm3(salt + code.encode()), salt,
                         now + ACTIVATION_TTL_S, now))
                    self._audit(actor, "terminal.add", terminal_id, merchant_id=merchant_id)
            except sqlite3.IntegrityError:
                raise RegistryError(f"terminal {terminal_id} already exists") from None
            self._terminals.pop(terminal_id, None)
        return code

    def new_activation_code(self, terminal_id: str, actor: str = "operator", now: float | None = None) -> str:
        """Issue a fresh code (lost code, device replaced): the old device binding is dropped."""
        self.terminal(terminal_id)
        code = f"{secrets.randbelow(10**8):08d}"
        salt = os.urandom(16)
        now = time.time() if now is None else now
        with self._lock:
            with write_transaction(self._db) as db:
                db.execute(
                    "UPDATE terminals SET status=?, device_id=NULL, device_public_key=NULL, activation_digest=?,"
                    " activation_salt=?, activation_expires=?, activation_failures=0 WHERE terminal_id=?",
                    (TerminalStatus.REGISTERED.value, sm3(salt + code.encode()), salt, now + ACTIVATION_TTL_S,
                     terminal_id))
                self._audit(actor, "terminal.reactivate", terminal_id)
            self._terminals.pop(terminal_id, None)
        return code

    def activate(self, terminal_id: str, code: str, device_id: str, device_public_key: bytes,
                 now: float | None = None) -> Terminal:
        """Bind a device to the terminal if the one-time code is right, fresh and unused."""
        now = time.time() if now is None else now
        with self._lock:
            row = self._db.execute(
                "SELECT status, activation_digest, activation_salt, activation_expires, activation_failures, locked"
                " FROM terminals WHERE terminal_id=?", (terminal_id,)).fetchone()
            if row is None:
                raise RegistryError(f"terminal {terminal_id} is not registered")
            status, digest, salt, expires, failures, locked = row
            if locked:
                raise RegistryError(f"terminal {terminal_id} is locked")
            if status != TerminalStatus.REGISTERED.value or digest is None:
                raise RegistryError(f"terminal {terminal_id} has no activation pending")
            if failures >= MAX_ACTIVATION_FAILURES:
                raise RegistryError(f"terminal {terminal_id}: too many wrong activation codes; issue a new one")
            if now > expires:
                raise RegistryError(f"terminal {terminal_id}: activation code expired; issue a new one")
            right = hmac.compare_digest(sm3(salt + code.encode()), digest)
            with write_transaction(self._db) as db:
                if not right:  # the failure is counted (and kept) before the refusal
                    db.execute("UPDATE terminals SET activation_failures=activation_failures+1 WHERE terminal_id=?",
                               (terminal_id,))
                    self._audit("terminal", "terminal.activate.failed", terminal_id)
                else:
                    db.execute(
                        "UPDATE terminals SET status=?, device_id=?, device_public_key=?, activation_digest=NULL,"
                        " activation_salt=NULL, activated_at=? WHERE terminal_id=?",
                        (TerminalStatus.ACTIVE.value, device_id, device_public_key, now, terminal_id))
                    self._audit("terminal", "terminal.activate", terminal_id, device_id=device_id)
            if not right:
                raise RegistryError(f"terminal {terminal_id}: wrong activation code")
            self._terminals.pop(terminal_id, None)
        return self.terminal(terminal_id)

    def set_locked(self, terminal_id: str, locked: bool, actor: str = "operator", reason: str = "") -> Terminal:
        with self._lock:
            with write_transaction(self._db) as db:
                cur = db.execute("UPDATE terminals SET locked=? WHERE terminal_id=?", (int(locked), terminal_id))
                if cur.rowcount != 1:
                    raise RegistryError(f"no terminal {terminal_id}")
                self._audit(actor, "terminal.lock" if locked else "terminal.unlock", terminal_id, reason=reason)
            self._terminals.pop(terminal_id, None)
        return self.terminal(terminal_id)

    def record_sign_on(self, terminal_id: str, now: float | None = None) -> None:
        with self._lock:
            self._db.execute("UPDATE terminals SET last_sign_on=? WHERE terminal_id=?",
                             (time.time() if now is None else now, terminal_id))

    def terminal(self, terminal_id: str) -> Terminal:
        cached = self._terminals.get(terminal_id)
        if cached is not None:
            return cached
        row = self._db.execute(
            "SELECT terminal_id, merchant_id, status, locked, device_id, device_public_key FROM terminals"
            " WHERE terminal_id=?", (terminal_id,)).fetchone()
        if row is None:
            raise RegistryError(f"no terminal {terminal_id}")
        t = Terminal(row[0], row[1], TerminalStatus(row[2]), bool(row[3]), row[4], row[5])
        self._terminals[terminal_id] = t
        return t

    def find_terminal(self, terminal_id: str) -> Terminal | None:
        try:
            return self.terminal(terminal_id)
        except RegistryError:
            return None

    def terminals(self, merchant_id: str | None = None) -> list[Terminal]:
        q = "SELECT terminal_id FROM terminals" + (" WHERE merchant_id=?" if merchant_id else "") + " ORDER BY 1"
        return [self.terminal(r[0]) for r in self._db.execute(q, (merchant_id,) if merchant_id else ())]

    # --- attestation measurements ------------------------------------------------
    def allow_measurement(self, value: bytes, label: str, actor: str = "operator") -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO measurements VALUES (?,?,?)", (value.hex(), label, time.time()))
            self._audit(actor, "measurement.allow", value.hex(), label=label)

    def measurement_allowed(self, value: bytes) -> bool:
        return self._db.execute("SELECT 1 FROM measurements WHERE value=?", (value.hex(),)).fetchone() is not None

    def audit_log(self, subject: str | None = None) -> list[tuple]:
        q = "SELECT seq, at, actor, action, subject, details FROM audit" + (" WHERE subject=?" if subject else "")
        return list(self._db.execute(q + " ORDER BY seq", (subject,) if subject else ()))

