"""The QR channel assembled: adapters over one HTTP session, a router, an order book, the
notify endpoint. What the host service (and the demo, and tests) opens and closes.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import aiohttp
from aiohttp import web

from acquirer.channels.qr import PollPolicy, QRChannel

from .adapter import make_adapter
from .notify_endpoint import serve_notify
from .orders import QROrderBook
from .providers import ProviderConfig
from .routing import ChannelSpec, Router, RoutingRules
from .routing_state import RoutingState
from .scoring import ScorePolicy


@dataclass
class QRStack:
    channel: QRChannel
    session: aiohttp.ClientSession
    notify_runner: web.AppRunner | None = None

    @property
    def router(self) -> Router:
        return self.channel.router

    async def aclose(self) -> None:
        if self.notify_runner is not None:
            await self.notify_runner.cleanup()
        await self.session.close()
        self.channel.orders.close()
        self.channel.router.state.close()


def channel_specs(providers: list[ProviderConfig]) -> list[ChannelSpec]:
    """One routing channel per provider, all of equal priority and without limits."""
    return [ChannelSpec(p.name, p.wallet) for p in providers]


async def open_qr_channel(providers: list[ProviderConfig], *, channels: list[ChannelSpec] | None = None,
                          rules: RoutingRules | None = None, policy: ScorePolicy = ScorePolicy(),
                          clock: Callable[[], float] = time.time,
                          sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, poll: PollPolicy | None = None,
                          orders_path: str = ":memory:", routing_path: str = ":memory:",
                          notify_host: str | None = "127.0.0.1", notify_port: int = 0) -> QRStack:
    session = aiohttp.ClientSession()
    router = Router(channels or channel_specs(providers), rules, policy=policy, clock=clock,
                    state=RoutingState(routing_path))
    channel = QRChannel([make_adapter(p, session, clock=clock) for p in providers], router,
                        QROrderBook(orders_path, clock=clock), clock=clock, sleep=sleep, poll=poll or PollPolicy())
    stack = QRStack(channel, session)
    if notify_host is not None:
        stack.notify_runner, channel.notify_base_url = await serve_notify(channel, notify_host, notify_port)
    return stack
