"""The customer wallet CLI and the `acquirer wallets` / `acquirer channel` commands, run as
a user would, against wallets served from another thread."""
from __future__ import annotations

import argparse
import asyncio
import threading

import aiohttp
import pytest

from acquirer.wallets import cli as wallets_cli
from acquirer.wallets import customer_cli
from acquirer.wallets.adapter import make_adapter
from acquirer.wallets.codes import Wallet, wallet_of_code
from acquirer.wallets.providers import load_providers
from acquirer.wallets.serve import serve_wallets

PASSWORD = "pw-5501"


class ServedWallets:
    """serve_wallets on its own event loop, so the CLI can run its own `asyncio.run`."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def __enter__(self):
        self.thread.start()
        self.services = self.call(serve_wallets(notify_schedule=(0,), no_password_limit=20_000, reuse_keys=True))
        for book in self.services.books.values():
            book.add_account("alice", PASSWORD, 100_000)
        return self

    def __exit__(self, *exc):
        self.call(self.services.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def _precreate(provider, order_id: str, amount: int) -> str:
    async with aiohttp.ClientSession() as session:
        return (await make_adapter(provider, session).precreate(order_id, amount, "tea", "")).code_url


async def _issue(book) -> str:
    return book.issue_code("alice", PASSWORD)


async def _pay(provider, order_id: str, code: str, amount: int):
    async with aiohttp.ClientSession() as session:
        return await make_adapter(provider, session).pay(order_id, code, amount)


def test_customer_cli_shows_a_code_pays_a_merchant_qr_and_confirms(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SOFTPOS_WALLET_PASSWORD", PASSWORD)
    with ServedWallets() as served:
        endpoints = tmp_path / "providers.json"
        served.services.save(endpoints)
        assert oct(endpoints.stat().st_mode & 0o777) == "0o600"  # it holds demo private keys
        png = tmp_path / "mine.png"
        assert customer_cli.main(["--endpoints", str(endpoints), "code", "--wallet", "wechat", "--account", "alice",
                                  "--png", str(png)]) == 0
        shown = capsys.readouterr().out
        code = customer_cli.read_qr(png)
        assert wallet_of_code(code) is Wallet.WECHAT
        assert code not in shown and customer_cli.mask_code(code) in shown and "▀" in shown

        providers, apps = load_providers(endpoints)  # what the host loads: keys survive the round trip
        assert set(apps) == set(Wallet) and [p.sign_type for p in providers][:2] == ["RSA2", "SM2"]
        for loaded in providers:
            code = served.call(_issue(served.services.books[loaded.wallet]))
            assert served.call(_pay(loaded, f"LOAD-{loaded.name}", code, 100)).outcome.value == "SUCCESS"

        provider = served.services.provider("alipay-isv")
        qr_png = customer_cli.render_png(served.call(_precreate(provider, "CLI-1", 1_234)), tmp_path / "shop.png")
        assert customer_cli.main(["--endpoints", str(endpoints), "pay", str(qr_png), "--account", "alice"]) == 0
        assert "paid 12.34 CNY" in capsys.readouterr().out

        big = served.call(_issue(served.services.books[Wallet.UNIONPAY]))  # on the wallets' own loop
        answer = served.call(_pay(served.services.provider("unionpay-direct"), "CLI-2", big, 50_000))
        assert answer.outcome.value == "USER_PAYING"
        args = ["--endpoints", str(endpoints)]
        assert customer_cli.main(args + ["pending", "--wallet", "unionpay", "--account", "alice"]) == 0
        assert "500.00 CNY" in capsys.readouterr().out
        assert customer_cli.main(args + ["confirm", "--wallet", "unionpay", "--account", "alice"]) == 0
        assert "confirmed: 500.00 CNY" in capsys.readouterr().out
        assert customer_cli.main(args + ["balance", "--wallet", "unionpay", "--account", "alice"]) == 0
        assert "499.00 CNY" in capsys.readouterr().out  # 1000.00 - 1.00 (loaded keys) - 500.00
        monkeypatch.setenv("SOFTPOS_WALLET_PASSWORD", "wrong")
        assert customer_cli.main(args + ["balance", "--wallet", "unionpay", "--account", "alice"]) == 2
        assert "wrong payment password" in capsys.readouterr().err


def test_acquirer_wallet_and_channel_commands_register_and_switch(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="acquirer")
    parser.add_argument("--state", default=str(tmp_path))
    sub = parser.add_subparsers(dest="command", required=True)
    wallets_cli.register(sub)
    wallets_cli.register_channel(sub)
    args = parser.parse_args(["wallets", "serve", "--customer", "alipay:alice:100000"])
    assert args.func is not None and args.customer == [(Wallet.ALIPAY, "alice", 100_000)]
    with pytest.raises(SystemExit):
        parser.parse_args(["wallets", "serve", "--customer", "alipay-alice"])
    for argv in (["channel", "disable", "wechat-direct", "--reason", "incident 42"], ["channel", "list"],
                 ["channel", "enable", "wechat-direct"], ["channel", "list"]):
        args = parser.parse_args(argv)
        assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "disabled now: wechat-direct" in out and "disabled now: none" in out and "incident 42" in out
