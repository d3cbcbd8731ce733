"""A real host on loopback and a real terminal session, over real SQLite files."""
from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from acquirer.service import ThreadedHost
from keys.emv import CardFamily
from keys.tlv import encode_dict, mask_pan
from terminal.online import CardData, OnlineSession
from terminal.secure.keystore import SecureKeys
from terminal.secure.sealed import SealedStore
from tests.acquirer.cards import Card, personalise

TERMINAL, MERCHANT = "T0000001", "898440358120001"
MEASUREMENT = bytes(range(32))  # stands for the SM3 of the installed terminal build


@dataclass
class Lane:
    """One checkout lane: the host, a provisioned terminal, and a test card."""

    host: ThreadedHost
    keys: SecureKeys
    session: OnlineSession
    card: Card
    state: object

    def card_data(self, amount: int, card: Card | None = None, keys: SecureKeys | None = None, **kw) -> CardData:
        card = card or self.card
        track2 = f"{card.pan}D2712201{'0' * 8}".encode()
        return CardData((keys or self.keys).seal(track2), mask_pan(card.pan), card.psn,
                        encode_dict(card.field55(amount)), **kw)

    def new_session(self, timeout: float = 5.0, port: int | None = None) -> OnlineSession:
        return OnlineSession("127.0.0.1", port or self.host.port, TERMINAL, MERCHANT, self.keys,
                             self.state / "journal.db", timeout=timeout)

    @property
    def ledger(self):
        return self.host.service.ledger

    @property
    def issuer(self):
        return self.host.service.issuer


def start_host(state) -> ThreadedHost:
    return ThreadedHost(state, read_timeout=2.0, idle_timeout=30.0).start()


def provision(host: ThreadedHost, terminal_id: str, directory) -> tuple[SecureKeys, OnlineSession]:
    """Register, activate, download keys and sign on a terminal of MERCHANT."""
    code = host.service.registry.add_terminal(terminal_id, MERCHANT)
    os.makedirs(directory, exist_ok=True)
    keys = SecureKeys(SealedStore(directory / "tee"))
    session = OnlineSession("127.0.0.1", host.port, terminal_id, MERCHANT, keys, directory / "journal.db", timeout=5.0)
    session.activate(code)
    session.download_keys()
    session.sign_on(MEASUREMENT)
    return keys, session


@pytest.fixture
def lane(tmp_path):
    host = start_host(tmp_path / "host")
    reg = host.service.registry
    reg.add_merchant(MERCHANT, "Corner shop", latitude=31.23, longitude=121.47)
    code = reg.add_terminal(TERMINAL, MERCHANT)
    reg.allow_measurement(MEASUREMENT, "test build")
    os.makedirs(tmp_path / "terminal", exist_ok=True)
    keys = SecureKeys(SealedStore(tmp_path / "terminal" / "tee"))
    session = OnlineSession("127.0.0.1", host.port, TERMINAL, MERCHANT, keys, tmp_path / "terminal" / "journal.db",
                            timeout=5.0)
    session.activate(code)
    session.download_keys()
    session.sign_on(MEASUREMENT)
    card = personalise(host.service.hsm, host.service.issuer, CardFamily.PBOC_SM4)
    lane = Lane(host, keys, session, card, tmp_path / "terminal")
    yield lane
    session.close()
    host.stop()
