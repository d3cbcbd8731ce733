"""`TeeClient`: the GlobalPlatform-style client API of the TEE, for the normal world.

    client = TeeClient(supervisor.channel)
    client.open_session(supervisor.credentials)
    status = client.invoke(Command.STATUS)
    tag = client.invoke(Command.MAC, MacInput(data)).tag
    client.close_session()

`invoke` checks the parameter type against the command before anything is sent and
decodes the result into the command's result dataclass; any failure is a `TeeError`
with a typed `ErrorCode`. One command runs at a time; `request_cancellation` may be
called from another thread (the UI's cancel button during a tap wait or PIN entry).
"""
from __future__ import annotations

import itertools
import socket
import threading
from typing import Callable

from . import api
from .api import Command, Credentials, ErrorCode, TeeError
from .wire import WireError, decode, recv_raw_frame, send_frame


class TeeClient:
    def __init__(self, channel: Callable[[], socket.socket] | socket.socket,
                 observer: Callable[[bytes], None] | None = None):
        """`channel` is a socket or a callable giving the current one (the supervisor's
        `channel`, which survives restarts). `observer` sees every raw frame the TEE
        returns: the boundary test reads them all."""
        self._channel = channel if callable(channel) else (lambda: channel)
        self._observer = observer
        self._sock: socket.socket | None = None
        self._session = 0
        self._ids = itertools.count(1)
        self._call_lock = threading.Lock()  # one command in flight
        self._send_lock = threading.Lock()  # a cancel may be sent while a command waits

    @property
    def session_open(self) -> bool:
        return self._session != 0

    @property
    def session_id(self) -> int:
        """The TEE's name for the open session (0: none); requests carry it."""
        return self._session

    def _socket(self) -> socket.socket:
        if self._sock is None:
            self._sock = self._channel()
        return self._sock

    def _lost(self, why: str) -> TeeError:
        """The TEE went away: this session is over; the next open_session finds the new one."""
        self._sock = None
        self._session = 0
        return TeeError(ErrorCode.TARGET_DEAD, why)

    def _call(self, request: dict) -> dict:
        with self._call_lock:
            rid = next(self._ids)
            request["id"] = rid
            try:
                sock = self._socket()
                with self._send_lock:
                    send_frame(sock, request)
                body = recv_raw_frame(sock)
            except (OSError, WireError) as exc:
                raise self._lost(f"channel to the TEE failed: {exc}") from None
            if body is None:
                raise self._lost("the TEE closed the channel (it died or was stopped)")
            if self._observer is not None:
                self._observer(body)
            try:
                reply = decode(body)
            except WireError as exc:
                raise TeeError(ErrorCode.COMMUNICATION, f"unreadable answer from the TEE: {exc}") from None
            if not isinstance(reply, dict) or reply.get("id") != rid or not isinstance(reply.get("code"), int):
                raise TeeError(ErrorCode.COMMUNICATION, "answer from the TEE does not match the request")
            try:
                code = ErrorCode(reply["code"])
            except ValueError:
                code = ErrorCode.GENERIC
            if code is not ErrorCode.SUCCESS:
                raise TeeError(code, str(reply.get("detail", "")))
            return reply

    # --- the client API ------------------------------------------------------------------
    def open_session(self, credentials: Credentials) -> None:
        reply = self._call({"op": "open", "login": int(credentials.login), "token": credentials.token})
        result = reply.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("session"), int):
            raise TeeError(ErrorCode.COMMUNICATION, "the TEE opened no session")
        self._session = result["session"]

    def invoke(self, command: Command, params=None):
        """Run `command` in the TEE; returns its result dataclass or raises TeeError."""
        param_type, result_type = api.SIGNATURES[command]
        params = api.Empty() if params is None else params
        if type(params) is not param_type:
            raise TeeError(ErrorCode.BAD_PARAMETERS,
                           f"{command.name} takes {param_type.__name__}, not {type(params).__name__}")
        reply = self._call({"op": "invoke", "session": self._session, "command": int(command),
                            "params": api.to_wire(params)})
        return api.from_wire(result_type, reply.get("result"))

    def request_cancellation(self) -> None:
        """Ask the running command (a tap wait) to stop; it then fails with CANCEL."""
        sock = self._sock
        if sock is None or not self._session:
            return
        try:
            with self._send_lock:
                send_frame(sock, {"op": "cancel", "id": 0, "session": self._session})
        except OSError:
            pass  # the TEE is gone: nothing left to cancel

    def close_session(self) -> None:
        if not self._session:
            return
        try:
            self._call({"op": "close", "session": self._session})
        except TeeError as exc:
            if exc.code is not ErrorCode.TARGET_DEAD:
                raise
        finally:
            self._session = 0
