"""`pos reader list`, `pos reader doctor` and `pos card insert/remove`, as a user runs them."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hardware.apdu import command
from hardware.card_apps import TEST_AID
from hardware.pcscd import free_port_pair

from .conftest import REPO, TAP_TIMEOUT_S, run_pos

pytestmark = pytest.mark.pcsc  # needs pcscd and the vpcd virtual reader


def test_reader_list_shows_index_name_and_card_state(private_pcscd):
    result = run_pos(["reader", "list"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "0  Virtual PCD 00 00  (no card)",
        "1  Virtual PCD 00 01  (no card)",
    ]


def test_doctor_is_happy_with_a_running_pcscd_and_a_card(private_pcscd, reader, insert_card):
    insert_card()
    reader.wait_for_card(TAP_TIMEOUT_S).close()
    result = run_pos(
        ["reader", "doctor", "--conf-dir", private_pcscd.conf_dir, "--reader", "00 00", "--require-card"]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert f"ok    daemon: pcscd answers on {private_pcscd.socket_path}" in lines
    assert any(line.startswith("ok    package pcscd: installed") for line in lines)
    assert any(line.startswith("ok    driver: vpcd configured") and str(private_pcscd.vpcd_port) in line
               for line in lines)
    assert any(line.startswith("ok    reader: using 'Virtual PCD 00 00'") for line in lines)
    assert "ok    card: a card is on 'Virtual PCD 00 00'" in lines
    assert lines[-1] == "all good"


def test_doctor_without_a_card_is_fine_unless_one_is_required(private_pcscd):
    args = ["reader", "doctor", "--conf-dir", private_pcscd.conf_dir]
    relaxed = run_pos(args)
    assert relaxed.returncode == 0, relaxed.stdout
    assert "--    card: no card on 'Virtual PCD 00 00'" in relaxed.stdout
    strict = run_pos([*args, "--require-card"])
    assert strict.returncode == 1
    assert "FAIL  card: no card on 'Virtual PCD 00 00'" in strict.stdout
    assert "fix: tap a card, or: pos card insert --profile iso7816-test" in strict.stdout


def test_doctor_says_pcscd_is_not_running_and_how_to_start_it(dead_socket, tmp_path):
    result = run_pos(["reader", "doctor"], {"PCSCLITE_CSOCK_NAME": dead_socket})
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"FAIL  daemon: pcscd is not running on {dead_socket}" in lines
    assert "      fix: sudo systemctl start pcscd.socket" in "\n".join(lines)
    assert "--    reader: skipped: needs a running pcscd" in lines
    assert lines[-1] == "1 problem(s) found"
    assert "Traceback" not in result.stderr


def test_doctor_reports_a_missing_vpcd_conf_and_an_unknown_reader(private_pcscd, tmp_path):
    result = run_pos(["reader", "doctor", "--conf-dir", str(tmp_path), "--reader", "Omnikey"])
    assert result.returncode == 1
    out = result.stdout
    assert f"FAIL  driver: no vpcd entry in {tmp_path}" in out
    assert "FAIL  reader: reader 'Omnikey' not found; readers present: 'Virtual PCD 00 00', 'Virtual PCD 00 01'" in out
    assert out.splitlines()[-1] == "2 problem(s) found"


def test_card_insert_as_a_daemon_then_remove(private_pcscd, reader, tmp_path):
    state = str(tmp_path / "state")
    port = str(private_pcscd.vpcd_port)
    inserted = run_pos(["card", "insert", "--profile", "iso7816-test", "--daemon", "--port", port,
                        "--state-dir", state])
    assert inserted.returncode == 0, inserted.stderr
    pidfile = Path(state, f"vcard-{port}.pid")
    try:
        with reader.wait_for_card(TAP_TIMEOUT_S) as session:
            data, sw = session.transmit(command(0x00, 0xA4, 0x04, 0x00, TEST_AID, le=0))
            assert sw == 0x9000 and TEST_AID in data
        again = run_pos(["card", "insert", "--daemon", "--port", port, "--state-dir", state])
        assert again.returncode == 1 and "already inserted" in again.stderr
    finally:
        removed = run_pos(["card", "remove", "--port", port, "--state-dir", state])
    assert removed.returncode == 0, removed.stderr
    assert not pidfile.exists()
    reader.wait_for_removal(TAP_TIMEOUT_S)
    nothing = run_pos(["card", "remove", "--port", port, "--state-dir", state])
    assert nothing.returncode == 1 and "no card inserted" in nothing.stderr


def test_card_insert_in_the_foreground_until_ctrl_c(private_pcscd, reader):
    process = subprocess.Popen(
        [sys.executable, "-m", "terminal.cli", "card", "insert", "--profile", "echo",
         "--port", str(private_pcscd.vpcd_port)],
        cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first_line = process.stdout.readline()
        assert first_line.startswith("card 'echo' inserted"), process.stderr.read()
        with reader.wait_for_card(TAP_TIMEOUT_S) as session:
            assert session.transmit(command(0x00, 0x01, 0, 0, b"hi", le=0)) == (b"hi", 0x9000)
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    reader.wait_for_removal(TAP_TIMEOUT_S)


def test_card_insert_fails_clearly_when_vpcd_is_not_there(tmp_path):
    result = run_pos(["card", "insert", "--daemon", "--port", str(free_port_pair()),
                      "--connect-timeout", "0.3", "--state-dir", str(tmp_path)])
    assert result.returncode == 1
    assert "vpcd is not listening" in result.stderr
    assert "Traceback" not in result.stderr


def test_card_help_lists_the_emv_profiles():
    result = run_pos(["card", "insert", "--help"])
    text = " ".join(result.stdout.split())
    assert "pboc-sm-debit" in text and "iso7816-test" in text and "docs/cards.md" in text
