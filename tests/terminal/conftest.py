"""Fixtures for the kernel tests: the private pcscd, the vpcd reader and the simulated cards
of tests/hardware, shared rather than copied.

libpcsclite binds a process to one pcscd socket at its first call, so this process can
use one private pcscd only. tests/hardware's session fixture would start a second one
if both directories run in one process (one pytest worker), and that fails. Both
fixtures therefore go through `shared_pcscd_session` here: the first to ask starts the
daemon, the other gets the same one, and it stops when the process exits.

pcscd runs with --auto-exit: 60 s without any client and it quits, and every later
PC/SC call of this process then blocks on a socket nobody serves. A worker that runs
the hardware tests, then a minute of other tests, then these would hang. So the shared
daemon keeps one PC/SC context open for as long as it lives.
"""
from __future__ import annotations

import atexit
import tomllib

import pytest

import tests.hardware.conftest as hardware_conftest
from hardware.emvcard import load_card
from hardware.emvcard.ca import CertificateAuthority
from hardware.pcscd import PrivatePcscd
from hardware.reader import PcscContext
from terminal.kernel import KernelConfig
from terminal.kernel.config import DEFAULT_CONFIG_PATH
from tests.hardware.conftest import TAP_TIMEOUT_S, insert_card, reader  # noqa: F401 (fixtures)
from tests.hardware.emv_fixtures import issuer  # noqa: F401 (fixture)

_daemon: list[PrivatePcscd] = []


def shared_pcscd_session(**options):
    if not _daemon:
        daemon = PrivatePcscd(**options).start()
        atexit.register(daemon.stop)
        keepalive = PcscContext()
        atexit.register(keepalive.close)  # atexit runs last-in first: closed before the stop
        _daemon.append(daemon)
    yield _daemon[0]


# tests/hardware's fixture looks this name up when it runs: it gets the shared daemon too.
hardware_conftest.private_pcscd_session = shared_pcscd_session


@pytest.fixture(scope="session")
def private_pcscd():
    yield from shared_pcscd_session()


def default_doc() -> dict:
    """The shipped configuration as a dict, for tests that change one value."""
    return tomllib.loads(DEFAULT_CONFIG_PATH.read_text())


@pytest.fixture
def make_config(issuer):  # noqa: F811 (the imported fixture)
    """make_config(**changes) -> KernelConfig with the test CA's keys.

    changes: "relay.max_apdu_ms"=15, "PBOC_SM4.floor_limit"=20000, "terminal.x"=... ."""
    state, _ = issuer
    CertificateAuthority.load_or_create(state)  # ca_keys.toml exists before the first card is made

    def make(changes: dict | None = None, ca_keys_path=None) -> KernelConfig:
        doc = default_doc()
        for dotted, value in (changes or {}).items():
            section, key = dotted.split(".")
            table = doc["family"][section] if section in doc["family"] else doc[section]
            table[key] = value
        return KernelConfig.from_dict(doc, source="test", ca_keys_path=ca_keys_path or state / "ca_keys.toml")

    return make


@pytest.fixture
def tap(issuer, reader, insert_card):  # noqa: F811 (the imported fixtures)
    """tap(profile or card) -> (CardSession, card): the card on the reader, a session to it."""
    sessions = []

    def tap_card(profile: str, card=None):
        state, hsm = issuer
        card = card or load_card(profile, state, hsm)
        card.vcard = insert_card(card)
        session = reader.wait_for_card(TAP_TIMEOUT_S)
        sessions.append(session)
        return session, card

    yield tap_card
    for session in sessions:
        session.close()
