"""The card vault: the one place the host keeps a PAN after the request that brought it.

Voids, refunds and reversals reach the issuer without the card, so the host needs the
PAN of the original. It is kept sealed (SM4-CBC under a host data key that never
leaves the HSM), under the transaction id; the ledger itself holds only a masked PAN
and a keyed token.

In the host the vault is a companion of the ledger writer (`grouped=True`): a kept card
is committed with the next group commit, before the sale's journal entry, instead of in
a transaction of its own on the event loop (acquirer.ledger.companion).
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading

from acquirer.ledger.companion import CompanionStore, GroupedWrites
from keys.hsm import HSM

VAULT_KEY = "host/VAULT"
TOKEN_KEY = "host/TOKEN"
_INSERT = "INSERT OR REPLACE INTO cards VALUES (?,?)"


class CardVault(CompanionStore):
    def __init__(self, path: str | os.PathLike, hsm: HSM, *, grouped: bool = False):
        self._hsm = hsm
        for name, usage in ((VAULT_KEY, "TDK"), (TOKEN_KEY, "TOKEN")):
            if not hsm.exists(name):
                hsm.generate(name, "SM4", usage)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL, not FULL: a sale's money is durable in the ledger's group commit; losing the
        # last vault rows in a power cut only makes those sales un-voidable without the card.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS cards (txn_id TEXT PRIMARY KEY, sealed BLOB NOT NULL)")
        self._lock = threading.RLock()
        self._grouped = GroupedWrites(self._db, self._lock) if grouped else None

    def token(self, pan: str) -> str:
        return self._hsm.token(TOKEN_KEY, pan.encode("ascii"))

    def keep(self, txn_id: str, pan: str, expiry: str, psn: str) -> None:
        sealed = self._hsm.seal_data(VAULT_KEY, json.dumps([pan, expiry, psn]).encode())
        if self._grouped is not None:
            self._grouped.execute(_INSERT, (txn_id, sealed))
            return
        with self._lock:
            self._db.execute(_INSERT, (txn_id, sealed))

    def card(self, txn_id: str) -> tuple[str, str, str] | None:
        with self._lock:  # the same connection sees the rows the next flush will commit
            row = self._db.execute("SELECT sealed FROM cards WHERE txn_id=?", (txn_id,)).fetchone()
        if row is None:
            return None
        pan, expiry, psn = json.loads(self._hsm.open_data(VAULT_KEY, row[0]))
        return pan, expiry, psn
