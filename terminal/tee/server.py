"""The TEE process: `python -m terminal.tee.server --fd N --state DIR [--reader NAME]
[--kernel-config PATH] [--ca-keys PATH]`, started by `TeeSupervisor`, never by hand.

Who it serves (docs/tee.md, "Who may talk to the TEE"):
1. The only channel is one end of a socketpair the supervisor made and handed over at
   spawn (fd N). There is no listening socket anyone else could connect to.
2. SO_PEERCRED on that channel must name our parent process and our uid: a channel
   made by anyone but the supervisor that spawned us is refused before any command.
3. A session opens only with LOGIN_APPLICATION and the 32-byte token the supervisor
   wrote to our stdin at spawn; every command names that session.

Requests and responses are frames of `wire` maps:
    {"op": "open", "id", "login", "token"}         -> {"id", "code", "detail", "result": {"session"}}
    {"op": "invoke", "id", "session", "command", "params"} -> {"id", "code", "detail", "result"}
    {"op": "close", "id", "session"}               -> {"id", "code", "detail", "result": None}
    {"op": "cancel", "id", "session"}              (no answer: the running command ends with CANCEL)
Commands run one at a time in a worker thread, so a cancel can reach a TRANSACT that
waits for a tap; a second invoke meanwhile is answered BUSY.
"""
from __future__ import annotations

import argparse
import ctypes
import hmac
import os
import re
import secrets
import socket
import struct
import sys
import threading
import traceback

from . import api
from .api import Command, ErrorCode, LoginMethod, TeeError
from .trusted_app import TrustedApp
from .wire import WireError, decode, recv_raw_frame, send_frame

TOKEN_LEN = 32
PR_SET_DUMPABLE = 4
_LONG_DIGITS = re.compile(r"\d{12,}")


def scrub(text: str) -> str:
    """Error details cross the boundary: no run of digits long enough to be a PAN."""
    return _LONG_DIGITS.sub("<digits>", text)[:200]


def peer_is_parent(sock: socket.socket) -> bool:
    pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return pid == os.getppid() and uid == os.getuid()


