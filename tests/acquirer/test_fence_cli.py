"""`acquirer alerts` and `acquirer fence` over a real state directory."""
from __future__ import annotations

import argparse
import time

from acquirer.fence import FenceStore, cli
from acquirer.registry import Registry
from tests.acquirer.test_fence import MERCHANT, SITE


def run(state, *argv) -> int:
    parser = argparse.ArgumentParser(prog="acquirer")
    parser.add_argument("--state")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["--state", str(state), *argv])
    return args.func(args)


def test_alerts_lists_alerts_and_the_merchants_for_review(tmp_path, capsys):
    store = FenceStore(tmp_path / "fence.db")
    now = time.time()
    for i in range(3):
        store.add_alert(now - 60 * i, "00000001", MERCHANT, "outside", f"terminal {700 + i} m outside its fence",
                        f"00000001:000001:00000{i}")
    store.add_alert(now, "00000002", MERCHANT, "replay", "report counter 1 already used (last 4): replayed")
    store.add_alert(now, "00000009", "898440358120009", "missing", "no signed location attached: fix required")
    store.add_alert(now - 30 * 86400, "00000009", "898440358120009", "outside", "an old one")
    store.close()
    assert run(tmp_path, "alerts") == 0
    out = capsys.readouterr().out
    assert "5 alert(s) since" in out and "replayed" in out and "an old one" not in out
    assert "merchants for review (3 or more alerts in 7 days): 1" in out
    assert f"  {MERCHANT}  4 alerts on 2 terminal(s)" in out and "outside x3, replay x1" in out
    assert run(tmp_path, "alerts", "--review", "--threshold", "1", "--days", "60") == 0
    out = capsys.readouterr().out
    assert "alert(s) since" not in out and "898440358120009  2 alerts on 1 terminal(s)" in out
    assert run(tmp_path, "alerts", "--terminal", "00000002") == 0
    assert "1 alert(s)" in capsys.readouterr().out


def test_fence_set_and_show(tmp_path, capsys):
    registry = Registry(tmp_path / "registry.db")
    registry.add_merchant(MERCHANT, "Corner shop", latitude=SITE[0], longitude=SITE[1], radius_m=500)
    registry.add_terminal("00000001", MERCHANT)
    registry.close()
    assert run(tmp_path, "fence", "show", "00000001") == 2
    assert run(tmp_path, "fence", "set", "00000001", "--radius", "800",
               "--corridor", "31.2304,121.4737;31.30,121.50", "--width", "300", "--cells", "460-00-1-2") == 0
    assert "fenced: site 31.230400,121.473700, radius 800 m" in capsys.readouterr().out
    assert run(tmp_path, "fence", "show", "00000001") == 0
    out = capsys.readouterr().out
    assert "radius 800 m" in out and "corridor of 2 points, 300 m wide" in out and "reports every 600 s" in out
    assert run(tmp_path, "fence", "set", "00000001", "--polygon", "31.2,north") == 2
    assert "--polygon: expected" in capsys.readouterr().err
    assert run(tmp_path, "fence", "set", "0000000X") == 2
