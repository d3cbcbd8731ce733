"""The SQLite schema of the host ledger.

SQLite runs in WAL mode with `synchronous=FULL`: a COMMIT returns only after the WAL
is fsync'ed, so a response sent after its unit's COMMIT survives a crash. One writer
connection; readers use their own connections and never block it.
Tables are rowid tables with unique keys: rows of a few hundred bytes arriving in no
key order write fewer pages that way than as WITHOUT ROWID tables (bench/ledger.py).

journal            append-only; BEFORE UPDATE/DELETE triggers abort any change
  seq              INTEGER PRIMARY KEY: only ever grows, as no row is ever deleted
  txn_id           the transaction the entry creates or changes ("terminal:batch:stan")
  event            AUTHORISED | DECLINED | REFUNDED | VOIDED | REVERSED | SETTLED
  amount           fen; for REVERSED the reversed transaction's amount
  at               epoch seconds (host clock) when the entry was applied
  original_txn_id  for refunds and voids (and their reversals): the sale they act on
  details          JSON: for the creating events every projected field of the
                   transaction (merchant, batch, STAN, RRN, auth code, kind, channel,
                   currency, response code, masked PAN, PAN token, extra); for
                   REVERSED the reason; for SETTLED the batch. Never a full PAN.
  A transaction's entries (`SQLiteLedger.journal`) are found by three indexes: the
  one that creates it by (at, txn_id), `at` being the transaction's created_at, so
  a sale's entry lands at the end of that index, not in its terminal's leaf (a page
  written per sale); the REVERSED and SETTLED ones on it by txn_id (a batch's are
  settled together, in txn_id order); those on it as an original by original_txn_id.

transactions       projection of the journal, written in the same DB transaction as
                   the entry; `rebuild_projection()` recreates it from the journal alone
  txn_id PK        "terminal:batch:stan", so the primary key also finds a terminal's or a
                   batch's transactions (a range of ids, `projection.id_range`): no index
                   on (terminal_id, batch), whose leaf per terminal cost every sale a page
                   written to the WAL (bench/ledger.py)
  terminal_id, merchant_id, batch, stan, rrn, auth_code,
  kind             sale | qr | qr_merchant | face | refund | void
  channel          CD (card) | QR | FC (face)
  amount, currency, status (approved | declined | voided | reversed | settled),
  refunded_amount  sum of approved, unreversed refunds against this sale
  original_txn_id, response_code, masked_pan, pan_token, created_at, updated_at

responses          de-duplication: (terminal_id, batch, stan, reversal) -> the SM3 digest
                   of the request without its MAC and the exact response bytes. A
                   reversal (0400) reuses its original's STAN, hence the `reversal` flag.

batches            (terminal_id, batch) -> opened_at, closed_at, host_totals and
                   terminal_totals (JSON, by channel), balanced, differences (JSON list
                   from the batch upload); at most one open batch per terminal

batch_uploads      (terminal_id, batch, stan) -> kind, channel, amount, rrn: what the
                   terminal's 0320 messages listed, kept until the batch is compared

sequences          name -> next value; RRNs are reserved from here in blocks per day
"""
from __future__ import annotations

import sqlite3

SCHEMA_VERSION = "1"

EVENTS = ("AUTHORISED", "DECLINED", "REFUNDED", "VOIDED", "REVERSED", "SETTLED")
# The journal's event check as a chain of `=`, not `event IN (...)`: SQLite (3.40) codes a
# CHECK's IN list as an ephemeral table built for EVERY row inserted (a b-tree and its pager
# opened, filled, closed: a sixth of the ledger process's instructions per sale). The same
# values pass both. Files made with the IN form are given this one when opened
# (`upgrade_events_check`).
EVENTS_CHECK = "CHECK (" + " OR ".join(f"event = '{e}'" for e in EVENTS) + ")"
OLD_EVENTS_CHECK = "CHECK (event IN ('AUTHORISED','DECLINED','REFUNDED','VOIDED','REVERSED','SETTLED'))"

