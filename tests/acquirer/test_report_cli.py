"""`acquirer report`: the settlement report obeys the risk engine's holds and freezes."""
from __future__ import annotations

import time

from acquirer.cli import main
from acquirer.registry import Registry
from acquirer.risk import DecisionStore

MID = "898440358120077"


def test_a_held_merchant_s_report_says_the_payout_is_held_until_released(tmp_path, capsys):
    reg = Registry(tmp_path / "registry.db")
    reg.add_merchant(MID, "Night shop")
    reg.close()
    assert main(["--state", str(tmp_path), "report", MID]) == 0
    assert "PAYOUT HELD" not in capsys.readouterr().out

    store = DecisionStore(tmp_path / "risk.db")
    store.place_hold(MID, "hold", "night-large-amount", "T0000001:000001:000042", time.time())
    store.close()
    assert main(["--state", str(tmp_path), "report", MID]) == 0
    out = capsys.readouterr().out
    assert "PAYOUT HELD by risk rule night-large-amount (transaction T0000001:000001:000042)" in out
    assert f"acquirer risk release {MID} --kind hold" in out

    assert main(["--state", str(tmp_path), "risk", "release", MID, "--kind", "hold"]) == 0
    capsys.readouterr()
    assert main(["--state", str(tmp_path), "report", MID]) == 0
    assert "PAYOUT HELD" not in capsys.readouterr().out
