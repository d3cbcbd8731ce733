"""The TEE's rule for giving its last signed location report again (payments only):
same terminal and source, no older than asked, not moved beyond the fix's error (25 m at
most), same cells. Real SM2 signatures and the sealed counter store."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from geographiclib.geodesic import Geodesic

from acquirer.fence.report import parse
from hardware.location import Fix
from terminal.secure.keystore import SecureKeys
from terminal.secure.sealed import SealedStore

SITE = (31.2304, 121.4737)
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


def fix(metres: float = 0.0, after_s: float = 0.0, accuracy_m: float = 10.0, cells=()) -> Fix:
    g = Geodesic.WGS84.Direct(SITE[0], SITE[1], 90.0, metres)
    return Fix(g["lat2"], g["lon2"], accuracy_m, "test", T0 + timedelta(seconds=after_s), cell_ids=tuple(cells))


def test_a_payment_gets_the_last_report_again_only_while_young_and_unmoved(tmp_path):
    keys = SecureKeys(SealedStore(tmp_path / "tee"))
    first = keys.location_report("T0000001", fix(), "gnss", reuse_s=300)
    assert keys.location_report("T0000001", fix(8, 120), "gnss", reuse_s=300) == first  # wobble within 10 m
    assert keys.location_report("T0000001", fix(0, 301), "gnss", reuse_s=300) != first  # too old to stand for now
    latest = keys.location_report("T0000001", fix(0, 302), "gnss", reuse_s=300)
    assert keys.location_report("T0000001", fix(12, 303), "gnss", reuse_s=300) != latest  # moved beyond its error
    wide = keys.location_report("T0000001", fix(200, 304, accuracy_m=100), "gnss", reuse_s=300)
    assert keys.location_report("T0000001", fix(220, 305, accuracy_m=100), "gnss", reuse_s=300) == wide
    assert keys.location_report("T0000001", fix(230, 306, accuracy_m=100), "gnss", reuse_s=300) != wide  # 25 m cap
    counters = [parse(keys.location_report("T0000001", fix(0, 307), "gnss"))[0].counter for _ in range(2)]
    assert counters[1] == counters[0] + 1  # no reuse asked (periodic reports): always new


def test_another_terminal_source_cell_or_an_older_fix_gets_a_new_report(tmp_path):
    keys = SecureKeys(SealedStore(tmp_path / "tee"))
    first = keys.location_report("T0000001", fix(cells=["460-00-1-1"]), "gnss", reuse_s=300)
    others = [keys.location_report("T0000002", fix(cells=["460-00-1-1"]), "gnss", reuse_s=300),
              keys.location_report("T0000001", fix(cells=["460-00-1-1"]), "fixed", reuse_s=300),
              keys.location_report("T0000001", fix(cells=["460-00-1-2"]), "gnss", reuse_s=300)]
    assert first not in others and len(set(others)) == 3
    latest = others[-1]
    assert keys.location_report("T0000001", fix(after_s=-1, cells=["460-00-1-2"]), "gnss", reuse_s=300) != latest


def test_relative_paths_given_to_the_tee_are_found_from_its_own_directory(tmp_path, monkeypatch):
    """The TEE runs in its state directory: `file:var/demo/position.json` (the demo's) is
    handed to it as an absolute path; other kinds of source are passed on as they are."""
    from hardware.location.spec import anchored
    from terminal.tee.supervisor import TeeSupervisor

    monkeypatch.chdir(tmp_path)
    assert anchored("file:var/demo/position.json") == f"file:{tmp_path}/var/demo/position.json"
    assert anchored("fixed:31.2,121.4") == "fixed:31.2,121.4" and anchored("gpsd") == "gpsd"
    command = TeeSupervisor("tee", ca_keys="cards/ca_keys.toml", location="file:position.json")._command(3)
    assert command[command.index("--location") + 1] == f"file:{tmp_path}/position.json"
    assert command[command.index("--state") + 1] == f"{tmp_path}/tee"
    assert command[command.index("--ca-keys") + 1] == f"{tmp_path}/cards/ca_keys.toml"
