"""`acquirer`: the host's command line (registry administration, HSM listing, serving)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_STATE = os.environ.get("SOFTPOS_ACQUIRER_STATE", "var/acquirer")


# how `acquirer serve` splits the host into processes and paces them: bench/host.py offers
# the same options and passes them on (`process_argv`)
PROCESS_OPTIONS = ("loop", "ledger_writer", "issuer", "issuer_answer_every", "ledger_groups")


def add_process_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                   help="event loop: uvloop (default) or the standard library's")
    p.add_argument("--ledger-writer", choices=("process", "thread"), default="process",
                   help="who applies the ledger's group commits: a child process (default) or a thread")
    p.add_argument("--issuer", choices=("process", "inline"), default="process",
                   help="the simulated issuer: its own process (default) or on the event loop")
    p.add_argument("--issuer-answer-every", type=int, default=4, metavar="N",
                   help="tuning: the issuer process answers at least every N decisions (0: when no request waits)")
    p.add_argument("--ledger-groups", type=int, default=2, metavar="N",
                   help="tuning: group commits at the ledger process at once (default 2)")


def process_argv(args: argparse.Namespace) -> list[str]:
    """The options `add_process_options` read, as `acquirer serve` arguments again."""
    return [arg for name in PROCESS_OPTIONS for arg in ("--" + name.replace("_", "-"), str(getattr(args, name)))]


def _state(args: argparse.Namespace) -> Path:
    path = Path(args.state)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _registry(args):
    from acquirer.registry import Registry

    return Registry(_state(args) / "registry.db")


def _hsm(args):
    from keys.hsm import HSM

    state = _state(args)
    return HSM.open(state / "hsm.db", state / "lmk")


def _fail(message: str) -> int:
    print(f"acquirer: {message}", file=sys.stderr)
    return 2


def _cmd_merchant_add(args) -> int:
    from acquirer.registry import RegistryError

    reg = _registry(args)
    try:
        m = reg.add_merchant(args.merchant_id, args.name, mcc=args.mcc, rate_bp=args.rate_bp, fixed_fee=args.fixed_fee,
                             latitude=args.lat, longitude=args.lon, radius_m=args.radius, mobile=args.mobile)
    except RegistryError as exc:
        return _fail(str(exc))
    print(f"merchant {m.merchant_id} added: {m.name}, rate {m.rate_bp} bp, radius {m.radius_m:.0f} m")
    return 0


def _cmd_merchant_list(args) -> int:
    for m in _registry(args).merchants():
        print(f"{m.merchant_id}  {m.name:30s} mcc {m.mcc} rate {m.rate_bp} bp  {m.status}")
    return 0


def _cmd_merchant_qr(args) -> int:
    """Issue (or show, rotate, revoke) the merchant's static aggregated code and print it."""
    from acquirer.registry import RegistryError
    from acquirer.static_codes import StaticCodeError, StaticCodes
    from acquirer.wallets.customer_cli import render_png, render_text

    codes = StaticCodes(_state(args) / "static_codes.db", _hsm(args), _registry(args))
    try:
        if args.revoke:
            code = codes.revoke(args.merchant_id, args.reason or "")
            print(f"static code {code.serial} of merchant {code.merchant_id} revoked: it takes no more payments")
            return 0
        code = codes.issue(args.merchant_id, max_amount=args.max_amount, rotate=args.rotate)
        url = codes.url(code, args.base_url or "")
    except (RegistryError, StaticCodeError) as exc:
        return _fail(str(exc))
    finally:
        codes.close()
    print(render_text(url))
    print(url)
    print(f"merchant {code.merchant_id}: static code {code.serial}, up to {code.max_amount / 100:,.2f} CNY a payment,"
          f" sales booked under terminal {code.terminal_id}")
    if args.png:
        print(f"written to {render_png(url, args.png)}")
    return 0


