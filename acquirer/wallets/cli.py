"""`acquirer wallets ...` and `acquirer channel ...`: serve the simulated wallets, switch
routing channels by hand. `register(sub)` and `register_channel(sub)` add the commands
to the `acquirer` parser; both read the acquirer's `--state` directory.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from .codes import Wallet


def _wallet_dir(args) -> Path:
    path = Path(args.state) / "wallets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _routing_db(args) -> Path:
    Path(args.state).mkdir(parents=True, exist_ok=True)
    return Path(args.state) / "routing.db"


def _customer(text: str) -> tuple[Wallet, str, int]:
    try:
        wallet, account, amount = text.split(":")
        return Wallet(wallet), account, int(amount)
    except ValueError:
        raise argparse.ArgumentTypeError("customer must be WALLET:ACCOUNT:BALANCE_FEN, e.g. alipay:alice:100000")


async def _serve(args) -> int:
    from .serve import DEFAULT_PROVIDERS, ProviderSpec, serve_wallets

    specs = tuple(ProviderSpec(p.name, p.wallet, p.sign_type, args.port_base + i if args.port_base else 0)
                  for i, p in enumerate(DEFAULT_PROVIDERS))
    app_ports = ({w: args.port_base + len(specs) + i for i, w in enumerate(Wallet)} if args.port_base else None)
    services = await serve_wallets(specs, host=args.host, app_ports=app_ports)
    password = os.environ.get("SOFTPOS_WALLET_PASSWORD", "")
    for wallet, account, amount in args.customer:
        if not password:
            raise SystemExit("acquirer: set SOFTPOS_WALLET_PASSWORD for the customers' payment password")
        services.books[wallet].add_account(account, password, amount)
    target = _wallet_dir(args) / "providers.json"
    services.save(target)
    for p in services.providers:
        print(f"{p.name:16s} {p.wallet.value:9s} {p.base_url}  merchant {p.merchant}  signs {p.sign_type}")
    for wallet, url in services.app_urls.items():
        print(f"{wallet.value:9s} customer app {url}")
    print(f"credentials for the host: {target} (demo keys, mode 0600); Ctrl-C stops")
    try:
        while True:
            await asyncio.sleep(3600)
    finally:
        await services.stop()


def _cmd_serve(args) -> int:
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0


def _cmd_switch(args, disabled: bool) -> int:
    from .routing_state import RoutingState

    state = RoutingState(_routing_db(args))
    try:
        state.set_switch(args.channel, disabled, args.reason or "", os.environ.get("USER", "operator"), time.time())
    finally:
        state.close()
    print(f"channel {args.channel} {'disabled' if disabled else 'enabled'}")
    return 0


def _cmd_switch_list(args) -> int:
    from .routing_state import RoutingState

    state = RoutingState(_routing_db(args))
    try:
        for seq, channel, action, reason, actor, at in state.switch_log():
            print(f"{seq:5d} {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(at))} {channel:16s} {action:8s} "
                  f"{actor:10s} {reason}")
        disabled = state.disabled()
    finally:
        state.close()
    print("disabled now: " + (", ".join(sorted(disabled)) or "none"))
    return 0


def register(sub) -> None:
    """Add `wallets serve` to the `acquirer` sub-parsers."""
    wallets = sub.add_parser("wallets", help="simulated wallets (Alipay-, WeChat-, UnionPay-QR-style)")
    wsub = wallets.add_subparsers(dest="wallets_command", required=True)
    p = wsub.add_parser("serve", help="run the wallet simulators until Ctrl-C")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port-base", type=int, default=0, help="first port (default: any free ports)")
    p.add_argument("--customer", type=_customer, action="append", default=[],
                   help="WALLET:ACCOUNT:BALANCE_FEN; the password comes from $SOFTPOS_WALLET_PASSWORD")
    p.set_defaults(func=_cmd_serve)


def register_channel(sub) -> None:
    """Add `channel disable|enable|list` (the manual switch of routing) to the sub-parsers."""
    channel = sub.add_parser("channel", help="payment routing channels: the manual switch")
    csub = channel.add_subparsers(dest="channel_command", required=True)
    for name, disabled in (("disable", True), ("enable", False)):
        p = csub.add_parser(name, help=f"{name} a provider channel for routing (takes effect on the next payment)")
        p.add_argument("channel")
        p.add_argument("--reason")
        p.set_defaults(func=lambda a, disabled=disabled: _cmd_switch(a, disabled))
    csub.add_parser("list", help="switch history and what is disabled now").set_defaults(func=_cmd_switch_list)
