"""The customer's wallet, on the command line: show my payment code, pay a merchant QR
(a wallet's own, or an acquirer's static aggregated code), confirm a payment waiting for
my password.

It stands in for the phone app of each simulated wallet and talks to that wallet's
customer app API (`acquirer wallets serve` writes where they listen). The password comes
from $SOFTPOS_WALLET_PASSWORD or a prompt, never from the command line (it would show
in `ps`), and is never printed. The payment code is shown as a QR (text blocks here,
and a PNG on request); its digits are masked unless asked for, as apps hide them.

A QR that is a web address but no wallet's own order is opened as a page, as a wallet's
in-app browser does, with that wallet's User-Agent. An acquirer's static code page
answers with the merchant and an order form: the customer types the amount, the page
asks the acquirer for an order at this wallet, and the wallet pays that order with the
password like any merchant QR (`pay_static_code`).
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import secrets
import sys
from pathlib import Path

import aiohttp
import qrcode

from keys.hashes import sm3

from .clock import fen
from .codes import USER_AGENT_MARKS, Wallet, mask_code, wallet_of_merchant_qr

DEFAULT_ENDPOINTS = os.environ.get("SOFTPOS_WALLETS", "var/acquirer/wallets/providers.json")


class WalletAppError(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# --- QR images ----------------------------------------------------------------------------
def _matrix(text: str) -> list[list[bool]]:
    qr = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(text)
    qr.make(fit=True)
    return qr.get_matrix()


def render_text(text: str) -> str:
    """The QR as Unicode half blocks, two modules per character cell, dark on light."""
    rows = _matrix(text)
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    chars = {(False, False): "█", (True, False): "▄", (False, True): "▀", (True, True): " "}
    return "\n".join("".join(chars[(top, bottom)] for top, bottom in zip(rows[i], rows[i + 1]))
                     for i in range(0, len(rows), 2))


def render_png(text: str, path: str | os.PathLike, box_size: int = 8) -> Path:
    image = qrcode.make(text, box_size=box_size, border=4)
    image.save(str(path))
    return Path(path)


def read_qr(source: str | os.PathLike) -> str:
    """The text of the first QR in an image file; a source that is no file is taken as the text."""
    path = Path(source)
    if not path.is_file():
        return str(source).strip()
    from PIL import Image
    from pyzbar.pyzbar import ZBarSymbol, decode

    with Image.open(path) as image:
        found = decode(image.convert("L"), symbols=[ZBarSymbol.QRCODE])
    if not found:
        raise WalletAppError("no_qr", f"no QR code found in {path}")
    return found[0].data.decode()


# --- the wallet app API ---------------------------------------------------------------------
async def _post(app_url: str, path: str, payload: dict, session: aiohttp.ClientSession | None = None) -> dict:
    own = session is None
    session = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    try:
        async with session.post(f"{app_url}/app/{path}", json=payload) as resp:
            data = await resp.json(content_type=None)
    finally:
        if own:
            await session.close()
    if "error" in data:
        raise WalletAppError(data["error"], data.get("message", data["error"]))
    return data


async def payment_code(app_url: str, account: str, password: str, session=None) -> dict:
    """A fresh single-use payment code: {"code", "expires_in", "wallet"}."""
    return await _post(app_url, "paycode", {"account": account, "password": password}, session)


async def pay_merchant_qr(app_urls: dict[Wallet, str], account: str, password: str, source: str,
                          session=None) -> dict:
    """Scan (an image file, or the text itself) and pay a merchant's QR with the wallet it belongs to."""
    text = read_qr(source)
    wallet = wallet_of_merchant_qr(text)
    if wallet is None or wallet not in app_urls:
        raise WalletAppError("qr_unknown", "this QR is not a payment QR of a wallet you have")
    return {"wallet": wallet.value, **await _post(app_urls[wallet], "scan",
                                                  {"account": account, "password": password, "qr": text}, session)}


# --- an acquirer's static aggregated code, opened in the wallet's in-app browser ----------------
def user_agent(wallet: Wallet) -> str:
    return f"Mozilla/5.0 (Linux; Android 13) {USER_AGENT_MARKS[wallet]}/10.5 softpos-wallet-sim"


