"""The issuer simulator's own database: card accounts and the decisions taken on them.

SQLite in WAL mode. `durable=True` (synchronous FULL) puts every decision on disk before
its answer leaves; the host runs the simulator with `durable=False` (synchronous NORMAL:
a decision survives a crash of the process, not a power cut), because the simulator
stands for a remote issuer whose durability is its own, and an fsync per decision would
make the simulated issuer, not the acquirer, the bottleneck of every benchmark.
Accounts are keyed by a PAN token, SM3(per-issuer salt || PAN); the clear PAN is never
stored, only its masked form for people. The PIN is kept as a PIN block under the
issuer's ZPK (the "PIN reference"), never in clear.

In the host the store is also `grouped`: its decisions ride in one long write
transaction that the ledger writer commits before the group of ledger units that
depends on it (acquirer.ledger.companion), not a transaction of their own per request.
Grouped, the accounts read and the authorisation code sequence are also kept in
memory: while this connection holds the write transaction no other can change them,
and at each BEGIN `PRAGMA data_version` says whether another one did in between (then
they are read again). The sequence is kept in the file as a reservation: the COMMIT that
gives out the first number above the one stored also stores _AUTH_BLOCK - 1 more, so
most groups do not rewrite it; a clean close stores the last number given, and after a
crash numbers go on above the reservation (a gap, never a number given twice). Written
back before each COMMIT are also the accounts a decision changed (only the columns a decision changes, one executemany) and
the decision records of sales and refunds: nothing reads them back from the file within
the group (accounts are read from memory; a void or a reversal, which looks up
decisions, writes those pending first, outside its own savepoint). A decision that fails
part-way puts back the accounts as they were before it and drops its pending record, as
the rollback to its savepoint does in the file. A sale or a refund writes nothing to the
file until the flush, so it needs no savepoint (a void or a reversal, which updates
earlier decisions in the file, has one). Grouped, the PAN tokens of the cards seen last are
kept too (`token`): a token depends only on the file's salt, so it is never stale.
"""
from __future__ import annotations

import enum
import functools
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ContextManager, Iterator

from cryptography.hazmat.primitives import hashes

from acquirer.ledger.companion import CompanionStore, GroupedWrites
from acquirer.sqlite_tx import write_transaction
from keys.bounded import remember
from keys.emv import CardFamily
from keys.tlv import mask_pan

