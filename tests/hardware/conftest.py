"""Fixtures for tests through the real PC/SC stack: private pcscd + vpcd + virtual card."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hardware.card_apps import Iso7816TestApplication
from hardware.pcscd import private_pcscd_session
from hardware.reader import Reader
from hardware.vcard import VirtualCard

REPO = Path(__file__).resolve().parents[2]
TAP_TIMEOUT_S = 10.0  # generous: pcscd polls vpcd every 400 ms


@pytest.fixture(scope="session")
def private_pcscd():
    """One private pcscd per test process (each pytest-xdist worker has its own)."""
    yield from private_pcscd_session()


@pytest.fixture
def reader(private_pcscd):
    with Reader.open("Virtual PCD 00 00") as reader:
        yield reader


@pytest.fixture
def insert_card(private_pcscd, reader):
    """insert_card(app=None) -> VirtualCard on slot 0; the slot is empty again after the test."""
    cards: list[VirtualCard] = []

    def insert(app=None) -> VirtualCard:
        card = VirtualCard(app or Iso7816TestApplication(), port=private_pcscd.vpcd_port)
        card.insert(timeout=TAP_TIMEOUT_S)
        cards.append(card)
        return card

    yield insert
    for card in cards:
        card.remove()
    # The next test on this worker must find the slot empty.
    reader.wait_for_removal(TAP_TIMEOUT_S)


@pytest.fixture
def dead_socket(tmp_path_factory) -> str:
    """A Unix socket path nobody listens on (bound once, then closed)."""
    path = str(tmp_path_factory.mktemp("dead") / "pcscd.comm")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()
    return path


def run_python(code_or_args: list[str], env_overrides: dict[str, str], timeout: float = 30.0):
    """Run the venv's python in a fresh process (libpcsclite reads its socket env once)."""
    env = dict(os.environ)
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, *code_or_args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_pos(args: list[str], env_overrides: dict[str, str] | None = None, timeout: float = 30.0):
    return run_python(["-m", "terminal.cli", *args], env_overrides or {}, timeout)


# the EMV card tests' fixtures, found here by pytest; imported last, as emv_fixtures reads this module's constants
from .emv_fixtures import issuer, tap  # noqa: E402, F401
