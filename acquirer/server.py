"""The host's TCP server: many terminals, several requests in flight per connection.

Each connection reads frames with a maximum length and a read timeout (a slow-loris
peer is cut off), hands every frame to the pipeline as its own task, and writes
responses as they complete (a lock keeps frames whole). Shutdown stops accepting,
lets in-flight transactions finish and reach the ledger, then closes connections.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from acquirer.protocol import MAX_FRAME, Frame, FrameError, read_frame

log = logging.getLogger("acquirer.server")

Handler = Callable[[Frame, str], Awaitable[Frame | None]]


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
        self._connections: set[asyncio.Task] = set()
        self._in_flight: set[asyncio.Task] = set()
        self._closing = False
        self.stats = {"connections": 0, "frames": 0, "frame_errors": 0, "timeouts": 0}

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> "HostServer":
        self._server = await asyncio.start_server(self._serve, self._host, self._port, limit=self.max_frame + 2)
        log.info("host listening on %s:%d", self._host, self.port)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        self.stats["connections"] += 1
        peer = "%s:%s" % writer.get_extra_info("peername")[:2]
        write_lock = asyncio.Lock()
        slots = asyncio.Semaphore(self.max_in_flight)
        mine: set[asyncio.Task] = set()
        try:
            while not self._closing:
                try:
                    # between frames the peer may idle; inside a frame it must keep sending
                    frame = await read_frame(reader, self.read_timeout, self.max_frame, self.idle_timeout)
                except asyncio.TimeoutError:
                    self.stats["timeouts"] += 1
                    log.info("closing %s: read timeout", peer)
                    break
                except FrameError as exc:
                    self.stats["frame_errors"] += 1
                    log.info("closing %s: %s", peer, exc)
                    break
                if frame is None:
                    break
                self.stats["frames"] += 1
                await slots.acquire()
                t = asyncio.create_task(self._one(frame, peer, writer, write_lock, slots))
                mine.add(t)
                self._in_flight.add(t)
                t.add_done_callback(mine.discard)
                t.add_done_callback(self._in_flight.discard)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if mine:
                await asyncio.gather(*mine, return_exceptions=True)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass
            self._connections.discard(task)

    async def _one(self, frame: Frame, peer: str, writer: asyncio.StreamWriter, lock: asyncio.Lock,
                   slots: asyncio.Semaphore) -> None:
        try:
            reply = await self._handler(frame, peer)
            if reply is None:  # the peer does not speak our protocol
                self.stats["frame_errors"] += 1
                writer.close()
            elif not writer.is_closing():
                async with lock:
                    writer.write(reply.encode())
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        except Exception:  # one bad transaction must not take the connection or the host down
            log.exception("unhandled error in the pipeline for %s", peer)
        finally:
            slots.release()

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting; finish in-flight transactions; close connections."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=grace)
        for t in list(self._connections):
            t.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
