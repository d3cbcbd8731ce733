"""Fixtures for the TEE tests: a real TEE process under its supervisor, and a checkout
lane where that TEE is provisioned against a real host on loopback.

Import the fixtures into a test module with `from .tee_fixtures import *  # noqa`.
"""
from __future__ import annotations

import os
import select
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from acquirer.service import ThreadedHost
from hardware.emvcard import load_card
from terminal.online import OnlineSession
from terminal.tee import TeeSupervisor
from terminal.tee.secure_world import TeeKeys

TERMINAL, MERCHANT = "T0000009", "898440358120009"

__all__ = ["TERMINAL", "MERCHANT", "PIN", "SITE", "SITE_SPEC", "lane_location", "CardLane", "TeeLane", "card_lane", "tee", "tee_keys", "tee_lane",
           "start_tee", "provision", "kill_tee", "build_card_lane"]
PROFILE = "pboc-sm-debit"
SITE = (31.23, 121.47)  # the merchant's registered site
SITE_SPEC = f"fixed:{SITE[0]},{SITE[1]},10"  # the lanes' TEEs read a surveyed fixed site
PIN = "739512846093"  # 12 digits: long enough that finding it in a frame cannot be chance


def start_tee(state: Path, **kw) -> TeeSupervisor:
    return TeeSupervisor(state, **kw).start()


def kill_tee(supervisor: TeeSupervisor) -> int:
    """SIGKILL our TEE child and return once it has exited (its channel is closed by
    then): a pidfd turns readable at exit, so no sleeping and guessing."""
    pid = supervisor.pid
    pidfd = os.pidfd_open(pid)
    try:
        os.kill(pid, signal.SIGKILL)
        readable, _, _ = select.select([pidfd], [], [], 30)
        assert readable, "the TEE did not die"
    finally:
        os.close(pidfd)
    return pid


@pytest.fixture
def tee(tmp_path):
    """A running TEE on a fresh sealed store; stopped (and waited for) after the test."""
    supervisor = start_tee(tmp_path / "tee")
    yield supervisor
    supervisor.stop()
    assert not supervisor.running


@pytest.fixture
def tee_keys(tee):
    keys = TeeKeys(tee)
    yield keys
    keys.close()


@dataclass
class TeeLane:
    host: ThreadedHost
    tee: TeeSupervisor
    keys: TeeKeys
    session: OnlineSession
    state: Path

    @property
    def registry(self):
        return self.host.service.registry


def provision(host: ThreadedHost, keys: TeeKeys, state: Path, terminal_id: str = TERMINAL,
              code: str | None = None) -> OnlineSession:
    """Activate, download the TMK and sign on through the TEE (its own measurement allowed)."""
    registry = host.service.registry
    if code is None:
        code = registry.add_terminal(terminal_id, MERCHANT)
    registry.allow_measurement(keys.measurement(), "TEE under test")
    session = OnlineSession("127.0.0.1", host.port, terminal_id, MERCHANT, keys, state / "journal.db", timeout=5.0,
                            locate=lambda: keys.location_report(terminal_id))  # the TEE's own fixes
    session.activate(code)
    session.download_keys()
    session.sign_on()
    return session


@pytest.fixture
def tee_lane(tmp_path):
    host = ThreadedHost(tmp_path / "host", read_timeout=2.0, idle_timeout=30.0).start()
    host.service.registry.add_merchant(MERCHANT, "TEE corner shop", latitude=SITE[0], longitude=SITE[1])
    os.makedirs(tmp_path / "terminal", exist_ok=True)
    supervisor = start_tee(tmp_path / "terminal" / "tee", location=SITE_SPEC)
    keys = TeeKeys(supervisor)
    try:
        session = provision(host, keys, tmp_path / "terminal")
    except BaseException:
        supervisor.stop()
        host.stop()
        raise
    yield TeeLane(host, supervisor, keys, session, tmp_path / "terminal")
    session.close()
    keys.close()
    supervisor.stop()
    host.stop()


@dataclass
class CardLane(TeeLane):
    """A TEE lane whose TEE reads a simulated PBOC card on the private pcscd's reader."""

    card: object  # hardware.emvcard.EmvCard, personalised under the host's issuer keys
    frames: list  # every raw frame the TEE returned, from the first STATUS on
    insert: object

    @property
    def pan(self) -> str:
        return self.card.profile.pan

    def tap(self) -> None:
        """Put the card on the reader (it stays there for the rest of the test)."""
        if not getattr(self.card, "vcard", None):
            self.card.vcard = self.insert(self.card)


@pytest.fixture
def lane_location(tmp_path) -> str:
    """The location source of the card lane's TEE; a test module overrides this fixture
    to walk its terminal around (a `file:` simulated receiver)."""
    return SITE_SPEC


@pytest.fixture
def card_lane(tmp_path, private_pcscd, insert_card, lane_location):
    """Host + provisioned TEE + a personalised card (not yet on the reader: `tap()`).

    `private_pcscd` and `insert_card` come from tests/terminal/conftest.py (one shared
    pcscd per process); the TEE process reaches that pcscd through the environment."""
    yield from build_card_lane(tmp_path, private_pcscd, insert_card, lane_location)


def build_card_lane(tmp_path, private_pcscd, insert_card, lane_location, **host_kw):
    """The card lane; `host_kw` go to the host (wallet providers, QR wait, face liveness)."""
    host = ThreadedHost(tmp_path / "host", read_timeout=2.0, idle_timeout=30.0, **host_kw).start()
    supervisor = None
    try:
        host.service.registry.add_merchant(MERCHANT, "TEE corner shop", latitude=SITE[0], longitude=SITE[1])
        cards = tmp_path / "cards"
        card = load_card(PROFILE, cards, host.service.hsm)
        profile = card.profile
        host.service.issuer.open_account(profile.pan, profile=profile.name, family=profile.family,
                                         expiry=f"{profile.expiry[0] % 100:02d}{profile.expiry[1]:02d}",
                                         psn=profile.psn, balance=10_000_000, pin=PIN)
        supervisor = start_tee(tmp_path / "terminal" / "tee", reader=private_pcscd.reader_names[0],
                               ca_keys=cards / "ca_keys.toml", env=dict(os.environ, **private_pcscd.env),
                               location=lane_location)
        frames: list[bytes] = []
        keys = TeeKeys(supervisor, observer=frames.append)
        session = provision(host, keys, tmp_path / "terminal")
    except BaseException:
        if supervisor is not None:
            supervisor.stop()
        host.stop()
        raise
    yield CardLane(host, supervisor, keys, session, tmp_path / "terminal", card, frames, insert_card)
    session.close()
    keys.close()
    supervisor.stop()
    host.stop()
