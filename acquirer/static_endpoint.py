"""The acquirer's static-code site: the page a printed aggregated code opens, over HTTP.

    GET  /s/<token>             the page: merchant, amount limits (JSON with Accept: application/json)
    POST /s/order               {token, wallet?, amount, buyer, request_id} -> the wallet's own order code
    GET  /s/order/<id>?token=   where the order stands (learning it was paid books it)

Which wallet is calling comes from `wallet` or, as in the market, from the User-Agent of
the wallet's in-app browser (`AlipayClient`, `MicroMessenger`, `UnionPay`). Refusals are
JSON `{"error", "message"}` with the status in `static_sales.HTTP_STATUS`. The host
serves this beside its notify endpoint (a separate port: this one faces customers'
phones, the notify one faces wallets' servers).
"""
from __future__ import annotations

import html
from dataclasses import dataclass

from aiohttp import web

from acquirer.static_codes import PATH, StaticCodeError
from acquirer.static_sales import HTTP_STATUS, StaticSales


def _refused(exc: StaticCodeError) -> web.Response:
    return web.json_response({"error": exc.reason, "message": str(exc)}, status=HTTP_STATUS.get(exc.reason, 400))


def _html(info: dict) -> str:
    name = html.escape(info["merchant_name"])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{name}</title></head><body>"
            f"<h1>Pay {name}</h1><p>Enter the amount in your wallet app (up to CNY "
            f"{info['max_amount'] / 100:,.2f}).</p></body></html>")


def static_app(sales: StaticSales) -> web.Application:
    async def page(request: web.Request) -> web.Response:
        try:
            info = sales.page(request.match_info["token"])
        except StaticCodeError as exc:
            return _refused(exc)
        if "json" in request.headers.get("Accept", ""):
            return web.json_response(info)
        return web.Response(text=_html(info), content_type="text/html")

    async def order(request: web.Request) -> web.Response:
        try:
            data = await request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return _refused(StaticCodeError("format", "a JSON object is expected"))
        try:
            made = await sales.create(str(data.get("token", "")), str(data.get("wallet") or ""), data.get("amount"),
                                      data.get("buyer", ""), data.get("request_id", ""),
                                      request.headers.get("User-Agent", ""))
        except StaticCodeError as exc:
            return _refused(exc)
        return web.json_response(made)

    async def status(request: web.Request) -> web.Response:
        try:
            return web.json_response(await sales.status(request.query.get("token", ""), request.match_info["id"]))
        except StaticCodeError as exc:
            return _refused(exc)

    app = web.Application()
    app.router.add_post(f"{PATH}order", order)
    app.router.add_get(f"{PATH}order/{{id}}", status)
    app.router.add_get(f"{PATH}{{token}}", page)
    return app


@dataclass
class StaticSite:
    sales: StaticSales
    runner: web.AppRunner
    url: str  # where it listens (the public URL may differ behind a proxy)

    async def aclose(self) -> None:
        await self.sales.aclose()
        await self.runner.cleanup()


async def serve_static_site(sales: StaticSales, host: str = "127.0.0.1", port: int = 0,
                            public_url: str = "") -> StaticSite:
    """Serve the site; the URL printed codes hold is `public_url`, or where it listens.

    The URL is recorded in the code store, so `acquirer merchant qr` and the terminal's
    request print what this host serves. Codes are printed to last: in production give a
    fixed public URL (a name behind a proxy), not a port that changes between starts."""
    runner = web.AppRunner(static_app(sales), shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    url = f"http://{host}:{runner.addresses[0][1]}"
    sales.codes.base_url = public_url or url
    await sales.resume()
    return StaticSite(sales, runner, url)
