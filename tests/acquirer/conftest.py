"""A real host on loopback and a real terminal session, over real SQLite files; for QR and
face pay, the simulated wallets too, on their own event loop as other processes would be."""
from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from acquirer.service import ThreadedHost
from acquirer.wallets.threaded import ThreadedWallets
from keys.emv import CardFamily
from keys.tlv import encode_dict, mask_pan
from terminal.online import CardData, OnlineSession
from terminal.secure.keystore import SecureKeys
from terminal.secure.sealed import SealedStore
from tests.acquirer.cards import Card, personalise

TERMINAL, MERCHANT = "T0000001", "898440358120001"
SITE = (31.23, 121.47)  # the merchant's registered site: the lanes' terminals stand there
MEASUREMENT = bytes(range(32))  # stands for the SM3 of the installed terminal build
WALLET_PASSWORD = "pw-8731"  # the simulated wallet customers' password


class WalletsThread(ThreadedWallets):
    """The three simulated wallets for the host tests: notifies at once and no retries to
    wait for; the keys are made once per process."""

    def __init__(self, customers: dict[str, int]):
        super().__init__(customers, WALLET_PASSWORD, notify_schedule=(0, 0, 0), http_timeout=3.0, reuse_keys=True)

    def balance(self, wallet, account: str = "alice") -> int:
        return super().balance(wallet, account)


@dataclass
class Lane:
    """One checkout lane: the host, a provisioned terminal, and a test card."""

    host: ThreadedHost
    keys: SecureKeys
    session: OnlineSession
    card: Card
    state: object
    wallets: WalletsThread | None = None

    def card_data(self, amount: int, card: Card | None = None, keys: SecureKeys | None = None, **kw) -> CardData:
        card = card or self.card
        track2 = f"{card.pan}D2712201{'0' * 8}".encode()
        return CardData((keys or self.keys).seal(track2), mask_pan(card.pan), card.psn,
                        encode_dict(card.field55(amount)), **kw)

    def new_session(self, timeout: float = 5.0, port: int | None = None) -> OnlineSession:
        return OnlineSession("127.0.0.1", port or self.host.port, TERMINAL, MERCHANT, self.keys,
                             self.state / "journal.db", timeout=timeout, locate=at_site(self.keys))

    @property
    def ledger(self):
        return self.host.service.ledger

    @property
    def issuer(self):
        return self.host.service.issuer


def at_site(keys: SecureKeys, terminal_id: str = TERMINAL, source=None):
    """A session's `locate`: reports signed by `keys` over fixes from `source` (default: a
    surveyed fixed site at the merchant's address), as a terminal's secure world signs them."""
    from hardware.location import FixedSite
    from hardware.location.spec import fix_source_kind

    source = source or FixedSite(*SITE, 10.0)
    return lambda: keys.location_report(terminal_id, source.read(1.0), fix_source_kind(source))


def start_host(state, **kw) -> ThreadedHost:
    return ThreadedHost(state, read_timeout=2.0, idle_timeout=30.0, **kw).start()


def provision(host: ThreadedHost, terminal_id: str, directory) -> tuple[SecureKeys, OnlineSession]:
    """Register, activate, download keys and sign on a terminal of MERCHANT."""
    code = host.service.registry.add_terminal(terminal_id, MERCHANT)
    os.makedirs(directory, exist_ok=True)
    keys = SecureKeys(SealedStore(directory / "tee"))
    session = OnlineSession("127.0.0.1", host.port, terminal_id, MERCHANT, keys, directory / "journal.db", timeout=5.0,
                            locate=at_site(keys, terminal_id))
    session.activate(code)
    session.download_keys()
    session.sign_on(MEASUREMENT)
    return keys, session


@pytest.fixture
def lane(tmp_path):
    yield from _lane(tmp_path)


@pytest.fixture
def wallet_lane(tmp_path):
    """A lane whose host has the QR channel to the simulated wallets, and face pay.

    The host holds a merchant-QR wait 0.5 s (the session's timeout is 5 s); alice and bob
    have an account in every wallet."""
    from acquirer.channels.qr import PollPolicy

    wallets = WalletsThread({"alice": 100_000, "bob": 5_000}).start()
    try:
        wallets.services.save(tmp_path / "host" / "wallets" / "providers.json")
        yield from _lane(tmp_path, wallets, qr_wait=0.5,
                         qr_poll=PollPolicy(first=0.2, factor=1.5, max_interval=1.0, total=3.0))
    finally:
        wallets.stop()


def _lane(tmp_path, wallets: WalletsThread | None = None, **host_kw):
    host = start_host(tmp_path / "host", **host_kw)
    reg = host.service.registry
    reg.add_merchant(MERCHANT, "Corner shop", latitude=SITE[0], longitude=SITE[1])
    code = reg.add_terminal(TERMINAL, MERCHANT)
    reg.allow_measurement(MEASUREMENT, "test build")
    os.makedirs(tmp_path / "terminal", exist_ok=True)
    keys = SecureKeys(SealedStore(tmp_path / "terminal" / "tee"))
    session = OnlineSession("127.0.0.1", host.port, TERMINAL, MERCHANT, keys, tmp_path / "terminal" / "journal.db",
                            timeout=5.0, locate=at_site(keys))
    session.activate(code)
    session.download_keys()
    session.sign_on(MEASUREMENT)
    card = personalise(host.service.hsm, host.service.issuer, CardFamily.PBOC_SM4)
    lane = Lane(host, keys, session, card, tmp_path / "terminal", wallets)
    yield lane
    lane.session.close()
    if lane.host is not host:  # a test restarted the host: stop the one running now too
        lane.host.stop()
    host.stop()