from acquirer.frozen import made

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    token TEXT PRIMARY KEY,
    masked_pan TEXT NOT NULL,
    profile TEXT NOT NULL,
    family TEXT NOT NULL,
    psn TEXT NOT NULL,
    expiry TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'blocked', 'lost')),
    balance INTEGER NOT NULL,
    per_transaction_limit INTEGER,
    daily_limit INTEGER,
    day TEXT NOT NULL DEFAULT '',
    day_total INTEGER NOT NULL DEFAULT 0,
    pin_reference BLOB,
    pin_try_limit INTEGER NOT NULL,
    pin_tries_left INTEGER NOT NULL,
    last_atc INTEGER NOT NULL DEFAULT -1,
    opened_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    token TEXT NOT NULL REFERENCES accounts(token),
    operation TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    stan TEXT NOT NULL,
    amount INTEGER NOT NULL,
    code TEXT NOT NULL,
    auth_code TEXT NOT NULL DEFAULT '',
    effect INTEGER NOT NULL DEFAULT 0,
    day TEXT NOT NULL,
    undoes INTEGER REFERENCES decisions(id),
    undone_by INTEGER REFERENCES decisions(id),
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_by_card ON decisions(token, terminal_id, stan);
"""


class AccountStatus(str, enum.Enum):
    ACTIVE = "active"
    BLOCKED = "blocked"
    LOST = "lost"


class AccountError(ValueError):
    """Bad personalisation data, or an account that exists / does not; names the field."""


@dataclass(frozen=True)
class Account:
    """One card account as stored. Shows the PAN masked; the PIN only as an encrypted block."""

    token: str = field(repr=False)
    masked_pan: str
    profile: str
    family: CardFamily
    psn: str
    expiry: str  # YYMM
    status: AccountStatus
    balance: int  # fen
    per_transaction_limit: int | None
    daily_limit: int | None
    day: str  # YYYYMMDD of day_total
    day_total: int
    pin_reference: bytes | None = field(repr=False, compare=False)
    pin_try_limit: int
    pin_tries_left: int
    last_atc: int  # -1 before the first verified ARQC

    def spent_on(self, day: str) -> int:
        return self.day_total if self.day == day else 0


@dataclass(frozen=True)
class Decision:
    id: int
    operation: str
    amount: int
    code: str
    effect: int  # signed change the decision made to the balance
    day: str
    undoes: int | None
    undone_by: int | None


_INSERT_DECISION = ("INSERT INTO decisions (token, operation, terminal_id, merchant_id, stan, amount, code, auth_code,"
                    " effect, day, undoes, at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")
_ACCOUNT_COLUMNS = ("token, masked_pan, profile, family, psn, expiry, status, balance, per_transaction_limit,"
                    " daily_limit, day, day_total, pin_reference, pin_try_limit, pin_tries_left, last_atc")
# What a decision changes in its account (the rest changes only at the desk: open_account,
# set_status), kept in memory when grouped and written back by the flush.
_DECIDED = ("balance", "day", "day_total", "pin_tries_left", "last_atc")
_DECIDED_SET = frozenset(_DECIDED)
_WRITE_DECIDED = f"UPDATE accounts SET {', '.join(f'{c}=?' for c in _DECIDED)} WHERE token=?"
_DECISION_COLUMNS = "id, operation, amount, code, effect, day, undoes, undone_by"
_TOKENS = 4096  # grouped: the cards whose token is kept (as many as keys.hsm keeps ICC master keys of)
_AUTH_BLOCK = 1000  # authorisation numbers a grouped store reserves in the file at a time
_ACCOUNT_FIELDS = tuple(_ACCOUNT_COLUMNS.split(", "))  # the Account's fields, in its order
_FAMILIES = {family.value: family for family in CardFamily}
_STATUSES = {status.value: status for status in AccountStatus}


def _account(row: tuple) -> Account:
    """The Account of a row of `_ACCOUNT_COLUMNS`, made as `_changed` makes one (the row is
    the file's: its CHECK constraints have done what __init__ would not do anyway)."""
    values = dict(zip(_ACCOUNT_FIELDS, row))
    family, status = values["family"], values["status"]
    values["family"] = _FAMILIES.get(family) or CardFamily(family)
    values["status"] = _STATUSES.get(status) or AccountStatus(status)
    return made(Account, values)


def _decided_row(account: Account) -> tuple:
    """The UPDATE parameters of `_WRITE_DECIDED`."""
    return (account.balance, account.day, account.day_total, account.pin_tries_left, account.last_atc, account.token)


def _put(kept: dict, key: str, value) -> None:
    if value is None:
        kept.pop(key, None)
    else:
        kept[key] = value


def _changed(account: Account, changes: dict) -> Account:
    """`dataclasses.replace` for the once-per-decision path: an Account has no checks in
    __post_init__ to run again, and its frozen __init__ costs several times this copy."""
    return made(Account, {**account.__dict__, **changes})


@functools.lru_cache(maxsize=64)
def _update_sql(columns: tuple[str, ...]) -> str:
    return f"UPDATE accounts SET {', '.join(f'{name}=?' for name in columns)} WHERE token=?"


class AccountStore(CompanionStore):
    """Accounts and decisions; every change goes through `transaction()`."""

    def __init__(self, path: str | os.PathLike, durable: bool = True, grouped: bool = False):
        self.path = str(path)
        self._lock = threading.RLock()
        self._accounts: dict[str, Account] = {}  # grouped: token -> the account as this connection has it
        self._auth_seq: int | None = None  # grouped: the last authorisation number given
        self._auth_reserved = 0  # grouped: the number stored (or to be, when dirty): none up to it is given again
        self._auth_dirty = False
        self._auth_recheck = False  # grouped: another connection wrote the file: it may have given numbers
        self._decisions: list[tuple] = []  # grouped: decision rows not yet written (module docstring)
        self._unwritten: dict[str, Account] = {}  # grouped: token -> account changed, not yet written
        # in a grouped decision: token -> (kept, unwritten) as they were before it changed that account
        self._before: dict[str, tuple[Account | None, Account | None]] | None = None
        self._savepoint = False  # in a grouped decision: whether it has one (it may write to the file)
        self._tokens: dict[str, str] | None = None  # grouped: PAN -> token, see `token`
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        with self.transaction() as db:
            row = db.execute("SELECT v FROM meta WHERE k='pan_salt'").fetchone()
            if row is None:
                row = (os.urandom(16).hex(),)
                db.execute("INSERT INTO meta VALUES ('pan_salt', ?)", row)
        self._salt = bytes.fromhex(row[0])
        self._salted = hashes.Hash(hashes.SM3())  # SM3 after the salt: each token goes on from a copy
        self._salted.update(self._salt)
        if grouped:
            self._grouped = GroupedWrites(self._db, self._lock, on_begin=self._check_version)
            self._tokens = {}
            self._memory_decision = _MemoryDecision(self)  # one serves every sale: decisions do not nest

    def flush(self) -> None:
        """Commit the decisions taken so far: the accounts they changed, their records and the
        authorisation number, written first when they were kept in memory."""
        with self._lock:
            if self._grouped is not None and self._db.in_transaction:
                if self._unwritten:
                    self._db.executemany(_WRITE_DECIDED, [_decided_row(a) for a in self._unwritten.values()])
                    self._unwritten.clear()
                self._write_decisions(self._db)
            if self._grouped is not None and self._auth_dirty and self._db.in_transaction:
                self._db.execute("INSERT INTO meta VALUES ('auth_seq', ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v",
                                 (str(self._auth_reserved),))
                self._auth_dirty = False
            super().flush()

    def close(self) -> None:
        """Give back the reserved authorisation numbers not given (module docstring), unless
        another connection has given numbers since; then commit and close."""
        with self._lock:
            if (not self._closed and self._grouped is not None and self._auth_seq is not None
                    and self._auth_seq < self._auth_reserved):
                if self._auth_dirty:  # the reservation is not in the file yet
                    self._auth_reserved = self._auth_seq
                else:
                    self._grouped.execute("UPDATE meta SET v=? WHERE k='auth_seq' AND v=?",
                                          (str(self._auth_seq), str(self._auth_reserved)))
            super().close()

    def _forget(self) -> None:
        self._accounts.clear()
        self._auth_recheck = True

    def token(self, pan: str) -> str:
        """SM3(salt || PAN), hex; the salt's part of the hash is done once (`_salted`).

        Grouped (the issuer's own process), the tokens of the last _TOKENS cards are kept by
        PAN, as that process's HSM keeps their ICC master keys by PAN (keys.hsm, `_card_key`):
        the salt never changes, so a kept token is never stale, and the PANs are the ones that
        process holds anyway. Elsewhere (the host's desk connection) no PAN is kept."""
        tokens = self._tokens
        if tokens is not None:
            token = tokens.get(pan)
            if token is not None:
                return token
        h = self._salted.copy()
        h.update(pan.encode("ascii", "replace"))
        token = h.finalize().hex()
        if tokens is not None:
            remember(tokens, pan, token, _TOKENS)
        return token

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit, committed when it ends: BEGIN IMMEDIATE takes the write lock
        before anything is read. Grouped, the decisions pending so far are committed first."""
        with self._lock:
            self.flush()
            with write_transaction(self._db) as db:
                if self._grouped is not None:
                    self._check_version()
                yield db

    def decision(self, reads_decisions: bool = False) -> ContextManager[sqlite3.Connection]:
        """The unit of one authorisation: its own transaction or, grouped, a savepoint (a void
        or a reversal) or changes kept in memory (the others).

        `reads_decisions`: it looks up earlier decisions and updates them (a void, a
        reversal), so the ones pending are written first, outside its savepoint: they are
        not its to roll back. Any other decision (a sale, a refund) keeps all it changes in
        memory until the flush (module docstring): it gets no savepoint, and what it
        changed in memory is put back if it fails."""
        if self._grouped is None:
            return self.transaction()
        if not reads_decisions:
            return self._memory_decision
        return self._savepoint_decision()

    @contextmanager
    def _savepoint_decision(self) -> Iterator[sqlite3.Connection]:
        """A grouped void or reversal: the pending records written first, then its savepoint."""
        with self._lock:
            if self._decisions:
                with self._grouped.change() as db:
                    self._write_decisions(db)
            pending, self._before, self._savepoint = len(self._decisions), {}, True
            try:
                with self._grouped.change() as db:
                    yield db
            except BaseException:  # the file is back at the savepoint: memory goes back too
                self._undo(pending)
                raise
            finally:
                self._before, self._savepoint = None, False

    def _begin(self) -> None:
        """BEGIN IMMEDIATE and the data_version check, when no write transaction is open
        (`GroupedWrites.change` without its SAVEPOINT and RELEASE: a sale or a refund
        writes nothing to the file before the flush, so it has nothing to roll back there)."""
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
            self._check_version()

    def _undo(self, pending: int) -> None:
        """Memory back to before a decision that failed: the accounts it changed, its record."""
        for token, (kept, unwritten) in self._before.items():
            _put(self._accounts, token, kept)
            _put(self._unwritten, token, unwritten)
        del self._decisions[pending:]

    def _write_decisions(self, db: sqlite3.Connection) -> None:
        if self._decisions:
            db.executemany(_INSERT_DECISION, self._decisions)
            self._decisions.clear()

    def _read_decisions(self, db: sqlite3.Connection) -> sqlite3.Connection:
        """`db` for a statement on earlier decisions: only in a decision opened for that
        (a lookup would miss the pending ones; a change would have no savepoint)."""
        if self._decisions or (self._before is not None and not self._savepoint):
            raise RuntimeError("decisions pending: open the decision with reads_decisions=True")
        return db

    # --- accounts --------------------------------------------------------------
    def find(self, db: sqlite3.Connection, pan: str) -> Account | None:
        tokens = self._tokens  # `token`'s kept value, without the call (once per decision)
        token = (tokens.get(pan) if tokens is not None else None) or self.token(pan)
        account = self._accounts.get(token)
        if account is not None:
            return account
        row = db.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE token=?", (token,)).fetchone()
        return None if row is None else self._keep(_account(row))

    def _keep(self, account: Account) -> Account:
        if self._grouped is not None:
            self._accounts[account.token] = account
        return account

    def insert(self, db: sqlite3.Connection, account: Account, replace: bool) -> None:
        self._accounts.pop(account.token, None)
        if replace:
            db.execute("DELETE FROM decisions WHERE token=?", (account.token,))
            db.execute("DELETE FROM accounts WHERE token=?", (account.token,))
        elif db.execute("SELECT 1 FROM accounts WHERE token=?", (account.token,)).fetchone():
            raise AccountError(f"pan: an account for card {account.masked_pan} already exists")
        db.execute(
            f"INSERT INTO accounts ({_ACCOUNT_COLUMNS}, opened_at) VALUES ({', '.join('?' * 17)})",
            (account.token, account.masked_pan, account.profile, account.family.value, account.psn, account.expiry,
             account.status.value, account.balance, account.per_transaction_limit, account.daily_limit, account.day,
             account.day_total, account.pin_reference, account.pin_try_limit, account.pin_tries_left,
             account.last_atc, time.time()),
        )

    def update(self, db: sqlite3.Connection, account: Account, **changes) -> Account:
        """Write `changes` (column=value) to the account row; returns the account as it now is.

        `account` is the row as this connection has it (read in this transaction, or kept by
        `find`), so the new account is that one with the changes, without reading it back."""
        if not changes:
            if account.token in self._unwritten:
                return self._unwritten[account.token]
            row = db.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE token=?", (account.token,)).fetchone()
            return _account(row)
        if "status" in changes:
            changes["status"] = AccountStatus(changes["status"])
        return self.change(db, account, changes)

    def change(self, db: sqlite3.Connection, account: Account, changes: dict) -> Account:
        """`update` with at least one change, given as a dict (a decision's: the issuer builds
        it as it checks, and passes it on without a keyword round trip)."""
        changed = _changed(account, changes)
        before = self._before
        if before is not None:  # in a grouped decision: written by the flush (module docstring)
            if not _DECIDED_SET.issuperset(changes):
                raise RuntimeError(f"a decision changes only {', '.join(_DECIDED)}, not {', '.join(changes)}")
            token = account.token
            if token not in before:
                before[token] = (self._accounts.get(token), self._unwritten.get(token))
            self._accounts[token] = self._unwritten[token] = changed
            return changed
        values = [v.value if isinstance(v, enum.Enum) else v for v in changes.values()]
        if db.execute(_update_sql(tuple(changes)), (*values, account.token)).rowcount != 1:
            raise AccountError("pan: no account for that card")
        return self._keep(changed)

    def next_auth_code(self, db: sqlite3.Connection) -> str:
        if self._grouped is not None:  # kept in memory, reserved in the file (module docstring)
            if self._auth_seq is None or self._auth_recheck:
                row = db.execute("SELECT v FROM meta WHERE k='auth_seq'").fetchone()
                stored = int(row[0]) if row else 0
                if self._auth_seq is None or stored != self._auth_reserved:  # first, or another gave numbers
                    self._auth_seq = self._auth_reserved = stored
                self._auth_recheck = False
            self._auth_seq += 1
            if self._auth_seq > self._auth_reserved:
                self._auth_reserved = self._auth_seq + _AUTH_BLOCK - 1
                self._auth_dirty = True
            return f"{self._auth_seq % 1_000_000:06d}"
        (seq,), = db.execute("INSERT INTO meta VALUES ('auth_seq', '1') ON CONFLICT(k) DO UPDATE SET "
                             "v = CAST(v AS INTEGER) + 1 RETURNING CAST(v AS INTEGER)").fetchall()
        return f"{seq % 1_000_000:06d}"

    # --- decisions -------------------------------------------------------------
    def record(self, db: sqlite3.Connection, account: Account, request, code: str, *, auth_code: str = "",
               effect: int = 0, day: str, undoes: int | None = None) -> None:
        row = (account.token, request.operation._value_, request.terminal_id, request.merchant_id, request.stan,
               request.amount, code, auth_code, effect, day, undoes, time.time())
        if undoes is None and self._grouped is not None:
            self._decisions.append(row)  # written before the COMMIT, or before decisions are read
            return
        cursor = self._read_decisions(db).execute(_INSERT_DECISION, row)
        if undoes is not None:
            db.execute("UPDATE decisions SET undone_by=? WHERE id=?", (cursor.lastrowid, undoes))

    def reopen(self, db: sqlite3.Connection, decision_id: int) -> None:
        """A reversed void gives its sale back: the sale may be voided or reversed again."""
        self._read_decisions(db).execute("UPDATE decisions SET undone_by=NULL WHERE id=?", (decision_id,))

    def get_decision(self, db: sqlite3.Connection, decision_id: int) -> Decision:
        row = self._read_decisions(db).execute(f"SELECT {_DECISION_COLUMNS} FROM decisions WHERE id=?",
                                               (decision_id,)).fetchone()
        return Decision(*row)

    def open_sale(self, db: sqlite3.Connection, account: Account, terminal_id: str, merchant_id: str,
                  amount: int) -> Decision | None:
        """The card's latest approved sale of `amount` at this terminal that nothing has undone."""
        row = self._read_decisions(db).execute(
            f"SELECT {_DECISION_COLUMNS} FROM decisions WHERE token=? AND terminal_id=? AND merchant_id=?"
            " AND operation='sale' AND code='00' AND amount=? AND undone_by IS NULL ORDER BY id DESC LIMIT 1",
            (account.token, terminal_id, merchant_id, amount),
        ).fetchone()
        return None if row is None else Decision(*row)

    def latest_by_stan(self, db: sqlite3.Connection, account: Account, terminal_id: str, merchant_id: str,
                       stan: str) -> Decision | None:
        """The latest sale, void or refund of this card with that STAN at this terminal."""
        row = self._read_decisions(db).execute(
            f"SELECT {_DECISION_COLUMNS} FROM decisions WHERE token=? AND terminal_id=? AND merchant_id=?"
            " AND stan=? AND operation != 'reversal' ORDER BY id DESC LIMIT 1",
            (account.token, terminal_id, merchant_id, stan),
        ).fetchone()
        return None if row is None else Decision(*row)


def new_account(token: str, pan: str, *, profile: str, family: CardFamily | str, psn: str, expiry: str,
                status: AccountStatus | str, balance: int, per_transaction_limit: int | None,
                daily_limit: int | None, pin_reference: bytes | None, pin_tries: int) -> Account:
    """Check personalisation data field by field; the PAN is only ever named masked."""
    masked = mask_pan(pan)
    if not profile or "/" in profile:
        raise AccountError("profile: must be a non-empty name without '/'")
    try:
        family = CardFamily(family)
    except ValueError:
        raise AccountError(f"family: must be EMV_TDES or PBOC_SM4, got {family!r}") from None
    if not (len(psn) == 2 and psn.isascii() and psn.isdigit()):
        raise AccountError(f"psn: card {masked}: must be 2 decimal digits")
    if not (len(expiry) == 4 and expiry.isascii() and expiry.isdigit() and 1 <= int(expiry[2:]) <= 12):
        raise AccountError(f"expiry: card {masked}: must be YYMM with a month 01-12")
    try:
        status = AccountStatus(status)
    except ValueError:
        raise AccountError(f"status: must be active, blocked or lost, got {status!r}") from None
    for name, value, optional in (("balance", balance, False), ("per_transaction_limit", per_transaction_limit, True),
                                  ("daily_limit", daily_limit, True), ("pin_tries", pin_tries, False)):
        if value is None and optional:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise AccountError(f"{name}: card {masked}: must be a whole number >= 0, got {value!r}")
    return Account(token=token, masked_pan=masked, profile=profile, family=family, psn=psn, expiry=expiry,
                   status=status, balance=balance, per_transaction_limit=per_transaction_limit,
                   daily_limit=daily_limit, day="", day_total=0, pin_reference=pin_reference,
                   pin_try_limit=pin_tries, pin_tries_left=pin_tries, last_atc=-1)


def check_pan(pan: str) -> None:
    if not isinstance(pan, str) or not (pan.isascii() and pan.isdigit() and 12 <= len(pan) <= 19):
        size = len(pan) if isinstance(pan, str) else type(pan).__name__
        raise AccountError(f"pan: must be 12-19 decimal digits (got {size} characters)")


class _MemoryDecision:
    """`AccountStore.decision()` of a grouped sale or refund, whose changes stay in memory
    until the flush: a plain context manager (the generator of @contextmanager costs
    more than the decision's own bookkeeping, once per sale)."""

    __slots__ = ("_store", "_pending")

    def __init__(self, store: AccountStore):
        self._store = store

    def __enter__(self) -> sqlite3.Connection:
        store = self._store
        store._lock.acquire()
        try:
            store._begin()
        except BaseException:
            store._lock.release()
            raise
        self._pending, store._before, store._savepoint = len(store._decisions), {}, False
        return store._db

    def __exit__(self, kind, exc, tb) -> bool:
        store = self._store
        try:
            if kind is not None:  # nothing of it is in the file: memory goes back
                store._undo(self._pending)
        finally:
            store._before = None
            store._lock.release()
        return False