def harden() -> None:
    """Not dumpable: no core files with keys in them, and processes of the same uid
    cannot ptrace us or read /proc/<pid>/mem (root still can: see docs/tee.md)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _field(msg: dict, name: str, kind: type):
    value = msg.get(name)
    if type(value) is not kind:
        raise TeeError(ErrorCode.BAD_FORMAT, f"request field {name!r} must be {kind.__name__}")
    return value


class TeeServer:
    def __init__(self, sock: socket.socket, app: TrustedApp, token: bytes):
        self.sock = sock
        self.app = app
        self._token = token
        self._session: int | None = None
        self._send_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._busy = threading.Lock()  # held from accepting an invoke until just before its answer
        self._cancel = threading.Event()

    def _reply(self, rid: int, code: ErrorCode = ErrorCode.SUCCESS, detail: str = "", result=None) -> None:
        with self._send_lock:
            send_frame(self.sock, {"id": rid, "code": int(code), "detail": scrub(detail), "result": result})

    def serve(self) -> None:
        self._reply(0, result={"pid": os.getpid(), "measurement": self.app.measurement})  # ready
        try:
            while True:
                body = recv_raw_frame(self.sock)
                if body is None:
                    break  # the supervisor closed the channel: we are done
                self._dispatch(body)
        except (WireError, OSError):
            pass  # a broken frame desynchronises the stream: end it rather than guess
        finally:
            self._cancel.set()
            if self._worker is not None:
                self._worker.join()
            self.app.end_session()

    def _dispatch(self, body: bytes) -> None:
        rid = 0
        try:
            msg = decode(body)
            if not isinstance(msg, dict):
                raise TeeError(ErrorCode.BAD_FORMAT, "a request is a map")
            rid = _field(msg, "id", int)
            op = _field(msg, "op", str)
            if op == "open":
                self._reply(rid, result={"session": self._open(msg)})
            elif op == "cancel":
                if self._session is not None and msg.get("session") == self._session:
                    self._cancel.set()
            elif op == "close":
                self._check_session(msg)
                self._end()
                self._reply(rid)
            elif op == "invoke":
                self._invoke(rid, msg)
            else:
                raise TeeError(ErrorCode.BAD_FORMAT, f"unknown operation {op!r}")
        except WireError as exc:
            self._reply(rid, ErrorCode.BAD_FORMAT, str(exc))
        except TeeError as exc:
            self._reply(rid, exc.code, exc.detail)

    def _open(self, msg: dict) -> int:
        login = _field(msg, "login", int)
        token = _field(msg, "token", bytes)
        if login != LoginMethod.APPLICATION or not hmac.compare_digest(token, self._token):
            raise TeeError(ErrorCode.ACCESS_DENIED, "wrong credentials")
        if self._session is not None:
            raise TeeError(ErrorCode.ACCESS_CONFLICT, "a session is already open")
        self._session = secrets.randbelow(2**31 - 1) + 1
        return self._session

    def _check_session(self, msg: dict) -> None:
        if self._session is None or msg.get("session") != self._session:
            raise TeeError(ErrorCode.ACCESS_DENIED, "no open session")

    def _end(self) -> None:
        """Close the session: stop the running command, forget card and PIN."""
        self._cancel.set()
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        self._session = None
        self.app.end_session()

    def _invoke(self, rid: int, msg: dict) -> None:
        self._check_session(msg)
        try:
            command = Command(_field(msg, "command", int))
        except ValueError:
            raise TeeError(ErrorCode.NOT_SUPPORTED, f"unknown command {msg.get('command')}") from None
        params = api.from_wire(api.SIGNATURES[command][0], msg.get("params"))
        if not self._busy.acquire(blocking=False):
            raise TeeError(ErrorCode.BUSY, f"{command.name} refused: another command is running")
        if self._worker is not None:
            self._worker.join()  # it has released _busy and is only finishing its send
        self._cancel.clear()
        self._worker = threading.Thread(target=self._run, args=(rid, command, params), name=f"tee:{command.name}",
                                        daemon=True)
        self._worker.start()

    def _run(self, rid: int, command: Command, params) -> None:
        try:
            result = self.app.handle(command, params, self._cancel)
            if not isinstance(result, api.SIGNATURES[command][1]):
                raise TypeError(f"{command.name} returned a {type(result).__name__}")
            answer = (ErrorCode.SUCCESS, "", api.to_wire(result))
        except TeeError as exc:
            answer = (exc.code, exc.detail, None)
        except Exception as exc:  # noqa: BLE001 - the boundary answers, whatever broke inside
            where = traceback.extract_tb(exc.__traceback__)[-1]
            print(f"tee: {command.name} failed: {type(exc).__name__} at {where.filename}:{where.lineno}",
                  file=sys.stderr)  # the type and place only: a message might carry data
            answer = (ErrorCode.GENERIC, f"internal error ({type(exc).__name__})", None)
        self._busy.release()  # before the answer: the client may send its next command at once
        try:
            self._reply(rid, *answer)
        except OSError:
            pass  # the supervisor hung up: serve() is ending


def read_token(stream) -> bytes:
    token = stream.read(TOKEN_LEN)
    if len(token) != TOKEN_LEN:
        raise SystemExit("tee: no session token on stdin")
    return token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="terminal.tee.server",
                                     description="the TEE process (spawned by TeeSupervisor)")
    parser.add_argument("--fd", type=int, required=True, help="our end of the supervisor's socketpair")
    parser.add_argument("--state", required=True, help="sealed storage directory")
    parser.add_argument("--reader", default=None, help="PC/SC reader for card transactions")
    parser.add_argument("--kernel-config", default=None, help="kernel configuration file (measured); default: shipped")
    parser.add_argument("--ca-keys", default=None, help="payment system CA public keys (ca_keys.toml) for ODA")
    parser.add_argument("--location", default=None, help="location source the TEE signs fixes from "
                        "(hardware/location/spec.py: fixed:LAT,LON | nmea:PORT | gpsd | file:PATH)")
    args = parser.parse_args(argv)
    harden()
    token = read_token(sys.stdin.buffer)
    sys.stdin.close()
    sock = socket.socket(fileno=args.fd)
    if sock.family != socket.AF_UNIX or not peer_is_parent(sock):
        print("tee: the channel was not made by the process that spawned us: refusing", file=sys.stderr)
        sock.close()
        return 3
    app = TrustedApp(args.state, args.reader, args.kernel_config, args.ca_keys, args.location)
    TeeServer(sock, app, token).serve()
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
