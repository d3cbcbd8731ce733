"""The host as a running service over one state directory (embedded defaults: SQLite).

    state/  lmk  hsm.db  registry.db  ledger.db  vault.db  issuer.db

`HostService` opens every store, wires the pipeline and serves TCP; `serve_in_thread`
runs it on its own event loop for the demo and for tests that drive it with the
blocking terminal session. Closing finishes in-flight transactions first.
"""
from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from acquirer.card_flows import CardFlows
from acquirer.channels.issuer import IssuerSimulator
from acquirer.host import Host
from acquirer.ledger import LedgerWriter, SQLiteLedger
from acquirer.registry import Registry
from acquirer.server import HostServer
from acquirer.vault import CardVault
from keys.hsm import HSM


class HostService:
    def __init__(self, state_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 0,
                 read_timeout: float = 30.0, idle_timeout: float = 300.0, metrics_port: int = 0):
        self.state = Path(state_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        self.hsm = HSM.open(self.state / "hsm.db", self.state / "lmk")
        self.registry = Registry(self.state / "registry.db")
        self.ledger = SQLiteLedger(self.state / "ledger.db")
        self.vault = CardVault(self.state / "vault.db", self.hsm)
        # the simulated issuer stands for a remote one: see AccountStore for why not FULL sync
        self.issuer = IssuerSimulator(self.hsm, self.state / "issuer.db", durable=False)
        self._bind = (host, port, read_timeout, idle_timeout)
        self.metrics_port = metrics_port
        self._metrics_runner = None
        self.writer: LedgerWriter | None = None
        self.server: HostServer | None = None
        self.host: Host | None = None

    async def start(self) -> "HostService":
        self.writer = LedgerWriter(self.ledger)
        flows = CardFlows(self.hsm, self.ledger, self.writer, self.vault, self.issuer)
        self.host = Host(self.registry, self.hsm, self.ledger, flows)
        host, port, read_timeout, idle_timeout = self._bind
        self.server = await HostServer(self.host.handle, host, port, read_timeout, idle_timeout).start()
        if self.metrics_port:
            await self._serve_metrics(host)
        return self

    async def _serve_metrics(self, host: str) -> None:
        from aiohttp import web

        async def metrics(_request):
            return web.Response(text=self.host.metrics.prometheus(), content_type="text/plain")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        self._metrics_runner = web.AppRunner(app)
        await self._metrics_runner.setup()
        site = web.TCPSite(self._metrics_runner, host, self.metrics_port)
        await site.start()

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self) -> None:
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        if self.server is not None:
            await self.server.close()
        if self.writer is not None:
            await self.writer.aclose()

    def close_stores(self) -> None:
        for store in (self.issuer, self.vault, self.ledger, self.registry, self.hsm):
            store.close()


class ThreadedHost:
    """A HostService on its own event loop in a daemon thread."""

    def __init__(self, state_dir: str | os.PathLike, **kw):
        self.service = HostService(state_dir, **kw)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="acquirer-host", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.service.start())
        except BaseException as exc:  # reported to the starter
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> "ThreadedHost":
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    @property
    def port(self) -> int:
        return self.service.port

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.service.stop(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self.service.close_stores()
