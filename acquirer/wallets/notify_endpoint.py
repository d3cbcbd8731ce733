"""The host's HTTP endpoint for wallet notifies: POST /notify/<provider>.

Wallets call the merchant back over HTTP, so the host needs a small web server beside
its ISO8583 listener. Each provider's notify URL names the provider, which tells the
channel whose keys to check the notify with; the answer is that style's acknowledgement.
"""
from __future__ import annotations

from aiohttp import web


def notify_app(channel) -> web.Application:
    async def notify(request: web.Request) -> web.Response:
        ack = await channel.handle_notify(request.match_info["provider"], dict(request.headers), await request.read())
        return web.Response(status=ack.status, body=ack.body or None, content_type=ack.content_type)

    app = web.Application()
    app.router.add_post("/notify/{provider}", notify)
    return app


async def serve_notify(channel, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """Start the endpoint; returns the runner (clean it up to stop) and the base URL."""
    runner = web.AppRunner(notify_app(channel), shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, f"http://{host}:{runner.addresses[0][1]}"
