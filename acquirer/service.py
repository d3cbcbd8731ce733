"""The host as a running service over one state directory (embedded defaults: SQLite).

    state/  lmk  hsm.db  registry.db  ledger.db  vault.db  issuer.db  face.db
            fence.db  risk.db  risk_rules.toml                     (fences and the risk engine)
            wallets/providers.json  qr_orders.db  routing.db      (QR and face pay)
            static_codes.db                                       (merchants' static codes)

`HostService` opens every store, wires the pipeline and serves TCP; `ThreadedHost`
runs it on its own event loop for the demo and for tests that drive it with the
blocking terminal session. Closing finishes in-flight transactions first.

The QR channel opens when there are wallet provider credentials (by default
`state/wallets/providers.json`, which `acquirer wallets serve --state` writes); face pay
moves money through it, so without it QR and face requests answer 12. With it, the
static-code site (acquirer/static_endpoint.py) is served too, on `static_qr_port`.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path

from acquirer.card_flows import CardFlows
from acquirer.channels.issuer import IssuerSimulator
from acquirer.channels.remote import ANSWER_EVERY, IssuerProcess
from acquirer.channels.qr import PollPolicy
from acquirer.collector import collect_less_often
from acquirer.face import FacePay
from acquirer.face_flows import FaceFlows
from acquirer.fence import FenceMonitor, FenceStore
from acquirer.host import Host
from acquirer.ledger import LedgerWriter, SQLiteLedger
from acquirer.ledger.process import ProcessLedgerWriter
from acquirer.registry import Registry
from acquirer.risk import DecisionStore, RiskAssessor, RiskEngine, RuleFile, rules_for_state
from acquirer.server import HostServer
from acquirer.static_codes import StaticCodes
from acquirer.vault import CardVault
from acquirer.wallet_flows import WalletFlows
from keys.hsm import HSM

log = logging.getLogger("acquirer.service")


class HostService:
    def __init__(self, state_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 0,
                 read_timeout: float = 30.0, idle_timeout: float = 300.0, metrics_port: int = 0, *,
                 wallet_providers: str | os.PathLike | None = None, qr_wait: float = 8.0,
                 qr_poll: PollPolicy | None = None, qr_retry_every: float = 30.0, face_liveness: bool = True,
                 static_qr_port: int = 0, static_qr_url: str = "", static_pay_window: float = 120.0,
                 static_orders_per_minute: int = 60, require_fix: bool | None = None, ledger_process: bool = True,
                 issuer_process: bool = True, issuer_answer_every: int = ANSWER_EVERY, ledger_groups: int = 2):
        """`require_fix`: None follows the fence policy (a fenced terminal must attach a signed
        fix to every payment); False lets payments without one through (terminals without a
        location source, during a roll-out) while still judging every fix that comes.
        `ledger_process`: group commits are applied by a child process (False: by a thread
        of this one, as before; `acquirer serve --ledger-writer thread`). `issuer_process`: the
        simulated issuer authorises in a process of its own (False: on the event loop, its
        decisions riding on the ledger's group commit). `issuer_answer_every`: the issuer
        process answers at least every so many decisions (0: only when no request waits);
        `ledger_groups`: group commits at the ledger process at once. Both trade CPU per
        sale (bigger groups) against the three processes working at the same time."""
        self.state = Path(state_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        self.hsm = HSM.open(self.state / "hsm.db", self.state / "lmk")
        self.registry = Registry(self.state / "registry.db")
        # group commits run in a process of their own, handed over by the event loop: their
        # statements do not queue for this interpreter's lock (acquirer/ledger/process.py)
        self.ledger = SQLiteLedger(self.state / "ledger.db")
        self._ledger_process = ledger_process
        # the vault commits with the ledger's group commit (acquirer.ledger.companion)
        self.vault = CardVault(self.state / "vault.db", self.hsm, grouped=True)
        # the simulated issuer stands for a remote one (see AccountStore for why not FULL sync). Sales
        # are authorised by its own process (acquirer/channels/remote.py); this copy on the same file
        # is for the desk: opening accounts, reading balances. Inline, it is the channel, and its
        # decisions ride on the ledger's group commit
        self.issuer = IssuerSimulator(self.hsm, self.state / "issuer.db", durable=False, grouped=not issuer_process)
        self.issuer_process = IssuerProcess(self.hsm, self.state / "hsm.db", self.state / "lmk",
                                            self.state / "issuer.db", self.issuer.zpk_name,
                                            answer_every=issuer_answer_every) if issuer_process else None
        self._ledger_groups = ledger_groups
        self.face = FacePay(self.state / "face.db", self.hsm, require_liveness=face_liveness)
        self.fence_store = FenceStore(self.state / "fence.db", grouped=True)
        self.fences = FenceMonitor(self.fence_store)
        self.decisions = DecisionStore(self.state / "risk.db")
        self.risk = RiskAssessor(RiskEngine(RuleFile(rules_for_state(self.state)), self.decisions), self.registry,
                                 self.fences, require_fix=require_fix)
        self.wallet_providers = Path(wallet_providers or self.state / "wallets" / "providers.json")
        self.qr_wait, self.qr_poll, self.qr_retry_every = qr_wait, qr_poll, qr_retry_every
        self.qr = None  # the QRStack, when wallets are configured
        self.static_codes = StaticCodes(self.state / "static_codes.db", self.hsm, self.registry)
        self.static_site = None  # the static-code site, served with the QR channel
        self._static = (static_qr_port, static_qr_url, static_pay_window, static_orders_per_minute)
        self._qr_retry: asyncio.Task | None = None
        self._bind = (host, port, read_timeout, idle_timeout)
        self.metrics_port = metrics_port
        self._metrics_runner = None
        self.writer: LedgerWriter | ProcessLedgerWriter | None = None
        self.server: HostServer | None = None
        self.host: Host | None = None

    async def start(self) -> "HostService":
        # the child processes start before the host listens: the first sale does not wait for them
        if self.issuer_process is not None:
            await self.issuer_process.start()
        channel = self.issuer_process or self.issuer
        companions = (self.vault, self.fence_store) + ((self.issuer,) if channel is self.issuer else ())
        if self._ledger_process:
            self.writer = await ProcessLedgerWriter(self.ledger, companions, max_in_flight=self._ledger_groups).start()
        else:
            self.writer = LedgerWriter(self.ledger, companions=companions)
        flows = CardFlows(self.hsm, self.ledger, self.writer, self.vault, channel, risk=self.risk)
        wallet_flows = face_flows = None
        if self.wallet_providers.is_file():
            wallet_flows = await self._open_qr_channel()
            face_flows = FaceFlows(self.hsm, self.face, wallet_flows)
        self.host = Host(self.registry, self.hsm, self.ledger, flows, wallet_flows=wallet_flows, face_flows=face_flows,
                         fences=self.fences)
        host, port, read_timeout, idle_timeout = self._bind
        self.host.netmgmt.static_codes = self.static_codes
        if self.qr is not None:
            await self._open_static_site(host)
        collect_less_often()  # the event loop's CPU per sale (acquirer/collector.py)
        self.server = await HostServer(self.host.handle, host, port, read_timeout, idle_timeout).start()
        if self.metrics_port:
            await self._serve_metrics(host)
        return self

    async def _open_qr_channel(self) -> WalletFlows:
        from acquirer.wallets.providers import load_providers
        from acquirer.wallets.stack import open_qr_channel

        providers, _apps = load_providers(self.wallet_providers)
        self.qr = await open_qr_channel(providers, poll=self.qr_poll, orders_path=str(self.state / "qr_orders.db"),
                                        routing_path=str(self.state / "routing.db"))
        self._qr_retry = asyncio.create_task(self._retry_qr_reversals())
        log.info("QR channel open: %s", ", ".join(p.name for p in providers))
        return WalletFlows(self.ledger, self.qr.channel, wait_seconds=self.qr_wait, risk=self.risk)

    async def _open_static_site(self, host: str) -> None:
        from acquirer.static_endpoint import serve_static_site
        from acquirer.static_sales import StaticSales

        port, public_url, window, per_minute = self._static
        sales = StaticSales(self.static_codes, self.registry, self.ledger, self.writer, self.qr.channel,
                            pay_window=window, risk=self.risk, orders_per_minute=per_minute)
        self.static_site = await serve_static_site(sales, host, port, public_url)
        log.info("static-code site on %s (codes print %s)", self.static_site.url, self.static_codes.base_url)

    async def _retry_qr_reversals(self) -> None:
        # reversals a wallet has not confirmed stay pending in the order book until one is
        while True:
            await asyncio.sleep(self.qr_retry_every)
            try:
                await self.qr.channel.retry_reversals()
            except Exception:  # a wallet outage must not end the retries
                log.exception("retrying QR reversals failed")

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
        if self.static_site is not None:
            await self.static_site.aclose()
        if self._qr_retry is not None:
            self._qr_retry.cancel()
            await asyncio.gather(self._qr_retry, return_exceptions=True)
        if self.qr is not None:
            await self.qr.aclose()
        if self.writer is not None:
            await self.writer.aclose()
        if self.issuer_process is not None:
            await self.issuer_process.close()

    def close_stores(self) -> None:
        for store in (self.static_codes, self.decisions, self.fence_store, self.face, self.issuer, self.vault,
                      self.ledger, self.registry, self.hsm):
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
