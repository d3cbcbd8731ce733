"""The card vault: cards kept sealed, grouped writes committed only by a flush (the ledger
writer's), found by the host before and after that flush, never lost by a failed one."""
from __future__ import annotations

import sqlite3

import pytest

from acquirer.vault import CardVault
from keys.hsm import HSM

PAN, TXN = "6214988660100000304", "00000001:000001:000042"


@pytest.fixture
def hsm(tmp_path):
    h = HSM.open(tmp_path / "hsm.db", tmp_path / "lmk")
    yield h
    h.close()


def rows(path) -> dict[str, bytes]:
    with sqlite3.connect(path) as other:
        return dict(other.execute("SELECT txn_id, sealed FROM cards"))


def test_a_kept_card_is_sealed_and_found_again(tmp_path, hsm):
    with_own_writes = CardVault(tmp_path / "vault.db", hsm)
    with_own_writes.keep(TXN, PAN, "2712", "01")
    assert with_own_writes.card(TXN) == (PAN, "2712", "01")
    assert with_own_writes.card("00000001:000001:000043") is None
    sealed = rows(tmp_path / "vault.db")[TXN]
    assert PAN.encode() not in sealed and b"2712" not in sealed
    with_own_writes.close()


def test_grouped_a_card_is_found_at_once_and_written_by_the_flush(tmp_path, hsm):
    vault = CardVault(tmp_path / "vault.db", hsm, grouped=True)
    vault.keep(TXN, PAN, "2712", "01")
    assert vault.card(TXN) == (PAN, "2712", "01")  # a void right after its sale finds the card
    assert rows(tmp_path / "vault.db") == {}  # not committed before the ledger writer's flush
    vault.flush()
    assert set(rows(tmp_path / "vault.db")) == {TXN}
    assert vault.card(TXN) == (PAN, "2712", "01")
    vault.keep("00000001:000001:000043", PAN, "2712", "01")
    vault.close()  # commits what is pending, as the other companions do
    assert set(rows(tmp_path / "vault.db")) == {TXN, "00000001:000001:000043"}


def test_a_failed_flush_keeps_its_cards_for_the_next_one(tmp_path, hsm):
    vault = CardVault(tmp_path / "vault.db", hsm, grouped=True)
    vault._db.execute("PRAGMA busy_timeout=0")  # fail at once instead of waiting 5 s for the lock
    vault.keep(TXN, PAN, "2712", "01")
    other = sqlite3.connect(tmp_path / "vault.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the file: the flush cannot write
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        vault.flush()
    vault.keep("00000001:000001:000043", PAN, "2712", "02")  # kept while the failed batch waits
    assert vault.card(TXN) == (PAN, "2712", "01")
    other.execute("ROLLBACK")
    other.close()
    vault.flush()
    assert set(rows(tmp_path / "vault.db")) == {TXN, "00000001:000001:000043"}
    assert vault.card("00000001:000001:000043") == (PAN, "2712", "02")
    vault.close()


def test_cards_handed_to_the_ledger_process_are_found_until_written_and_kept_if_not(tmp_path, hsm):
    """`take_writes`/`written`: the host's ledger writer sends the cards with a group, and the
    ledger process writes them (acquirer/ledger/process.py)."""
    vault = CardVault(tmp_path / "vault.db", hsm, grouped=True)
    vault.keep(TXN, PAN, "2712", "01")
    (path, sql, cards), token = vault.take_writes()
    assert vault.take_writes() is None  # taken once
    assert path == vault.path and [t for t, _ in cards] == [TXN]
    assert vault.card(TXN) == (PAN, "2712", "01")  # found while it is on its way
    vault.written(token, ok=False)  # the group may not have been committed: set aside again
    assert vault.card(TXN) == (PAN, "2712", "01") and rows(tmp_path / "vault.db") == {}
    (path, sql, cards), token = vault.take_writes()
    with sqlite3.connect(path, isolation_level=None) as writer:  # what the ledger process does
        writer.executemany(sql, cards)
    vault.written(token, ok=True)
    assert vault.take_writes() is None and set(rows(tmp_path / "vault.db")) == {TXN}
    assert vault.card(TXN) == (PAN, "2712", "01")  # now from the file
    vault.close()


@pytest.mark.parametrize("card", [("6212345678901234", "3012", "001"), ("6212345678901234", "3012", ""),
                                  ('62"1\\2', "30 12", "é")])
def test_the_sealed_card_is_the_json_it_always_was(tmp_path, hsm, card):
    import json

    from acquirer.vault import VAULT_KEY, _card_json

    assert _card_json(*card) == json.dumps(list(card)).encode()
    vault = CardVault(tmp_path / "vault.db", hsm)
    vault.keep("T1:000001:000001", *card)
    sealed = vault._db.execute("SELECT sealed FROM cards").fetchone()[0]
    assert json.loads(hsm.open_data(VAULT_KEY, sealed)) == list(card)
    assert vault.card("T1:000001:000001") == card