def _cmd_merchant_lock(args, locked: bool) -> int:
    from acquirer.registry import RegistryError

    try:
        m = _registry(args).set_merchant_locked(args.merchant_id, locked, reason=args.reason or "")
    except RegistryError as exc:
        return _fail(str(exc))
    print(f"merchant {m.merchant_id} {m.status}")
    return 0


def _cmd_terminal_add(args) -> int:
    from acquirer.registry import RegistryError

    try:
        code = _registry(args).add_terminal(args.terminal_id, args.merchant)
    except RegistryError as exc:
        return _fail(str(exc))
    print(f"terminal {args.terminal_id} registered to merchant {args.merchant}")
    print(f"one-time activation code (valid 24 h, shown once): {code}")
    return 0


def _cmd_terminal_lock(args, locked: bool) -> int:
    from acquirer.registry import RegistryError

    try:
        t = _registry(args).set_locked(args.terminal_id, locked, reason=args.reason or "")
    except RegistryError as exc:
        return _fail(str(exc))
    print(f"terminal {t.terminal_id} {'locked' if t.locked else 'unlocked'}")
    return 0


def _cmd_terminal_list(args) -> int:
    for t in _registry(args).terminals(args.merchant):
        flags = "LOCKED" if t.locked else ""
        print(f"{t.terminal_id}  merchant {t.merchant_id}  {t.status.value:10s} device {t.device_id or '-':12s} {flags}")
    return 0


def _cmd_measurement_allow(args) -> int:
    try:
        value = bytes.fromhex(args.value)
    except ValueError:
        return _fail("measurement must be 64 hex digits (an SM3 digest)")
    if len(value) != 32:
        return _fail("measurement must be 64 hex digits (an SM3 digest)")
    _registry(args).allow_measurement(value, args.label)
    print(f"measurement {args.value[:16]}... allowed ({args.label})")
    return 0


def _cmd_hsm_list(args: argparse.Namespace) -> int:
    hsm = _hsm(args)
    for name, key in sorted(hsm.describe().items()):
        print(f"{name:40s} {key}")
    return 0


def _cmd_audit(args) -> int:
    import time

    for seq, at, actor, action, subject, details in _registry(args).audit_log(args.subject):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
        print(f"{seq:6d} {when} {actor:10s} {action:26s} {subject:16s} {details}")
    return 0


