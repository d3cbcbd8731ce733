"""The real app in a real terminal: `pos demo` in tmux sells with a tapped card, with a
wallet payment code and with the merchant QR paid in the wallet app, and each approval
is read from the captured screen; carried out of its fence, it refuses the next sale."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.pcsc, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]


def tmux(sock: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True, timeout=20).stdout


def wait_screen(sock: str, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux(sock, "capture-pane", "-p", "-t", "demo")
        if text in screen:
            return screen
        time.sleep(0.3)
    raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen}")


def sell(sock: str, amount: str, key: str, then: tuple[str, str] | None = None) -> str:
    """From the status screen: a sale of `amount`, the payment by `key` (and, when `then`
    names a screen text, one more key once it shows); returns the approved screen and
    goes back to the status screen."""
    tmux(sock, "send-keys", "-t", "demo", "s")
    wait_screen(sock, "amount in yuan", 10)
    tmux(sock, "send-keys", "-t", "demo", amount, "Enter")
    wait_screen(sock, "tap a card", 10)
    tmux(sock, "send-keys", "-t", "demo", key)
    if then is not None:
        wait_screen(sock, then[0], 30)
        tmux(sock, "send-keys", "-t", "demo", then[1])
    screen = wait_screen(sock, "APPROVED", 60)
    tmux(sock, "send-keys", "-t", "demo", "Enter")
    wait_screen(sock, "Secure world: READY", 10)
    return screen


def test_demo_sells_with_a_card_and_qr_both_ways_in_tmux(tmp_path):
    sock = f"softpos-{uuid.uuid4().hex[:8]}"
    command = (f"cd {shlex.quote(str(ROOT))} && {shlex.quote(sys.executable)} -m terminal.cli demo --fresh "
               f"--state {shlex.quote(str(tmp_path / 'demo'))}")
    tmux(sock, "new-session", "-d", "-s", "demo", "-x", "110", "-y", "34", command)
    try:
        wait_screen(sock, "Secure world: READY", 90)
        screen = sell(sock, "8.80", "5")  # the customer shows the WeChat Pay code to the scanner
        assert "AMOUNT  CNY 8.80" in screen and "PAID BY WeChat Pay code" in screen
        # the cashier shows the Alipay QR; the customer scans it in the wallet app and pays
        screen = sell(sock, "3", "a", then=("Waiting for the customer to pay with Alipay", "p"))
        assert "AMOUNT  CNY 3.00" in screen and "PAID BY Alipay merchant QR" in screen
        screen = sell(sock, "12.50", "1")  # the demo customer taps the UnionPay card
        assert "AMOUNT  CNY 12.50" in screen and "629999*********" in screen
        tmux(sock, "send-keys", "-t", "demo", "m")  # someone carries the terminal 4 km away
        wait_screen(sock, "carried 4 km away", 10)
        tmux(sock, "send-keys", "-t", "demo", "s")
        wait_screen(sock, "amount in yuan", 10)
        tmux(sock, "send-keys", "-t", "demo", "5", "Enter")
        screen = wait_screen(sock, "NOT APPROVED", 20)
        assert "Outside the location fence since" in screen and "4.0 km from the registered site" in screen
        tmux(sock, "send-keys", "-t", "demo", "Enter")
        wait_screen(sock, "Secure world: READY", 10)
        tmux(sock, "send-keys", "-t", "demo", "q")
        deadline = time.monotonic() + 30
        while "demo" in tmux(sock, "list-sessions") and time.monotonic() < deadline:
            time.sleep(0.3)
    finally:
        tmux(sock, "kill-server")
