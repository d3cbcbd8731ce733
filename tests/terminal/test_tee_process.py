"""The TEE as a process: who it serves, how it answers bad requests, crash and restart."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from terminal.tee import Command, Credentials, ErrorCode, LoginMethod, TeeClient, TeeError, api
from terminal.tee.supervisor import TeeSupervisor
from terminal.tee.wire import recv_frame, send_frame

from .tee_fixtures import *  # noqa: F401,F403
from .tee_fixtures import kill_tee


def raw(sock: socket.socket, request: dict) -> dict:
    send_frame(sock, request)
    return recv_frame(sock)


def test_a_call_without_an_open_session_is_refused(tee):
    client = TeeClient(tee.channel)
    with pytest.raises(TeeError) as info:
        client.invoke(Command.STATUS)
    assert info.value.code is ErrorCode.ACCESS_DENIED
    assert "no open session" in info.value.detail
    # The same from a hand-made frame naming a session that was never opened.
    reply = raw(tee.channel(), {"op": "invoke", "id": 7, "session": 12345, "command": int(Command.MAC),
                                "params": {"data": b"x"}})
    assert (reply["id"], reply["code"], reply["result"]) == (7, ErrorCode.ACCESS_DENIED, None)


def test_only_the_spawn_token_opens_a_session(tee):
    client = TeeClient(tee.channel)
    good = tee.credentials
    for creds in (Credentials(LoginMethod.PUBLIC, good.token), Credentials(LoginMethod.APPLICATION, os.urandom(32)),
                  Credentials(LoginMethod.APPLICATION, b"")):
        with pytest.raises(TeeError) as info:
            client.open_session(creds)
        assert info.value.code is ErrorCode.ACCESS_DENIED
    client.open_session(good)
    assert client.invoke(Command.STATUS).device_id.startswith("DEV-")
    with pytest.raises(TeeError) as info:
        TeeClient(tee.channel).open_session(good)
    assert info.value.code is ErrorCode.ACCESS_CONFLICT
    client.close_session()
    with pytest.raises(TeeError) as info:
        client.invoke(Command.STATUS)
    assert info.value.code is ErrorCode.ACCESS_DENIED


def test_malformed_requests_get_typed_errors_and_the_channel_survives(tee):
    sock = tee.channel()
    token = tee.credentials.token
    opened = raw(sock, {"op": "open", "id": 1, "login": int(LoginMethod.APPLICATION), "token": token})
    session = opened["result"]["session"]
    base = {"op": "invoke", "session": session}
    cases = [
        ({**base, "id": 2, "command": 0x7777, "params": {}}, ErrorCode.NOT_SUPPORTED),
        ({**base, "id": 3, "command": int(Command.MAC), "params": {"data": "not bytes"}}, ErrorCode.BAD_PARAMETERS),
        ({**base, "id": 4, "command": int(Command.MAC), "params": {"data": b"x", "key": b"k"}},
         ErrorCode.BAD_PARAMETERS),
        ({**base, "id": 5, "command": "MAC", "params": {}}, ErrorCode.BAD_FORMAT),
        ({"op": "shutdown", "id": 6}, ErrorCode.BAD_FORMAT),
    ]
    for request, code in cases:
        reply = raw(sock, request)
        assert (reply["id"], ErrorCode(reply["code"])) == (request["id"], code), reply["detail"]
    sock.sendall(b"\x00\x00\x00\x02X!")  # a well-framed body in no known encoding
    assert ErrorCode(recv_frame(sock)["code"]) is ErrorCode.BAD_FORMAT
    reply = raw(sock, {**base, "id": 9, "command": int(Command.STATUS), "params": {}})
    assert reply["code"] == ErrorCode.SUCCESS and reply["result"]["state"] == "NOT_PROVISIONED"


def test_the_client_checks_parameter_types_before_sending(tee_keys):
    with pytest.raises(TeeError) as info:
        tee_keys.client.invoke(Command.MAC, api.Challenge(b"x"))
    assert info.value.code is ErrorCode.BAD_PARAMETERS


def test_a_crashed_tee_is_restarted_with_its_identity(tee, tee_keys):
    before = tee_keys.status()
    first_pid = kill_tee(tee)  # our own child, by its id
    with pytest.raises(TeeError) as info:
        tee_keys.client.invoke(Command.STATUS)
    assert info.value.code is ErrorCode.TARGET_DEAD
    tee_keys.client.open_session(tee.credentials)  # waits for the restart, new token
    after = tee_keys.client.invoke(Command.STATUS)
    assert (after.device_id, after.device_public_key) == (before.device_id, before.device_public_key)
    assert tee.pid != first_pid and tee.restarts == 1


def test_idempotent_commands_reopen_the_session_after_a_restart(tee, tee_keys):
    device = tee_keys.device_id
    kill_tee(tee)
    assert tee_keys.device_id == device  # STATUS is retried once on the new process


def test_stop_ends_the_process_and_later_calls_fail_cleanly(tmp_path):
    supervisor = TeeSupervisor(tmp_path / "tee").start()
    client = TeeClient(supervisor.channel)
    client.open_session(supervisor.credentials)
    pid = supervisor.pid
    supervisor.stop()
    assert not supervisor.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not a zombie
    with pytest.raises(TeeError) as info:
        client.invoke(Command.STATUS)
    assert info.value.code is ErrorCode.TARGET_DEAD


def test_a_channel_not_made_by_the_parent_is_refused(tmp_path):
    """The TEE checks SO_PEERCRED: here a shell sits between the channel's maker and it."""
    ours, theirs = socket.socketpair()
    cmd = f"{sys.executable} -m terminal.tee.server --fd {theirs.fileno()} --state {tmp_path / 'tee'}; exit $?"
    proc = subprocess.run(["/bin/sh", "-c", cmd], pass_fds=[theirs.fileno()], input=os.urandom(32),
                          capture_output=True, timeout=60)
    theirs.close()
    ours.close()
    assert proc.returncode == 3
    assert b"refusing" in proc.stderr


def test_the_session_token_is_in_no_argv_or_environment(tee):
    with open(f"/proc/{tee.pid}/cmdline", "rb") as f:
        cmdline = f.read()
    try:
        with open(f"/proc/{tee.pid}/environ", "rb") as f:
            environ = f.read()
    except PermissionError:
        environ = b""  # not dumpable: only root may read it, which is the point
    token = tee.credentials.token
    assert token not in cmdline and token not in environ
    assert token.hex().encode() not in cmdline + environ


def test_a_tee_that_keeps_dying_is_not_restarted_for_ever(tmp_path):
    supervisor = TeeSupervisor(tmp_path / "tee", max_restarts=0).start()
    try:
        pid = kill_tee(supervisor)
        with pytest.raises(TeeError) as info:
            supervisor.channel()
        assert info.value.code is ErrorCode.TARGET_DEAD and "not restarting" in info.value.detail
        assert supervisor.pid == pid and not supervisor.running
    finally:
        supervisor.stop()
