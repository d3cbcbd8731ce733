"""The private pcscd launcher, and what a client sees when no pcscd runs."""
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hardware.card_apps import EchoApplication
from hardware.errors import PcscdLaunchError, VpcdUnreachable
from hardware.pcscd import (
    OWNER_FILE,
    PrivatePcscd,
    free_port_pair,
    remove_stale_work_dirs,
    vpcd_reader_conf,
)
from hardware.vcard import VirtualCard

from .conftest import run_pos, run_python

pytestmark = pytest.mark.pcsc  # needs pcscd and the vpcd virtual reader

CLIENT = (
    "from hardware.errors import HardwareError\n"
    "from hardware.reader import list_readers\n"
    "try:\n"
    "    list_readers()\n"
    "except HardwareError as exc:\n"
    "    print(type(exc).__name__)\n"
    "    print(exc)\n"
)


def test_the_fixture_pcscd_is_what_clients_of_this_process_use(private_pcscd):
    assert os.environ["PCSCLITE_CSOCK_NAME"] == private_pcscd.socket_path
    assert len(private_pcscd.socket_path) < 108
    assert private_pcscd.running
    conf = Path(private_pcscd.conf_dir, "vpcd").read_text()
    assert f"CHANNELID    {private_pcscd.vpcd_port}" in conf


def test_the_reader_conf_is_written_like_debians():
    assert vpcd_reader_conf(23000).splitlines() == [
        'FRIENDLYNAME "Virtual PCD"',
        "DEVICENAME   /dev/null:23000",
        "LIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so",
        "CHANNELID    23000",
    ]


@pytest.mark.parametrize("target", ["dead", "missing"])
def test_no_pcscd_is_pcscd_not_running_with_a_clear_message(dead_socket, tmp_path, target):
    path = dead_socket if target == "dead" else str(tmp_path / "nothing.comm")
    result = run_python(["-c", CLIENT], {"PCSCLITE_CSOCK_NAME": path})
    assert result.returncode == 0, result.stderr
    kind, message = result.stdout.splitlines()
    assert kind == "PcscdNotRunning"
    assert message.startswith("pcscd is not running")
    assert path in message and "systemctl start pcscd" in message
    assert "Traceback" not in result.stderr


def test_pos_reader_list_says_pcscd_is_not_running_without_a_traceback(dead_socket):
    result = run_pos(["reader", "list"], {"PCSCLITE_CSOCK_NAME": dead_socket})
    assert result.returncode == 1
    assert result.stderr.startswith("pos: pcscd is not running")
    assert "Traceback" not in result.stderr


def test_a_stopped_launcher_leaves_no_process_and_no_files():
    daemon = PrivatePcscd(set_env=False).start()
    pid, work_dir, socket_path = daemon.process.pid, daemon.work_dir, daemon.socket_path
    assert b"pcscd\0--foreground\0--auto-exit" in Path(f"/proc/{pid}/cmdline").read_bytes()
    daemon.stop()
    assert not Path(f"/proc/{pid}").exists()
    assert not Path(socket_path).exists() and not work_dir.exists()
    daemon.stop()  # idempotent


def test_pcscd_gets_its_pid_in_listen_pid(private_pcscd):
    environ = Path(f"/proc/{private_pcscd.process.pid}/environ").read_bytes().split(b"\0")
    assert f"LISTEN_PID={private_pcscd.process.pid}".encode() in environ
    assert b"LISTEN_FDS=1" in environ


def test_a_taken_port_is_a_launch_error_with_the_log():
    port = free_port_pair()
    blocker = socket.socket()
    blocker.bind(("0.0.0.0", port))
    blocker.listen()
    try:
        with pytest.raises(PcscdLaunchError, match="could not listen"):
            PrivatePcscd(set_env=False, port=port, start_timeout=2).start()
    finally:
        blocker.close()


DAEMON_DIES = (
    "from hardware.card_apps import Iso7816TestApplication\n"
    "from hardware.errors import HardwareError\n"
    "from hardware.pcscd import PrivatePcscd\n"
    "from hardware.reader import Reader\n"
    "from hardware.vcard import VirtualCard\n"
    "daemon = PrivatePcscd().start()\n"
    "print(daemon.socket_path)\n"
    "reader = Reader.open(0)\n"
    "card = VirtualCard(Iso7816TestApplication(), port=daemon.vpcd_port)\n"
    "card.insert()\n"
    "session = reader.wait_for_card(10)\n"
    "daemon.stop()\n"
    "for step in (lambda: session.transmit(bytes(4)), lambda: reader.wait_for_card(1)):\n"
    "    try:\n"
    "        step()\n"
    "    except HardwareError as exc:\n"
    "        print(type(exc).__name__, '|', exc)\n"
    "print('card gone', card.wait_gone(10))\n"
)


def test_pcscd_dying_under_an_open_reader_is_pcscd_not_running():
    result = run_python(["-c", DAEMON_DIES], {})
    assert result.returncode == 0, result.stderr
    socket_path, *outcomes, gone = result.stdout.splitlines()
    assert len(outcomes) == 2
    for line in outcomes:
        kind, message = line.split(" | ")
        assert kind == "PcscdNotRunning"
        # The socket this process was bound to, not whatever the environment says now.
        assert message.startswith(f"pcscd is not running (no answer on {socket_path})")
    assert gone == "card gone True"
    assert "Traceback" not in result.stderr


def test_leftovers_of_a_killed_launcher_are_removed(tmp_path):

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, live, foreign = tmp_path / "pcscd-stale", tmp_path / "pcscd-live", tmp_path / "pcscd-foreign"
    for path in (stale, live, foreign):
        path.mkdir()
    (stale / OWNER_FILE).write_text(f"{dead.pid}\n")
    (live / OWNER_FILE).write_text(f"{os.getpid()}\n")
    remove_stale_work_dirs(str(tmp_path))
    assert not stale.exists()
    assert live.exists() and foreign.exists()


def test_the_card_waits_for_vpcd_to_come_up():
    port = free_port_pair()
    card = VirtualCard(EchoApplication(), port=port)
    outcome: list[BaseException] = []

    def insert():
        try:
            card.insert(timeout=30)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    inserting = threading.Thread(target=insert)
    inserting.start()  # connection refused until the daemon below listens
    with PrivatePcscd(set_env=False, port=port):
        inserting.join(30)
        assert outcome == []
        assert card.inserted
        card.remove()
    assert card.wait_gone(10)


def test_no_vpcd_is_a_clear_error_after_the_timeout():
    port = free_port_pair()
    with pytest.raises(VpcdUnreachable, match=f"not listening on 127.0.0.1:{port}"):
        VirtualCard(EchoApplication(), port=port).insert(timeout=0.2)


LATE_START = (
    "from hardware.errors import HardwareError\n"
    "from hardware.pcscd import PrivatePcscd\n"
    "from hardware.reader import list_readers\n"
    "try:\n"
    "    list_readers()\n"
    "except HardwareError:\n"
    "    pass\n"
    "try:\n"
    "    PrivatePcscd().start()\n"
    "except HardwareError as exc:\n"
    "    print(type(exc).__name__, '|', exc)\n"
)


def test_a_private_pcscd_started_after_the_first_pcsc_call_is_refused(dead_socket):
    result = run_python(["-c", LATE_START], {"PCSCLITE_CSOCK_NAME": dead_socket})
    assert result.returncode == 0, result.stderr
    kind, message = result.stdout.strip().split(" | ")
    assert kind == "PcscdLaunchError"
    assert f"already talks to pcscd at {dead_socket}" in message
    assert "before the first PC/SC call" in message
