"""A host killed (SIGKILL) in the middle of pipelined sales loses nothing it answered.

The vault, the issuer simulator and the fence store commit with the ledger writer's
group commit (acquirer.ledger.companion), not one by one. So, after the kill, for every
sale the terminal got an approval for: the ledger has it authorised, the vault has its
card, the issuer has its decision and charged its amount, the fence store has its
report counter; and the issuer charged nothing the ledger does not hold.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from acquirer.channels.issuer import IssuerSimulator
from acquirer.fence.store import FenceStore
from acquirer.ledger import SQLiteLedger, Status, txn_id_for
from acquirer.protocol import (Field60, Frame, PrivateTag, TxnType, decode, encode, private_fields,
                               read_frame_blocking)
from acquirer.registry import Registry
from acquirer.vault import CardVault
from keys.emv import CardFamily
from keys.hsm import HSM
from keys.tlv import encode_dict
from terminal.online import OnlineSession
from terminal.secure.keystore import SecureKeys
from terminal.secure.sealed import SealedStore
from tests.acquirer.cards import luhn_complete, personalise
from tests.acquirer.conftest import MEASUREMENT, MERCHANT, SITE, TERMINAL, at_site

ROOT = Path(__file__).resolve().parents[2]
BALANCE = 10_000_000
SALES = 160


def _prepare(state: Path):
    hsm = HSM.open(state / "hsm.db", state / "lmk")
    reg = Registry(state / "registry.db")
    reg.add_merchant(MERCHANT, "Corner shop", latitude=SITE[0], longitude=SITE[1])
    reg.allow_measurement(MEASUREMENT, "test build")
    code = reg.add_terminal(TERMINAL, MERCHANT)
    issuer = IssuerSimulator(hsm, state / "issuer.db", durable=False)
    cards = [personalise(hsm, issuer, CardFamily.PBOC_SM4, pan=luhn_complete(f"62149886602{k:07d}"),
                         balance=BALANCE) for k in range(SALES // 4)]  # four taps per card: under the velocity rule
    for store in (issuer, reg, hsm):
        store.close()
    return code, cards


def _serve(state: Path) -> tuple[subprocess.Popen, int]:
    host = subprocess.Popen([sys.executable, "-m", "acquirer.cli", "--state", str(state), "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    for line in host.stdout:
        if "listening on" in line:
            return host, int(line.split(":")[1].split(",")[0].split()[0])
    raise RuntimeError("the host did not start")


def test_every_answered_sale_survives_a_sigkill_with_its_vault_issuer_and_fence_writes(tmp_path):
    state = tmp_path / "host"
    state.mkdir()
    code, cards = _prepare(state)
    host, port = _serve(state)
    try:
        keys = SecureKeys(SealedStore(tmp_path / "tee"))
        session = OnlineSession("127.0.0.1", port, TERMINAL, MERCHANT, keys, tmp_path / "journal.db", timeout=10,
                                locate=at_site(keys))
        session.activate(code)
        session.download_keys()
        session.sign_on(MEASUREMENT)
        locate = at_site(keys)
        frames, amounts = [], {}
        for n in range(SALES):
            card, amount, stan = cards[n // 4], 100 + n, session.next_stan()
            amounts[stan] = amount
            fields = {"t": "0200", "3": "000000", "4": f"{amount:012d}", "11": stan, "22": "071", "23": "001",
                      "25": "00", "35": keys.seal(f"{card.pan}D2712201{'0' * 8}".encode()).hex().upper(),
                      "41": TERMINAL, "42": MERCHANT, "49": "156",
                      "55": encode_dict(card.field55(amount)).hex().upper(),
                      "60": Field60(TxnType.SALE.value, session.batch).encode(),
                      "59": private_fields({PrivateTag.LOCATION: locate()})}
            frames.append(Frame(encode(fields, keys.mac), 0, 1).encode())
        batch = session.batch
        session.close()
        approved: list[str] = []  # every approval the terminal got, read until the connection ends
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            def receive():
                try:
                    while (frame := read_frame_blocking(sock)) is not None:
                        doc = decode(frame.message)
                        if doc["39"] == "00":
                            approved.append(doc["11"])
                except OSError:
                    pass
            reader = threading.Thread(target=receive)
            reader.start()
            for f in frames:
                sock.sendall(f)
            while len(approved) < SALES // 3:  # then kill, at whatever point the host is in a group
                time.sleep(0.001)
            host.send_signal(signal.SIGKILL)
            reader.join(10)
        host.wait(10)
        assert host.returncode == -signal.SIGKILL
    finally:
        if host.poll() is None:
            host.kill()
            host.wait(10)

    hsm = HSM.open(state / "hsm.db", state / "lmk")
    ledger, vault = SQLiteLedger(state / "ledger.db"), CardVault(state / "vault.db", hsm)
    issuer, fences = IssuerSimulator(hsm, state / "issuer.db", durable=False), FenceStore(state / "fence.db")
    try:
        in_ledger = {t.stan: t for t in ledger.transactions(TERMINAL, batch)}
        for stan in approved:  # everything the terminal was told
            assert in_ledger[stan].status is Status.APPROVED and in_ledger[stan].amount == amounts[stan]
        decided = dict(issuer._store._db.execute(
            "SELECT stan, amount FROM decisions WHERE operation='sale' AND code='00'").fetchall())
        for stan, txn in in_ledger.items():  # everything the ledger holds, the companions hold too
            assert vault.card(txn_id_for(TERMINAL, batch, stan)) is not None
            assert decided.get(stan) == txn.amount
        charged = sum(BALANCE - issuer.account(c.pan).balance for c in cards)
        assert charged == sum(decided.values()) >= sum(t.amount for t in in_ledger.values())
        assert fences.last_fix(TERMINAL).counter >= len(in_ledger)
    finally:
        for store in (fences, issuer, vault, ledger, hsm):
            store.close()
