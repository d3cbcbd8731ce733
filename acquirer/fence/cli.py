"""`acquirer alerts` (location alerts, merchants for review) and `acquirer fence` (show, set).

Wire them into the `acquirer` parser with `register(sub)`; they read the host's state
directory (`--state`): fence.db, and registry.db for `fence set`.
"""
from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

from .monitor import FenceMonitor
from .store import FenceStore

_CST = dt.timezone(dt.timedelta(hours=8), "CST")


def register(sub) -> None:
    p = sub.add_parser("alerts", help="location alerts, and merchants with repeated alerts for review")
    p.add_argument("--merchant")
    p.add_argument("--terminal")
    p.add_argument("--days", type=float, default=7.0, help="look back this many days (default 7)")
    p.add_argument("--limit", type=int, default=50, help="alerts listed at most (default 50)")
    p.add_argument("--threshold", type=int, default=3, help="alerts that put a merchant up for review (default 3)")
    p.add_argument("--review", action="store_true", help="only the merchants for review")
    p.set_defaults(func=_cmd_alerts)

    fence = sub.add_parser("fence", help="terminal location fences").add_subparsers(dest="fence_command",
                                                                                   required=True)
    p = fence.add_parser("show", help="a terminal's fence and its report interval")
    p.add_argument("terminal_id")
    p.set_defaults(func=_cmd_show)
    p = fence.add_parser("set", help="(re)fence a terminal from its merchant's record, with overrides")
    p.add_argument("terminal_id")
    p.add_argument("--lat", type=float)
    p.add_argument("--lon", type=float)
    p.add_argument("--radius", type=float, help="metres (default: the merchant's, wider if mobile)")
    p.add_argument("--polygon", help='"lat,lon;lat,lon;lat,lon..." an area the terminal may also be used in')
    p.add_argument("--corridor", help='"lat,lon;lat,lon..." a route a mobile seller follows')
    p.add_argument("--width", type=float, help="corridor width in metres")
    p.add_argument("--cells", help='registered cell ids, comma-separated ("460-00-LAC-CID")')
    p.set_defaults(func=_cmd_set)


def _fail(message: str) -> int:
    print(f"acquirer: {message}", file=sys.stderr)
    return 2


def _when(at: float) -> str:
    return dt.datetime.fromtimestamp(at, _CST).strftime("%Y-%m-%d %H:%M")


def _points(text: str | None, what: str) -> tuple[tuple[float, float], ...]:
    if not text:
        return ()
    try:
        return tuple((float(a), float(b)) for a, b in (p.split(",") for p in text.split(";") if p.strip()))
    except ValueError:
        raise ValueError(f"{what}: expected \"lat,lon;lat,lon;...\" in degrees") from None


def _cmd_alerts(args) -> int:
    store = FenceStore(Path(args.state) / "fence.db")
    try:
        since = time.time() - args.days * 86400
        if not args.review:
            alerts = store.alerts(merchant_id=args.merchant, terminal_id=args.terminal, since=since,
                                  limit=args.limit)
            print(f"{len(alerts)} alert(s) since {_when(since)}" + (" (newest first)" if alerts else ""))
            for a in alerts:
                txn = f"  txn {a.txn_id}" if a.txn_id else "  (periodic report)"
                print(f"{a.seq:6d} {_when(a.at)} {a.terminal_id} {a.merchant_id} {a.kind:13s} {a.reason}{txn}")
        review = store.for_review(since, args.threshold)
        print(f"merchants for review ({args.threshold} or more alerts in {args.days:g} days): {len(review)}")
        for r in review:
            kinds = ", ".join(f"{k} x{n}" for k, n in sorted(r.kinds.items(), key=lambda kv: -kv[1]))
            print(f"  {r.merchant_id}  {r.alerts} alerts on {r.terminals} terminal(s), last {_when(r.last_at)}: "
                  f"{kinds}")
    finally:
        store.close()
    return 0


def _cmd_show(args) -> int:
    store = FenceStore(Path(args.state) / "fence.db")
    try:
        monitor = FenceMonitor(store)
        f = monitor.fence(args.terminal_id)
        if f is None:
            return _fail(f"terminal {args.terminal_id} has no fence")
        site = f"{f.latitude:.6f},{f.longitude:.6f}" if f.has_site else "pending (first fix)"
        print(f"terminal {f.terminal_id}  merchant {f.merchant_id}  grade {f.risk_grade}"
              f"{'  mobile' if f.mobile else ''}")
        print(f"  site {site}  radius {f.radius_m:.0f} m  registered {_when(f.registered_at)} by {f.registered_by}")
        if f.polygon:
            print(f"  polygon of {len(f.polygon)} vertices")
        if f.corridor:
            print(f"  corridor of {len(f.corridor)} points, {f.corridor_width_m:.0f} m wide")
        if f.cell_ids:
            print(f"  cells {', '.join(sorted(f.cell_ids))}")
        print(f"  reports every {monitor.report_interval_s(f.terminal_id)} s")
        last = store.last_fix(f.terminal_id)
        if last is not None:
            print(f"  last counter {last.counter}" + (f", last fix {last.latitude:.6f},{last.longitude:.6f}"
                                                      if last.latitude is not None else ""))
    finally:
        store.close()
    return 0


def _cmd_set(args) -> int:
    from acquirer.registry import Registry, RegistryError

    state = Path(args.state)
    registry, store = Registry(state / "registry.db"), FenceStore(state / "fence.db")
    try:
        terminal = registry.terminal(args.terminal_id)
        merchant = registry.merchant(terminal.merchant_id)
        fence = FenceMonitor(store).register_site(
            terminal.terminal_id, merchant, latitude=args.lat, longitude=args.lon, radius_m=args.radius,
            polygon=_points(args.polygon, "--polygon"), corridor=_points(args.corridor, "--corridor"),
            corridor_width_m=args.width, cell_ids=tuple(c.strip() for c in (args.cells or "").split(",")
                                                        if c.strip()), actor="operator")
    except (RegistryError, ValueError) as exc:
        return _fail(str(exc))
    finally:
        store.close()
        registry.close()
    site = f"{fence.latitude:.6f},{fence.longitude:.6f}" if fence.has_site else "pending (first fix)"
    print(f"terminal {fence.terminal_id} fenced: site {site}, radius {fence.radius_m:.0f} m")
    return 0
