"""The host's TCP server: many terminals, several requests in flight per connection.

Each connection reads frames with a maximum length and a read timeout (a slow-loris
peer is cut off), hands every frame to the pipeline as its own task, and writes
responses as they complete (one transport write per response keeps frames whole).
Shutdown stops accepting, lets in-flight transactions finish and reach the ledger,
then closes connections.

A connection is an `asyncio.Protocol`, not a stream reader and writer: frames are cut
from the bytes as they arrive, and one timer per connection stands for both limits
(`idle_timeout` between frames, `read_timeout` from a frame's first byte to its last).
The streams cost about twice as much CPU per request, on the event loop that caps the
host (`bench/host_steps.py`, "TCP server" row).
"""
from __future__ import annotations

import asyncio
import logging
import struct
from typing import Awaitable, Callable

from acquirer.protocol import MAX_FRAME, Frame, FrameError

log = logging.getLogger("acquirer.server")

Handler = Callable[[Frame, str], Awaitable[Frame | None]]
_LEN = struct.Struct(">H")


class HostServer:
    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0, read_timeout: float = 30.0,
                 idle_timeout: float = 300.0, max_frame: int = MAX_FRAME, max_in_flight: int = 64):
        self._handler = handler
        self._host, self._port = host, port
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.max_frame = max_frame
        self.max_in_flight = max_in_flight
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[_Connection] = set()
        self._in_flight: set[asyncio.Task] = set()
        self._closing = False
        self.stats = {"connections": 0, "frames": 0, "frame_errors": 0, "timeouts": 0}

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> "HostServer":
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), self._host, self._port)
        log.info("host listening on %s:%d", self._host, self.port)
        return self

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting; finish in-flight transactions; close connections."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.stop_reading()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=grace)
        for conn in list(self._connections):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()


class _Connection(asyncio.Protocol):
    """One terminal's connection: frames in, one task each, responses out as they finish."""

    def __init__(self, server: HostServer):
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.buffer = bytearray()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0  # when the timer fires (loop time)
        self.deadline = 0.0  # when the connection times out, unless data comes (loop time)
        self.in_flight = 0
        self.paused = False  # reading paused: too many requests in flight, or a full write buffer
        self.writable = True
        self.finishing = False  # no more requests: close once the ones in flight are answered
        self.closed = False

    # --- the connection -------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = "%s:%s" % peer[:2] if peer else "?"
        self.server.stats["connections"] += 1
        self.server._connections.add(self)
        if self.server._closing:
            self.close()
            return
        self._arm(self.server.idle_timeout)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._disarm()
        self.server._connections.discard(self)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._disarm()
            self.transport.close()

    def stop_reading(self) -> None:
        """Pause reading (and its timer): for good when finishing or shutting down, else
        until `_resume` (too many requests in flight, or answers the peer does not read)."""
        if not self.paused and not self.closed and not self.transport.is_closing():
            self.paused = True
            self._disarm()
            self.transport.pause_reading()

    def _finish(self) -> None:
        """Read no more; answer what is in flight, then close (a timeout, a bad frame, EOF)."""
        self.finishing = True
        self.stop_reading()
        if self.in_flight == 0:
            self.close()

    # --- timers: idle between frames, a deadline inside one ------------------------------
    # Every frame moves the deadline, but a timer is not cancelled and made again each time
    # (a few microseconds per request on the event loop): the one timer stays while the
    # deadline only moves later, and when it fires early it waits for the rest.
    def _arm(self, seconds: float) -> None:
        deadline = self.loop.time() + seconds
        self.deadline = deadline
        if self.timer is not None and self.timer_at > deadline:  # the deadline moved earlier
            self.timer.cancel()
            self.timer = None
        if self.timer is None:
            self.timer_at = deadline
            self.timer = self.loop.call_at(deadline, self._timer_fired)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timer_fired(self) -> None:
        self.timer = None
        if self.loop.time() < self.deadline:  # data came meanwhile: wait for what remains
            self.timer_at = self.deadline
            self.timer = self.loop.call_at(self.deadline, self._timer_fired)
            return
        self.server.stats["timeouts"] += 1
        log.info("closing %s: read timeout", self.peer)
        self._finish()

    # --- reading ------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.closed or self.finishing or self.server._closing:
            return
        started = bool(self.buffer)
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 2:
            (length,) = _LEN.unpack_from(buffer)
            if length > self.server.max_frame:
                return self._frame_error(f"declared frame length {length} exceeds the "
                                         f"{self.server.max_frame}-byte maximum")
            if len(buffer) < 2 + length:
                break
            body = bytes(buffer[2:2 + length])
            del buffer[:2 + length]
            started = False
            try:
                frame = Frame.decode_body(body)
            except FrameError as exc:
                return self._frame_error(str(exc))
            self._dispatch(frame)
        if buffer and not started:  # a frame began in this read: it must be finished in read_timeout
            self._arm(self.server.read_timeout)
        elif not buffer and not self.paused:
            self._arm(self.server.idle_timeout)

    def eof_received(self) -> bool:
        if self.buffer:
            self.server.stats["frame_errors"] += 1
            log.info("closing %s: connection closed after %d bytes of a frame", self.peer, len(self.buffer))
        self._finish()
        return True  # keep the write side open for the answers still coming; _finish closes it

    def _frame_error(self, reason: str) -> None:
        self.server.stats["frame_errors"] += 1
        log.info("closing %s: %s", self.peer, reason)
        self.buffer.clear()
        self._finish()

    def _dispatch(self, frame: Frame) -> None:
        server = self.server
        server.stats["frames"] += 1
        self.in_flight += 1
        task = self.loop.create_task(self._one(frame))
        server._in_flight.add(task)
        task.add_done_callback(server._in_flight.discard)
        if self.in_flight >= server.max_in_flight:
            self.stop_reading()

    def _resume(self) -> None:
        if self.paused and not self.closed and not self.finishing and not self.server._closing and self.writable \
                and self.in_flight < self.server.max_in_flight:
            self.paused = False
            self.transport.resume_reading()
            self._arm(self.server.read_timeout if self.buffer else self.server.idle_timeout)

    # --- answering ------------------------------------------------------------------------
    async def _one(self, frame: Frame) -> None:
        try:
            reply = await self.server._handler(frame, self.peer)
            if reply is None:  # the peer does not speak our protocol
                self.server.stats["frame_errors"] += 1
                self.close()
            elif not self.closed and not self.transport.is_closing():
                self.transport.write(reply.encode())
        except (ConnectionError, OSError):
            pass
        except Exception:  # one bad transaction must not take the connection or the host down
            log.exception("unhandled error in the pipeline for %s", self.peer)
        finally:
            self.in_flight -= 1
            if self.finishing and self.in_flight == 0:
                self.close()
            else:
                self._resume()

    def pause_writing(self) -> None:  # the peer does not read its answers: stop taking requests
        self.writable = False
        self.stop_reading()

    def resume_writing(self) -> None:
        self.writable = True
        self._resume()