def _cmd_serve(args) -> int:
    import asyncio
    import logging
    import signal

    from acquirer.service import HostService

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def run() -> None:
        service = HostService(_state(args), args.host, args.port, metrics_port=args.metrics_port,
                              static_qr_port=args.static_qr_port, static_qr_url=args.static_qr_url or "",
                              qr_wait=args.qr_wait, face_liveness=args.face_liveness == "on",
                              ledger_process=args.ledger_writer == "process",
                              issuer_process=args.issuer == "process", issuer_answer_every=args.issuer_answer_every,
                              ledger_groups=args.ledger_groups)
        await service.start()
        print(f"acquirer host listening on {args.host}:{service.port}"
              + (f", metrics on :{service.metrics_port}" if service.metrics_port else ""), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("acquirer host: finishing in-flight transactions", flush=True)
        await service.stop()
        service.close_stores()

    if args.loop == "uvloop":  # libuv's loop: the same asyncio API, about half the CPU per request in streams
        import uvloop

        uvloop.run(run())
    else:
        asyncio.run(run())
    return 0


def _cmd_stats(args) -> int:
    import urllib.request

    try:
        text = urllib.request.urlopen(f"http://{args.host}:{args.metrics_port}/metrics", timeout=5).read().decode()
    except OSError as exc:
        return _fail(f"no metrics at {args.host}:{args.metrics_port} ({exc}); is `acquirer serve` running?")
    codes, buckets, count, tps = {}, [], 0, 0.0
    for line in text.splitlines():
        if line.startswith("acquirer_responses_total{"):
            code = line.split('"')[1]
            codes[code] = int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("acquirer_latency_ms_bucket{"):
            buckets.append((line.split('"')[1], int(float(line.rsplit(" ", 1)[1]))))
        elif line.startswith("acquirer_latency_ms_count"):
            count = int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("acquirer_tps"):
            tps = float(line.rsplit(" ", 1)[1])
    from acquirer.protocol import ResponseCode

    print(f"responses: {count}   average TPS since start: {tps:.1f}")
    for code, n in sorted(codes.items(), key=lambda kv: -kv[1]):
        meaning = ResponseCode(code).meaning if code in ResponseCode._value2member_map_ else code
        print(f"  {code:12s} {n:8d}  {meaning}")
    print("latency (ms, cumulative):")
    for le, n in buckets:
        print(f"  <= {le:>5s}  {n:8d}")
    return 0


def _cmd_report(args) -> int:
    import datetime as dt

    from acquirer.ledger import MerchantRate, SQLiteLedger

    reg = _registry(args)
    try:
        m = reg.merchant(args.merchant_id)
    except Exception as exc:
        return _fail(str(exc))
    ledger = SQLiteLedger(_state(args) / "ledger.db")
    day = dt.date.fromisoformat(args.day) if args.day else dt.date.today()
    report = ledger.merchant_report(m.merchant_id, day, MerchantRate(m.rate_bp, m.fixed_fee))
    print(f"settlement report for {m.merchant_id} {m.name} on {day} (rate {m.rate_bp} bp + {m.fixed_fee} fen)")
    print(f"{'channel':8s} {'sales':>6s} {'amount':>12s} {'refunds':>8s} {'amount':>12s} {'fee':>9s} {'net':>12s}")
    for row in (*report.rows, report.total):
        name = row.channel.name.lower() if row.channel else "total"
        print(f"{name:8s} {row.sale_count:6d} {row.sale_amount / 100:12.2f} {row.refund_count:8d} "
              f"{row.refund_amount / 100:12.2f} {row.fee / 100:9.2f} {row.net / 100:12.2f}")
    for hold in _risk_holds(args, m.merchant_id):
        what = "MERCHANT FROZEN" if hold.kind == "freeze" else "PAYOUT HELD"
        print(f"{what} by risk rule {hold.rule_id} (transaction {hold.txn_id}) since "
              f"{dt.datetime.fromtimestamp(hold.at):%Y-%m-%d %H:%M}: the net is not paid out until "
              f"`acquirer risk release {m.merchant_id} --kind {hold.kind}`")
    return 0


def _risk_holds(args, merchant_id: str) -> list:
    """The risk engine's holds and freezes in force for a merchant (settlement obeys them)."""
    from acquirer.risk import DecisionStore

    path = _state(args) / "risk.db"
    if not path.exists():
        return []
    store = DecisionStore(path)
    try:
        return [h for h in store.holds() if h.merchant_id == merchant_id]
    finally:
        store.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="acquirer", description="Acquirer host")
    parser.add_argument("--state", default=DEFAULT_STATE, help=f"state directory (default {DEFAULT_STATE})")
    sub = parser.add_subparsers(dest="command", required=True)

    merchant = sub.add_parser("merchant", help="merchants").add_subparsers(dest="merchant_command", required=True)
    p = merchant.add_parser("add", help="add a merchant")
    p.add_argument("merchant_id", help="15 letters or digits")
    p.add_argument("name")
    p.add_argument("--mcc", default="5411")
    p.add_argument("--rate-bp", type=int, default=38, help="fee rate in basis points (38 = 0.38%%)")
    p.add_argument("--fixed-fee", type=int, default=0, help="fixed fee per transaction, fen")
    p.add_argument("--lat", type=float)
    p.add_argument("--lon", type=float)
    p.add_argument("--radius", type=float, default=500.0, help="fence radius in metres")
    p.add_argument("--mobile", action="store_true", help="mobile merchant (wider fence)")
    p.set_defaults(func=_cmd_merchant_add)
    merchant.add_parser("list").set_defaults(func=_cmd_merchant_list)
    p = merchant.add_parser("qr", help="the merchant's static aggregated QR code: issue, print, rotate, revoke")
    p.add_argument("merchant_id")
    p.add_argument("--png", help="also write the code to this PNG file")
    p.add_argument("--rotate", action="store_true", help="issue a new code; the old one stops working")
    p.add_argument("--revoke", action="store_true", help="revoke the current code (no new one)")
    p.add_argument("--reason")
    p.add_argument("--max-amount", type=int, help="largest payment through the code, fen (default 5000000)")
    p.add_argument("--base-url", help="the static-code site's public URL (default: what the host serves)")
    p.set_defaults(func=_cmd_merchant_qr)
    for name, locked in (("lock", True), ("unlock", False)):
        p = merchant.add_parser(name, help=f"{name} a merchant (a locked merchant's static code takes no payments)")
        p.add_argument("merchant_id")
        p.add_argument("--reason")
        p.set_defaults(func=lambda a, locked=locked: _cmd_merchant_lock(a, locked))

    terminal = sub.add_parser("terminal", help="terminals").add_subparsers(dest="terminal_command", required=True)
    p = terminal.add_parser("add", help="register a terminal and print its one-time activation code")
    p.add_argument("terminal_id", help="8 letters or digits")
    p.add_argument("--merchant", required=True)
    p.set_defaults(func=_cmd_terminal_add)
    for name, locked in (("lock", True), ("unlock", False)):
        p = terminal.add_parser(name, help=f"{name} a terminal (a locked terminal is refused everything)")
        p.add_argument("terminal_id")
        p.add_argument("--reason")
        p.set_defaults(func=lambda a, locked=locked: _cmd_terminal_lock(a, locked))
    p = terminal.add_parser("list")
    p.add_argument("--merchant")
    p.set_defaults(func=_cmd_terminal_list)

    p = sub.add_parser("measurement", help="allowed terminal software measurements").add_subparsers(
        dest="m_command", required=True).add_parser("allow", help="allow an SM3 measurement at sign-on")
    p.add_argument("value")
    p.add_argument("--label", default="terminal build")
    p.set_defaults(func=_cmd_measurement_allow)

    hsm = sub.add_parser("hsm", help="the host security module's key store").add_subparsers(
        dest="hsm_command", required=True)
    hsm.add_parser("list", help="keys with usage, version and check value (never key bytes)").set_defaults(
        func=_cmd_hsm_list)

    p = sub.add_parser("serve", help="run the host (TCP) on this state directory until SIGINT/SIGTERM")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5858)
    p.add_argument("--metrics-port", type=int, default=9858, help="Prometheus text at /metrics (0: off)")
    p.add_argument("--qr-wait", type=float, default=8.0,
                   help="seconds the host holds a terminal's wait for a merchant QR payment (default 8)")
    p.add_argument("--face-liveness", choices=("on", "off"), default="on",
                   help="off accepts face templates without the liveness check (the demo's still photos)")
    p.add_argument("--static-qr-port", type=int, default=8858,
                   help="the static-code site (served when wallets are configured; 0: any free port)")
    p.add_argument("--static-qr-url", help="its public URL, if not http://HOST:PORT (printed codes hold it)")
    add_process_options(p)
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("stats", help="response codes, latency histogram and TPS of a running host")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--metrics-port", type=int, default=9858)
    p.set_defaults(func=_cmd_stats)

    p = sub.add_parser("report", help="a merchant's settlement report for a day (count, amounts, fees)")
    p.add_argument("merchant_id")
    p.add_argument("--day", help="YYYY-MM-DD (default today, UTC+8 business day)")
    p.set_defaults(func=_cmd_report)

    from acquirer.wallets import cli as wallets_cli

    wallets_cli.register(sub)
    wallets_cli.register_channel(sub)

    from acquirer.face import cli as face_cli
    from acquirer.fence import cli as fence_cli
    from acquirer.risk import cli as risk_cli

    face_cli.register(sub)
    fence_cli.register(sub)
    risk_cli.register(sub)

    p = sub.add_parser("audit", help="the audit log of administrative actions")
    p.add_argument("--subject")
    p.set_defaults(func=_cmd_audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
