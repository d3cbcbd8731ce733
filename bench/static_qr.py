"""Static-code payments per second, end to end, against the bare wallet round trip, same run.

    .venv/bin/python bench/static_qr.py [--count 54]

Static: what a customer's wallet app does with a merchant's printed aggregated code,
over real HTTP to a real `HostService` (SQLite, synchronous=FULL): open the page, order
(the host checks the HSM-keyed token and precreates at the wallet), pay the wallet's
order with the password, look at the order until the host has booked it in the ledger.
Baseline: the same wallets' own part alone, called straight on the host's QR channel:
precreate, the customer pays, `wait_paid`. The ratio is what the acquirer's page, token
check, STAN allocation and booking cost on top of the wallets. Payments rotate over the
three wallets and over enough buyers that the risk engine's per-buyer velocity rule lets
every order through (a shop does not see one customer five times a minute). Ends with
one JSON line of the figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from acquirer.service import HostService  # noqa: E402
from acquirer.wallets.codes import Wallet  # noqa: E402
from acquirer.wallets.customer_cli import _post, pay_static_code  # noqa: E402
from acquirer.wallets.serve import serve_wallets  # noqa: E402

MERCHANT = "898440358120001"
PASSWORD = "bench-pw-1"
WALLETS = list(Wallet)
PAYS_PER_BUYER = 4  # the risk engine's card-velocity rule screens a buyer's sixth order within a minute
BUYERS = 60  # customers at the shop: none pays often enough to be screened out


def buyer(n: int) -> str:
    return f"buyer{n // PAYS_PER_BUYER % BUYERS:02d}"


async def static_payments(service: HostService, app_urls, url: str, count: int, first: int = 0) -> float:
    start = time.perf_counter()
    for n in range(first, first + count):
        paid = await pay_static_code(app_urls, WALLETS[n % 3], buyer(n), PASSWORD, url, 100 + n)
        assert paid["booked"], paid
    return time.perf_counter() - start


async def bare_payments(service: HostService, app_urls, count: int) -> float:
    channel = service.qr.channel
    start = time.perf_counter()
    for n in range(count):
        wallet = WALLETS[n % 3]
        made = await channel.precreate(f"BENCH-{n:06d}", 100 + n, MERCHANT, "B0000001", wallet)
        await _post(app_urls[wallet], "scan", {"account": buyer(n), "password": PASSWORD, "qr": made.code_url})
        result = await channel.wait_paid(made.order_id, timeout=10)
        assert result.state == "SUCCESS", result
    return time.perf_counter() - start


async def main(count: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-static-") as state:
        wallets = await serve_wallets(notify_schedule=(0, 0, 0), reuse_keys=True, no_password_limit=10**9)
        service = None
        try:
            for book in wallets.books.values():
                for b in range(BUYERS):
                    book.add_account(f"buyer{b:02d}", PASSWORD, 10**9)
            wallets.save(os.path.join(state, "wallets", "providers.json"))
            service = await HostService(state).start()
            service.registry.add_merchant(MERCHANT, "Bench shop")
            url = service.static_codes.url(service.static_codes.issue(MERCHANT))
            await static_payments(service, wallets.app_urls, url, 3, first=count)  # warm up: keys, connections
            bare = await bare_payments(service, wallets.app_urls, count)
            static = await static_payments(service, wallets.app_urls, url, count)
            booked = len(service.ledger.transactions(service.static_codes.current(MERCHANT).terminal_id))
        finally:
            if service is not None:
                await service.stop()
                service.close_stores()
            await wallets.stop()
    return {"count": count, "static_per_s": round(count / static, 1), "bare_per_s": round(count / bare, 1),
            "static_ms": round(static / count * 1000, 2), "bare_ms": round(bare / count * 1000, 2),
            "ratio_static_to_bare": round(static / bare, 2), "booked": booked}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=54,
                        help="payments each way (with the 3 warm-up ones, under the 60 new orders a printed code "
                             "takes per minute)")
    figures = asyncio.run(main(parser.parse_args().count))
    print(f"static code, end to end: {figures['static_per_s']:8.1f} payments/s  ({figures['static_ms']} ms each)")
    print(f"bare wallet round trip:  {figures['bare_per_s']:8.1f} payments/s  ({figures['bare_ms']} ms each)")
    print(f"static / bare time: {figures['ratio_static_to_bare']}x; booked in the ledger: {figures['booked']}")
    print(json.dumps(figures))
