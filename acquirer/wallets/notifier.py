"""A wallet's asynchronous payment notifications, resent with back-off until acknowledged.

Wallets tell the merchant's notify URL that an order is paid, and keep telling it until
the answer is the acknowledgement their API style defines (Alipay: the body `success`;
WeChat: HTTP 200/204; UnionPay: HTTP 200). The market's schedules run for hours
(WeChat 15 s, 15 s, 30 s, 3 min, ...); tests give a schedule of zeros.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

import aiohttp

log = logging.getLogger("acquirer.wallets.notify")

WECHAT_SCHEDULE = (0, 15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600)


@dataclass
class Delivery:
    url: str
    order: str  # the merchant order id, for the record
    attempts: int = 0
    acknowledged: bool = False


# builds (headers, body) afresh for each attempt: timestamps and nonces must be new
Build = Callable[[], tuple[dict[str, str], bytes]]
Acknowledged = Callable[[int, bytes], bool]


class Notifier:
    def __init__(self, schedule: tuple[float, ...] = WECHAT_SCHEDULE, *, timeout: float = 5.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.schedule, self.timeout, self._sleep = schedule, timeout, sleep
        self.deliveries: list[Delivery] = []
        self._tasks: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None

    def send(self, url: str, order: str, build: Build, acknowledged: Acknowledged) -> Delivery:
        delivery = Delivery(url, order)
        self.deliveries.append(delivery)
        task = asyncio.get_running_loop().create_task(self._deliver(delivery, build, acknowledged))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return delivery

    async def _deliver(self, delivery: Delivery, build: Build, acknowledged: Acknowledged) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        for wait in self.schedule:
            await self._sleep(wait)
            delivery.attempts += 1
            headers, body = build()
            try:
                async with self._session.post(delivery.url, data=body, headers=headers) as resp:
                    if acknowledged(resp.status, await resp.read()):
                        delivery.acknowledged = True
                        return
                    log.info("notify %s attempt %d not acknowledged (HTTP %d)", delivery.order, delivery.attempts,
                             resp.status)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                log.info("notify %s attempt %d failed: %s", delivery.order, delivery.attempts, type(exc).__name__)
        log.warning("notify %s given up after %d attempts", delivery.order, delivery.attempts)

    async def drain(self) -> None:
        """Wait for every delivery in flight to end (acknowledged or given up)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
