"""Start the simulated wallets: per wallet one book and customer app, per provider a gateway.

`serve_wallets` is what tests, the demo and `acquirer wallets serve` call. Each wallet
gets its own port for the customer app; each provider route gets its own port, style
and fault plan, so one provider can fail while another reaching the same wallet works.
It also makes the credentials the host needs (our keys, the wallets' public keys).
"""
from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from aiohttp import web

from .book import WalletBook
from .codes import Wallet
from .faults import FaultPlan
from .gateway import Gateway, MerchantContract, customer_app
from .notifier import WECHAT_SCHEDULE, Notifier
from .providers import ProviderConfig, save_providers
from .signing import RSA2, SM2, new_signer
from .sim_alipay import AlipayGateway
from .sim_unionpay import UnionPayGateway
from .sim_wechat import WeChatGateway


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    wallet: Wallet
    sign_type: str = SM2  # Alipay-style routes may sign RSA2 instead
    port: int = 0


DEFAULT_PROVIDERS = (
    ProviderSpec("alipay-direct", Wallet.ALIPAY, RSA2),
    ProviderSpec("alipay-isv", Wallet.ALIPAY, SM2),
    ProviderSpec("wechat-direct", Wallet.WECHAT),
    ProviderSpec("unionpay-direct", Wallet.UNIONPAY),
)
_KEY_CACHE: dict[tuple[str, str], object] = {}


def _signer(algorithm: str, role: str, reuse: bool):
    """A fresh key, or with `reuse` one kept per process and role: an RSA-2048 key takes
    ~140 ms to make, and a test suite starts many worlds that need no fresh identities."""
    if not reuse:
        return new_signer(algorithm)
    if (algorithm, role) not in _KEY_CACHE:
        _KEY_CACHE[(algorithm, role)] = new_signer(algorithm)
    return _KEY_CACHE[(algorithm, role)]


_MERCHANT_IDS = {Wallet.ALIPAY: "202100{:08d}", Wallet.WECHAT: "19{:08d}", Wallet.UNIONPAY: "8984403581{:05d}"}


class WalletServices:
    """The running simulators and what the host needs to talk to them."""

    def __init__(self, clock: Callable[[], float], notifier: Notifier):
        self.clock, self.notifier = clock, notifier
        self.books: dict[Wallet, WalletBook] = {}
        self.gateways: dict[str, Gateway] = {}
        self.providers: list[ProviderConfig] = []
        self.app_urls: dict[Wallet, str] = {}
        self._runners: list[web.AppRunner] = []

    def faults(self, provider: str) -> FaultPlan:
        return self.gateways[provider].faults

    def provider(self, name: str) -> ProviderConfig:
        return next(p for p in self.providers if p.name == name)

    async def serve(self, app: web.Application, host: str, port: int) -> str:
        runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runners.append(runner)
        bound = runner.addresses[0][1]
        return f"http://{host}:{bound}"

    def save(self, path) -> None:
        save_providers(path, self.providers, self.app_urls)

    async def stop(self) -> None:
        for gateway in self.gateways.values():
            gateway.faults.release()  # held "timeout" answers end now, not after hang_seconds
        await self.notifier.aclose()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self) -> "WalletServices":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()


async def serve_wallets(providers: tuple[ProviderSpec, ...] = DEFAULT_PROVIDERS, *, host: str = "127.0.0.1",
                        app_ports: dict[Wallet, int] | None = None, clock: Callable[[], float] = time.time,
                        notify_schedule: tuple[float, ...] = WECHAT_SCHEDULE,
                        notify_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                        no_password_limit: int = 100_000, code_ttl: float = 60.0,
                        http_timeout: float = 10.0, reuse_keys: bool = False) -> WalletServices:
    """Start every wallet of `providers` and return the running set (stop it when done)."""
    services = WalletServices(clock, Notifier(notify_schedule, sleep=notify_sleep))
    platforms = {Wallet.ALIPAY: {RSA2: _signer(RSA2, "alipay", reuse_keys), SM2: _signer(SM2, "alipay", reuse_keys)},
                 Wallet.WECHAT: _signer(SM2, "wechat", reuse_keys), Wallet.UNIONPAY: _signer(SM2, "unionpay", reuse_keys)}
    platform_serials = {Wallet.WECHAT: "PUB_KEY_ID_" + secrets.token_hex(8).upper(),
                        Wallet.UNIONPAY: str(secrets.randbelow(10**11)).zfill(11), Wallet.ALIPAY: ""}
    try:
        for wallet in dict.fromkeys(p.wallet for p in providers):
            book = services.books[wallet] = WalletBook(wallet, clock=clock, no_password_limit=no_password_limit,
                                                       code_ttl=code_ttl)
            services.app_urls[wallet] = await services.serve(customer_app(book), host,
                                                             (app_ports or {}).get(wallet, 0))
        for index, spec in enumerate(providers, 1):
            if spec.name in services.gateways:
                raise ValueError(f"provider {spec.name} is listed twice")
            if spec.sign_type == RSA2 and spec.wallet is not Wallet.ALIPAY:
                raise ValueError(f"{spec.name}: only Alipay-style routes sign RSA2")
            signer = _signer(spec.sign_type, spec.name, reuse_keys)
            merchant = _MERCHANT_IDS[spec.wallet].format(index)
            serial = secrets.token_hex(8).upper() if spec.wallet is not Wallet.UNIONPAY else str(70000000000 + index)
            apiv3 = secrets.token_bytes(16) if spec.wallet is Wallet.WECHAT else b""
            contract = MerchantContract(merchant, signer.verifier, serial, apiv3, spec.sign_type)
            kw = {"faults": FaultPlan(), "notifier": services.notifier}
            book = services.books[spec.wallet]
            if spec.wallet is Wallet.ALIPAY:
                gateway: Gateway = AlipayGateway(spec.name, book, [contract], platform=platforms[Wallet.ALIPAY], **kw)
                platform = platforms[Wallet.ALIPAY][spec.sign_type].verifier
            elif spec.wallet is Wallet.WECHAT:
                gateway = WeChatGateway(spec.name, book, [contract], platform=platforms[Wallet.WECHAT],
                                        platform_serial=platform_serials[Wallet.WECHAT], **kw)
                platform = platforms[Wallet.WECHAT].verifier
            else:
                gateway = UnionPayGateway(spec.name, book, [contract], platform=platforms[Wallet.UNIONPAY],
                                          platform_cert_id=platform_serials[Wallet.UNIONPAY], **kw)
                platform = platforms[Wallet.UNIONPAY].verifier
            gateway.base_url = await services.serve(gateway.app(), host, spec.port)
            services.gateways[spec.name] = gateway
            services.providers.append(ProviderConfig(spec.name, spec.wallet, gateway.base_url, merchant, signer, serial,
                                                     platform, platform_serials[spec.wallet], apiv3, http_timeout))
    except BaseException:
        await services.stop()
        raise
    return services
