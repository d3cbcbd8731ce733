"""Location fencing at the host: where each terminal may be used, and the check of its
signed location reports (cases 32 and 69: "移机" — terminals carried away and used elsewhere).

    store = FenceStore("fence.db")
    fences = FenceMonitor(store)                        # policy per risk grade: FencePolicy
    fences.register_site(terminal_id, merchant)         # at activation, from the merchant record
    verdict = fences.check(terminal, report_bytes, txn_id=...)   # DF03 of a request
    verdict.blocks  -> decline with G1; an alert is recorded

Layout: `report` (the wire contract both sides import), `geometry` (fences, geodesic
offsets), `policy` (per risk grade), `store` (SQLite), `monitor` (the checks), `cli`.
Details: docs/fence.md.
"""
from .geometry import Fence, Placement, distance_m, place
from .monitor import INSIDE, MISSING, OUTSIDE, REFUSED, UNFENCED, FenceMonitor, FenceVerdict
from .policy import DEFAULT_POLICY, FencePolicy, GradePolicy, report_interval_s
from .report import FixSource, LocationReport, LocationReportError, build, parse, verify
from .store import Alert, FenceStore, ReviewEntry

__all__ = [
    "Fence", "Placement", "distance_m", "place",
    "INSIDE", "MISSING", "OUTSIDE", "REFUSED", "UNFENCED", "FenceMonitor", "FenceVerdict",
    "DEFAULT_POLICY", "FencePolicy", "GradePolicy", "report_interval_s",
    "FixSource", "LocationReport", "LocationReportError", "build", "parse", "verify",
    "Alert", "FenceStore", "ReviewEntry",
]