TRANSACTIONS_DDL = """
CREATE TABLE IF NOT EXISTS transactions (
    txn_id TEXT PRIMARY KEY,
    terminal_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    batch TEXT NOT NULL,
    stan TEXT NOT NULL,
    rrn TEXT NOT NULL,
    auth_code TEXT NOT NULL,
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    refunded_amount INTEGER NOT NULL CHECK (refunded_amount >= 0 AND refunded_amount <= amount),
    original_txn_id TEXT,
    response_code TEXT NOT NULL,
    masked_pan TEXT NOT NULL,
    pan_token TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    txn_id TEXT NOT NULL,
    event TEXT NOT NULL {EVENTS_CHECK},
    amount INTEGER NOT NULL CHECK (amount >= 0),
    at REAL NOT NULL,
    original_txn_id TEXT,
    details TEXT NOT NULL CHECK (json_valid(details))
);
CREATE INDEX IF NOT EXISTS journal_at ON journal (at, txn_id);
CREATE INDEX IF NOT EXISTS journal_changes ON journal (txn_id) WHERE event IN ('REVERSED', 'SETTLED');
CREATE INDEX IF NOT EXISTS journal_original ON journal (original_txn_id) WHERE original_txn_id IS NOT NULL;
DROP INDEX IF EXISTS journal_txn; -- files made before: journal_at and journal_changes serve (see above)
CREATE TRIGGER IF NOT EXISTS journal_no_update BEFORE UPDATE ON journal
BEGIN SELECT RAISE(ABORT, 'journal is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS journal_no_delete BEFORE DELETE ON journal
BEGIN SELECT RAISE(ABORT, 'journal is append-only: DELETE refused'); END;

{TRANSACTIONS_DDL}
DROP INDEX IF EXISTS transactions_batch; -- files made before: the primary key serves (projection.id_range)
CREATE INDEX IF NOT EXISTS transactions_rrn ON transactions (rrn) WHERE rrn <> '';
CREATE INDEX IF NOT EXISTS transactions_merchant ON transactions (merchant_id, created_at);

CREATE TABLE IF NOT EXISTS responses (
    terminal_id TEXT NOT NULL,
    batch TEXT NOT NULL,
    stan TEXT NOT NULL,
    reversal INTEGER NOT NULL CHECK (reversal IN (0, 1)),
    request_digest BLOB NOT NULL,
    response BLOB NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (terminal_id, batch, stan, reversal)
);

CREATE TABLE IF NOT EXISTS batches (
    terminal_id TEXT NOT NULL,
    batch TEXT NOT NULL,
    opened_at REAL NOT NULL,
    closed_at REAL,
    host_totals TEXT,
    terminal_totals TEXT,
    balanced INTEGER,
    differences TEXT,
    PRIMARY KEY (terminal_id, batch)
);
CREATE UNIQUE INDEX IF NOT EXISTS batches_one_open ON batches (terminal_id) WHERE closed_at IS NULL;

CREATE TABLE IF NOT EXISTS batch_uploads (
    terminal_id TEXT NOT NULL,
    batch TEXT NOT NULL,
    stan TEXT NOT NULL,
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    amount INTEGER NOT NULL,
    rrn TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (terminal_id, batch, stan)
);

CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def upgrade_events_check(conn) -> bool:
    """Gives a journal made with `OLD_EVENTS_CHECK` the equivalent `EVENTS_CHECK`; True if it
    did. SQLite's documented way to change a CHECK constraint in place (a change that
    touches no stored row: https://sqlite.org/lang_altertable.html, "otherwise"): the
    table's text in sqlite_schema rewritten and the schema version bumped, in one write
    transaction, so every connection reloads the schema. A file that cannot be changed
    (read-only, say) keeps the IN list, which refuses the same values: it opens and works
    as before, only slower. `conn` is in autocommit mode."""
    find = "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'journal'"
    row = conn.execute(find).fetchone()
    if row is None or OLD_EVENTS_CHECK not in row[0]:
        return False
    try:
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute(find).fetchone()  # again under the write lock: another opener may have done it
        if OLD_EVENTS_CHECK not in row[0]:
            conn.execute("ROLLBACK")
            return False
        version = conn.execute("PRAGMA schema_version").fetchone()[0]
        conn.execute("PRAGMA writable_schema = ON")
        try:
            conn.execute("UPDATE sqlite_schema SET sql = ? WHERE type = 'table' AND name = 'journal'",
                         (row[0].replace(OLD_EVENTS_CHECK, EVENTS_CHECK),))
        finally:
            conn.execute("PRAGMA writable_schema = OFF")
        conn.execute(f"PRAGMA schema_version = {version + 1}")
        conn.execute("COMMIT")
    except sqlite3.Error:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return False
    return True