def is_web_page(text: str) -> bool:
    return text.startswith(("https://", "http://")) and wallet_of_merchant_qr(text) is None


async def _page_call(session: aiohttp.ClientSession, method: str, url: str, wallet: Wallet, **kw) -> dict:
    headers = {"User-Agent": user_agent(wallet), "Accept": "application/json"}
    async with session.request(method, url, headers=headers, **kw) as resp:
        try:
            data = await resp.json(content_type=None)
        except ValueError:
            raise WalletAppError("not_payable", f"{url} is not a payment page (HTTP {resp.status})") from None
    if not isinstance(data, dict):
        raise WalletAppError("not_payable", f"{url} is not a payment page")
    if "error" in data:
        raise WalletAppError(data["error"], data.get("message", data["error"]))
    return data


async def open_static_code(url: str, wallet: Wallet, session=None) -> dict:
    """What the page of a static code says: merchant, amount limits, where to order."""
    own = session is None
    session = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    try:
        page = await _page_call(session, "GET", url, wallet)
    finally:
        if own:
            await session.close()
    if "order_url" not in page:
        raise WalletAppError("not_payable", "this page takes no payments")
    return page


async def pay_static_code(app_urls: dict[Wallet, str], wallet: Wallet, account: str, password: str, url: str,
                          amount: int, session=None, settle_seconds: float = 10.0) -> dict:
    """Pay `amount` fen through an acquirer's static code with `wallet`: order at the page,
    pay that order with the password, then look until the acquirer has it."""
    if wallet not in app_urls:
        raise WalletAppError("no_wallet", f"no {wallet.value} wallet is being served")
    own = session is None
    session = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    try:
        page = await open_static_code(url, wallet, session)
        buyer = sm3(f"{wallet.value}:{account}".encode()).hex()[:16]  # an opaque per-app user id, as openid is
        order = await _page_call(session, "POST", page["order_url"], wallet, json={
            "token": page["token"], "wallet": wallet.value, "amount": amount, "buyer": buyer,
            "request_id": secrets.token_hex(12)})
        paid = await _post(app_urls[wallet], "scan", {"account": account, "password": password,
                                                      "qr": order["code_url"]}, session)
        status = {"state": "", "booked": False}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settle_seconds
        while not status["booked"] and loop.time() < deadline:  # the acquirer learns it by notify or query
            status = await _page_call(session, "GET", order["status_url"], wallet, params={"token": page["token"]})
            if not status["booked"]:
                await asyncio.sleep(0.2)
    finally:
        if own:
            await session.close()
    return {**paid, "wallet": wallet.value, "merchant": page["merchant_name"], "order_id": order["order_id"],
            "acquirer_state": status["state"], "booked": status["booked"]}


async def pending(app_url: str, account: str, password: str, session=None) -> list[dict]:
    return (await _post(app_url, "pending", {"account": account, "password": password}, session))["pending"]


async def confirm(app_url: str, account: str, password: str, trade_no: str | None = None, session=None) -> dict:
    """Confirm the payment waiting for my password (the oldest, or `trade_no`)."""
    return await _post(app_url, "confirm", {"account": account, "password": password, "trade_no": trade_no or ""},
                       session)


async def agree(app_url: str, account: str, password: str, session=None) -> dict:
    """Let the acquirer's face pay debit this account once the face and passcode match."""
    return await _post(app_url, "agree", {"account": account, "password": password}, session)


async def balance(app_url: str, account: str, password: str, session=None) -> int:
    return (await _post(app_url, "balance", {"account": account, "password": password}, session))["balance"]


# --- command line ---------------------------------------------------------------------------
def _app_urls(args) -> dict[Wallet, str]:
    if args.app_url:
        return {Wallet(args.wallet or "alipay"): args.app_url.rstrip("/")}
    try:
        data = json.loads(Path(args.endpoints).read_text())
    except FileNotFoundError:
        raise WalletAppError("no_endpoints", f"{args.endpoints} not found: start `acquirer wallets serve` first "
                                             "or give --app-url") from None
    return {Wallet(w): u for w, u in data.get("apps", {}).items()}


def _password() -> str:
    return os.environ.get("SOFTPOS_WALLET_PASSWORD") or getpass.getpass("payment password: ")


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


