"""The merchant's static aggregated QR code ("one code for every wallet"): its token and store.

The printed code holds `<base URL>/s/<token>`, a page of the acquirer, not any wallet's
own code: whichever wallet scans it opens the page, the customer enters the amount, and
the host creates the order at that wallet (`acquirer/static_sales.py`).

The token is `<merchant id>-<serial>-<mac>`: a random 8-hex-digit serial and 128 bits of
HMAC-SM3 over both under the HSM key `host/STATIC_QR` (`HSM.token`). A made-up or
altered token fails the MAC before anything is looked up, and nobody without the HSM
can make one. Every serial ever issued is kept: rotating issues a new serial and revokes
the old one, revoking ends the current one, so a stolen or superseded sticker stops
paying while the merchant keeps its id. (Changing the HSM key would revoke them all.)

Static-code sales are booked under the merchant's **virtual terminal** `SQnnnnnn`, made
with the first code: a terminal in the registry (so it can be locked like any other) that
is activated with no device key, so no device can ever sign on as it. Not a real
terminal of the merchant: its batch would then hold sales its own journal never saw,
and its settlement would not balance. The store also keeps the wallet pages' order
requests (request id -> batch and STAN of the virtual terminal), which makes a
repeated request the same order.
"""
from __future__ import annotations

import hmac
import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass

from acquirer.registry import Registry
from acquirer.sqlite_tx import write_transaction
from keys.hsm import HSM

