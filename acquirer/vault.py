"""The card vault: the one place the host keeps a PAN after the request that brought it.

Voids, refunds and reversals reach the issuer without the card, so the host needs the
PAN of the original. It is kept sealed (SM4-CBC under a host data key that never
leaves the HSM), under the transaction id; the ledger itself holds only a masked PAN
and a keyed token.

In the host the vault is a companion of the ledger writer (`grouped=True`): a kept card
is committed with the next group commit, before the sale's journal entry, instead of in
a transaction of its own on the event loop (acquirer.ledger.companion). Nothing reads a
vault row back within the request that keeps it, so grouped, `keep` only seals the card
and sets it aside; `flush` (the ledger writer's thread, before it commits the group)
writes what was set aside in one statement and commits it. A card set aside is found by
`card` as one in the file is. A flush that fails keeps its cards set aside for the next
one, so no unit commits after a flush that lost a card of it.

The host's ledger writer on the event loop (`ProcessLedgerWriter`) does not flush: it
takes the cards set aside (`take_writes`) and sends them with the group, and the ledger
process writes and commits them just before the group's units. The event loop then runs
no SQLite write for the vault at all (a commit and, now and then, a checkpoint's fsync).
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading

from acquirer.ledger.companion import CompanionStore
from acquirer.sqlite_tx import write_transaction
from keys.hsm import HSM

VAULT_KEY = "host/VAULT"
TOKEN_KEY = "host/TOKEN"
_INSERT = "INSERT OR REPLACE INTO cards VALUES (?,?)"


def _card_json(pan: str, expiry: str, psn: str) -> bytes:
    """`json.dumps([pan, expiry, psn]).encode()`, the sealed card's format, without the json
    module (a tenth of its cost) when the three are plain letters and digits, as cards' are."""
    joined = pan + expiry + psn
    if joined.isalnum() and joined.isascii():
        return f'["{pan}", "{expiry}", "{psn}"]'.encode()
    return json.dumps([pan, expiry, psn]).encode()


class CardVault(CompanionStore):
    def __init__(self, path: str | os.PathLike, hsm: HSM, *, grouped: bool = False):
        self._hsm = hsm
        for name, usage in ((VAULT_KEY, "TDK"), (TOKEN_KEY, "TOKEN")):
            if not hsm.exists(name):
                hsm.generate(name, "SM4", usage)
        self.path = os.fspath(path)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL, not FULL: a sale's money is durable in the ledger's group commit; losing the
        # last vault rows in a power cut only makes those sales un-voidable without the card.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS cards (txn_id TEXT PRIMARY KEY, sealed BLOB NOT NULL)")
        self._lock = threading.RLock()  # the connection (and a flush in progress)
        self._deferred = grouped
        self._pending: dict[str, bytearray] = {}  # grouped: txn_id -> sealed card, not yet written
        self._sending: list[dict[str, bytearray]] = []  # taken by `take_writes`, not yet known written
        self._pending_lock = threading.Lock()  # held only to put a card aside or take them all

    def token(self, pan: str) -> str:
        return self._hsm.token(TOKEN_KEY, pan.encode("ascii"))

    def keep(self, txn_id: str, pan: str, expiry: str, psn: str) -> None:
        # a bytearray: sqlite3 binds one as a blob straight away, bytes only after looking for
        # an adapter (the ledger process writes these rows: acquirer/ledger/process.py)
        sealed = bytearray(self._hsm.seal_data(VAULT_KEY, _card_json(pan, expiry, psn)))
        if self._deferred:  # written by the next flush: no SQLite on the caller's thread
            with self._pending_lock:
                self._pending[txn_id] = sealed
            return
        with self._lock:
            self._db.execute(_INSERT, (txn_id, sealed))

    def card(self, txn_id: str) -> tuple[str, str, str] | None:
        with self._lock:  # after a flush in progress: its cards are in the file, or set aside again
            sealed = self._pending.get(txn_id)
            for batch in reversed(self._sending) if sealed is None else ():  # the newest first
                sealed = batch.get(txn_id)
                if sealed is not None:
                    break
            if sealed is None:
                row = self._db.execute("SELECT sealed FROM cards WHERE txn_id=?", (txn_id,)).fetchone()
                if row is None:
                    return None
                sealed = row[0]
        pan, expiry, psn = json.loads(self._hsm.open_data(VAULT_KEY, bytes(sealed)))
        return pan, expiry, psn

    def take_writes(self):
        """The cards set aside, for the ledger process to write and commit before the group
        it sends with them (acquirer/ledger/process.py): ((path, sql, rows), token), or None.
        They are still found by `card` until `written(token, ...)` says how it went."""
        with self._pending_lock:
            if not self._pending:
                return None
            batch, self._pending = self._pending, {}
            self._sending.append(batch)
        return (self.path, _INSERT, list(batch.items())), batch

    def written(self, token, ok: bool) -> None:
        """The ledger process committed the cards of `token` (ok), or may not have: then they
        are set aside again, under what was kept meanwhile (a second write replaces the row)."""
        with self._pending_lock:
            self._sending = [b for b in self._sending if b is not token]
            if not ok:
                self._set_aside_again(token)

    def _set_aside_again(self, batch: dict[str, bytearray]) -> None:
        """Cards whose write may have failed wait for the next one, under what was kept
        meanwhile (a newer card for the same transaction wins). Hold `_pending_lock`."""
        batch.update(self._pending)
        self._pending = batch

    def flush(self) -> None:
        """Write and commit the cards set aside (the ledger writer calls this before each group)."""
        with self._lock:
            with self._pending_lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return
            try:
                with write_transaction(self._db) as db:
                    db.executemany(_INSERT, batch.items())
            except BaseException:
                with self._pending_lock:
                    self._set_aside_again(batch)
                raise