async def _run(args) -> int:
    urls = _app_urls(args)
    if args.command == "pay":
        text = read_qr(args.source)
        if is_web_page(text):
            return await _pay_static(urls, args, text)
        paid = await pay_merchant_qr(urls, args.account, _password(), text)
        print(f"paid {_yuan(paid['amount'])} CNY to {paid['merchant']} with {paid['wallet']} ({paid['trade_no']})")
        return 0
    wallet = Wallet(args.wallet)
    if wallet not in urls:
        raise WalletAppError("no_wallet", f"no {wallet.value} wallet is being served")
    url = urls[wallet]
    if args.command == "code":
        got = await payment_code(url, args.account, _password())
        print(render_text(got["code"]))
        print(f"{wallet.value} payment code {got['code'] if args.show_digits else mask_code(got['code'])}, "
              f"valid {got['expires_in']} s, once")
        if args.png:
            print(f"written to {render_png(got['code'], args.png)}")
    elif args.command == "pending":
        for p in await pending(url, args.account, _password()):
            print(f"{p['trade_no']}  {_yuan(p['amount'])} CNY  to {p['merchant']}  {p['description']}")
    elif args.command == "confirm":
        done = await confirm(url, args.account, _password(), args.trade)
        print(f"confirmed: {_yuan(done['amount'])} CNY to {done['merchant']} ({done['trade_no']}) {done['status']}")
    elif args.command == "agree":
        await agree(url, args.account, _password())
        print(f"{wallet.value} account {args.account}: face pay may now debit it (after face and passcode)")
    elif args.command == "balance":
        print(f"{wallet.value} balance: {_yuan(await balance(url, args.account, _password()))} CNY")
    return 0


async def _pay_static(urls: dict[Wallet, str], args, url: str) -> int:
    if not args.wallet:
        raise WalletAppError("no_wallet", "this code is for every wallet: say which app scans it (--wallet)")
    wallet = Wallet(args.wallet)
    page = await open_static_code(url, wallet)
    print(f"pay {page['merchant_name']} ({page['merchant_id']}) with {wallet.value}")
    try:
        amount = fen(args.amount or input(f"amount in CNY (up to {_yuan(page['max_amount'])}): "))
    except ValueError as exc:
        raise WalletAppError("amount", str(exc)) from None
    paid = await pay_static_code(urls, wallet, args.account, _password(), url, amount)
    print(f"paid {_yuan(paid['amount'])} CNY to {paid['merchant']} with {paid['wallet']} ({paid['trade_no']}), "
          f"order {paid['order_id']}: {'booked by the acquirer' if paid['booked'] else 'acquirer not told yet'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wallet", description="A customer's wallet app, simulated")
    parser.add_argument("--endpoints", default=DEFAULT_ENDPOINTS, help="file written by `acquirer wallets serve`")
    parser.add_argument("--app-url", help="a wallet's customer app URL (instead of --endpoints)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("code", "show my payment code"), ("pending", "payments waiting for my password"),
                       ("confirm", "confirm a waiting payment with my password"),
                       ("agree", "let face pay at the acquirer debit this account"), ("balance", "my balance")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--wallet", required=True, choices=[w.value for w in Wallet])
        p.add_argument("--account", required=True)
        if name == "code":
            p.add_argument("--png", help="also write the QR to this PNG file")
            p.add_argument("--show-digits", action="store_true", help="print the code's digits in full")
        if name == "confirm":
            p.add_argument("--trade", help="the wallet's trade number (default: the oldest waiting)")
    p = sub.add_parser("pay", help="scan a merchant QR (PNG/JPEG file, or its text) and pay it")
    p.add_argument("source")
    p.add_argument("--account", required=True)
    p.add_argument("--wallet", choices=[w.value for w in Wallet],
                   help="the app that scans an acquirer's static code (one code for every wallet)")
    p.add_argument("--amount", help="CNY to pay through a static code (asked if not given)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except WalletAppError as exc:
        print(f"wallet: {exc}", file=sys.stderr)
        return 2
    except aiohttp.ClientError as exc:
        print(f"wallet: cannot reach the wallet: {type(exc).__name__}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