STATIC_QR_KEY = "host/STATIC_QR"  # TOKEN usage: HMAC-SM3 over merchant id and serial
DEFAULT_MAX_AMOUNT = 5_000_000  # fen per payment unless the code says otherwise (CNY 50,000)
VIRTUAL_PREFIX = "SQ"
PATH = "/s/"  # the page's path on the acquirer's static-code site
_TOKEN = re.compile(r"([A-Za-z0-9]{15})-([0-9A-F]{8})-([0-9A-F]{32})")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS static_codes (
    serial TEXT PRIMARY KEY, merchant_id TEXT NOT NULL, terminal_id TEXT NOT NULL, max_amount INTEGER NOT NULL,
    status TEXT NOT NULL, issued_at REAL NOT NULL, revoked_at REAL, reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS static_codes_merchant ON static_codes (merchant_id, status);
CREATE TABLE IF NOT EXISTS static_requests (
    merchant_id TEXT NOT NULL, request_id TEXT NOT NULL, order_id TEXT NOT NULL UNIQUE, terminal_id TEXT NOT NULL,
    batch TEXT NOT NULL, stan TEXT NOT NULL, wallet TEXT NOT NULL, amount INTEGER NOT NULL, buyer TEXT NOT NULL,
    created_at REAL NOT NULL, outcome TEXT NOT NULL DEFAULT '', PRIMARY KEY (merchant_id, request_id)
);
CREATE TABLE IF NOT EXISTS stans (terminal_id TEXT NOT NULL, batch TEXT NOT NULL, last INTEGER NOT NULL,
                                  PRIMARY KEY (terminal_id, batch));
"""


class StaticCodeError(Exception):
    """Why a static code or a request made with it is refused; `reason` is the page's error name."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class StaticCode:
    merchant_id: str
    terminal_id: str  # the virtual terminal its sales are booked under
    serial: str
    max_amount: int
    status: str  # active or revoked
    token: str


@dataclass(frozen=True)
class StaticRequest:
    """One order a wallet page asked for: the same request id is the same order."""

    merchant_id: str
    request_id: str
    order_id: str
    terminal_id: str
    batch: str
    stan: str
    wallet: str
    amount: int
    buyer: str
    outcome: str = ""  # "", booked, or closed (nothing to book)


class StaticCodes:
    def __init__(self, path: str | os.PathLike, hsm: HSM, registry: Registry, clock=time.time):
        self.hsm, self.registry, self.clock = hsm, registry, clock
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an order's STAN is durable before the wallet is asked
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()
        if not hsm.exists(STATIC_QR_KEY):
            hsm.generate(STATIC_QR_KEY, "SM4", "TOKEN")

    def close(self) -> None:
        self._db.close()

    # --- where the page lives ---------------------------------------------------------
    @property
    def base_url(self) -> str:
        row = self._db.execute("SELECT v FROM meta WHERE k='base_url'").fetchone()
        return row[0] if row else ""

    @base_url.setter
    def base_url(self, url: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('base_url', ?)", (url.rstrip("/"),))

    def url(self, code: StaticCode, base_url: str = "") -> str:
        base = (base_url or self.base_url).rstrip("/")
        if not base:
            raise StaticCodeError("no_base_url", "the static-code site's URL is not known: start the host with "
                                                 "its QR channel, or give --base-url")
        return f"{base}{PATH}{code.token}"

    # --- issuing ----------------------------------------------------------------------
    def _mac(self, merchant_id: str, serial: str) -> str:
        return self.hsm.token(STATIC_QR_KEY, b"static-qr\x00" + merchant_id.encode() + b"\x00" + serial.encode())

    def _code(self, row: tuple) -> StaticCode:
        serial, merchant_id, terminal_id, max_amount, status = row
        return StaticCode(merchant_id, terminal_id, serial, max_amount, status,
                          f"{merchant_id}-{serial}-{self._mac(merchant_id, serial)}")

    def current(self, merchant_id: str) -> StaticCode | None:
        row = self._db.execute("SELECT serial, merchant_id, terminal_id, max_amount, status FROM static_codes "
                               "WHERE merchant_id=? AND status='active'", (merchant_id,)).fetchone()
        return self._code(row) if row else None

    def issue(self, merchant_id: str, *, max_amount: int | None = None, rotate: bool = False,
              actor: str = "operator") -> StaticCode:
        """The merchant's active code, issuing one if there is none; `rotate` replaces it."""
        self.registry.merchant(merchant_id)  # RegistryError for an unknown merchant
        if max_amount is not None and not 0 < max_amount < 10**12:
            raise StaticCodeError("amount_out_of_range", "the code's maximum must be a positive number of fen")
        with self._lock:
            code = self.current(merchant_id)
            if code is not None and not rotate:  # the printed sticker stays valid; only its limit may change
                if max_amount is not None:
                    self._db.execute("UPDATE static_codes SET max_amount=? WHERE serial=?", (max_amount, code.serial))
                return self.current(merchant_id)
            terminal_id = code.terminal_id if code else self._virtual_terminal(merchant_id, actor)
            limit = max_amount or (code.max_amount if code else DEFAULT_MAX_AMOUNT)
            serial = secrets.token_hex(4).upper()
            with write_transaction(self._db) as db:
                if code is not None:
                    db.execute("UPDATE static_codes SET status='revoked', revoked_at=?, reason=? WHERE serial=?",
                               (self.clock(), "replaced", code.serial))
                db.execute("INSERT INTO static_codes (serial, merchant_id, terminal_id, max_amount, status, "
                           "issued_at) VALUES (?,?,?,?,'active',?)", (serial, merchant_id, terminal_id, limit,
                                                                      self.clock()))
        return self.current(merchant_id)

    def revoke(self, merchant_id: str, reason: str = "") -> StaticCode:
        with self._lock:
            code = self.current(merchant_id)
            if code is None:
                raise StaticCodeError("token_unknown", f"merchant {merchant_id} has no active static code")
            self._db.execute("UPDATE static_codes SET status='revoked', revoked_at=?, reason=? WHERE serial=?",
                             (self.clock(), reason or "revoked", code.serial))
        return code

    def _virtual_terminal(self, merchant_id: str, actor: str) -> str:
        row = self._db.execute("SELECT terminal_id FROM static_codes WHERE merchant_id=? LIMIT 1",
                               (merchant_id,)).fetchone()
        if row:
            return row[0]
        n = 1 + (self._db.execute("SELECT count(DISTINCT terminal_id) FROM static_codes").fetchone()[0])
        while self.registry.find_terminal(terminal_id := f"{VIRTUAL_PREFIX}{n:06d}") is not None:
            n += 1
        code = self.registry.add_terminal(terminal_id, merchant_id, actor=actor)
        # active, but with no device key: key download and sign-on fail, no device can be it
        self.registry.activate(terminal_id, code, "static-qr", b"")
        return terminal_id

    # --- checking ---------------------------------------------------------------------
    def resolve(self, token: str, *, active: bool = True) -> StaticCode:
        """The code a token stands for. `token_unknown` for anything this acquirer did not
        issue (wrong shape, wrong MAC), `token_revoked` for a revoked or replaced one."""
        m = _TOKEN.fullmatch(token.strip()) if isinstance(token, str) else None
        if m is None or not hmac.compare_digest(self._mac(m[1], m[2]), m[3]):
            raise StaticCodeError("token_unknown", "not a static code of this acquirer")
        row = self._db.execute("SELECT serial, merchant_id, terminal_id, max_amount, status FROM static_codes "
                               "WHERE serial=? AND merchant_id=?", (m[2], m[1])).fetchone()
        if row is None:  # a valid MAC over a serial we do not hold: the store was replaced
            raise StaticCodeError("token_unknown", "not a static code of this acquirer")
        code = self._code(row)
        if active and code.status != "active":
            raise StaticCodeError("token_revoked", "this static code has been revoked: ask the merchant for the "
                                                   "current one")
        return code

    # --- order requests ---------------------------------------------------------------
    def request(self, merchant_id: str, request_id: str) -> StaticRequest | None:
        row = self._db.execute(f"SELECT {_REQUEST_COLUMNS} FROM static_requests WHERE merchant_id=? AND "
                               "request_id=?", (merchant_id, request_id)).fetchone()
        return StaticRequest(*row) if row else None

    def request_of_order(self, order_id: str) -> StaticRequest | None:
        row = self._db.execute(f"SELECT {_REQUEST_COLUMNS} FROM static_requests WHERE order_id=?",
                               (order_id,)).fetchone()
        return StaticRequest(*row) if row else None

    def add_request(self, code: StaticCode, request_id: str, batch: str, wallet: str, amount: int,
                    buyer: str) -> StaticRequest | None:
        """Record a new request under the next STAN of the virtual terminal's `batch`;
        None when the batch has no STAN left (close it and open the next)."""
        try:
            with write_transaction(self._db, self._lock) as db:
                row = db.execute("SELECT last FROM stans WHERE terminal_id=? AND batch=?",
                                 (code.terminal_id, batch)).fetchone()
                last = (row[0] if row else 0) + 1
                if last > 999_999:
                    return None  # nothing written yet
                stan = f"{last:06d}"
                order_id = f"{code.terminal_id}-{batch}-{stan}"  # wallet_flows.order_id_for: one form for every QR order
                db.execute("INSERT OR REPLACE INTO stans VALUES (?,?,?)", (code.terminal_id, batch, last))
                db.execute(f"INSERT INTO static_requests ({_REQUEST_COLUMNS}, created_at) VALUES "
                           "(?,?,?,?,?,?,?,?,?,?,?)", (code.merchant_id, request_id, order_id, code.terminal_id,
                                                       batch, stan, wallet, amount, buyer, "", self.clock()))
        except sqlite3.IntegrityError:  # the same request id, recorded meanwhile: that one stands (STAN untaken)
            pass
        return self.request(code.merchant_id, request_id)

    def settle_request(self, order_id: str, outcome: str) -> None:
        with self._lock:
            self._db.execute("UPDATE static_requests SET outcome=? WHERE order_id=?", (outcome, order_id))

    def open_requests(self) -> list[StaticRequest]:
        """Requests whose order is neither booked nor closed: to resume after a restart."""
        rows = self._db.execute(f"SELECT {_REQUEST_COLUMNS} FROM static_requests WHERE outcome='' "
                                "ORDER BY created_at").fetchall()
        return [StaticRequest(*r) for r in rows]


_REQUEST_COLUMNS = "merchant_id, request_id, order_id, terminal_id, batch, stan, wallet, amount, buyer, outcome"
