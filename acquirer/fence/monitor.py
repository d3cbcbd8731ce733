"""The host's location check: is this terminal where it was deployed, by its own signed word?

For every report (attached to a transaction, or sent periodically) the host verifies,
in this order, and stops at the first failure:

  1. the report names the requesting terminal and its bound device (another
     terminal's report is refused), and its SM2 signature verifies under the device
     key bound at activation (a forged one is refused);
  2. its counter is above every counter seen from this terminal (a replay is refused);
  3. the fix is fresh for the merchant's risk grade, and not dated in the future;
  4. the move from the last plausible fix is possible (no jump faster than
     `max_speed`, after both fixes' error bars);
  5. the geodesic offset from the fence: outside it is a violation.

The signature check (1) is SM2, about 0.7 ms of CPU and most of a sale's cost at the
host. `preverify` does it where the caller likes (the host's pipeline runs it on a
worker thread: OpenSSL releases the GIL, so the other core does it while the event
loop serves other requests) and leaves the verified report for `check`, which then
skips the signature; anything it did not verify (or refused) `check` verifies itself,
so the verdict is the same either way. Parsed device keys are kept (parsing one costs
a point decompression, about 0.2 ms).

Every refusal, every violation and every missing-but-required report is an alert;
`FenceStore.for_review` lists the merchants who collect them. A report that passes 1
advances the terminal's counter even if a later check refuses it: the device did sign
it, so it must never be accepted again.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from keys.errors import InvalidKey
from keys.hashes import sm3
from keys.sm2 import SM2PublicKey

from .geometry import Fence, Point, distance_m, place
from .policy import DEFAULT_POLICY, FencePolicy
from .report import LocationReport, LocationReportError, parse, verify
from .store import FenceStore

log = logging.getLogger("acquirer.fence")

INSIDE, OUTSIDE, UNFENCED, MISSING, REFUSED = "inside", "outside", "unfenced", "missing", "refused"
_KEPT = 4096  # parsed device keys, and pre-verified reports waiting for their check


@dataclass(slots=True)  # not frozen: made on every sale, and a frozen __init__ costs ~1.5 us more here
class FenceVerdict:
    status: str  # inside, outside, unfenced, missing, refused
    reason: str  # short, for the cashier (field 44) and the alert
    required: bool = False  # a fix was required for this terminal
    refusal: str = ""  # for REFUSED: replay, forged, foreign, speed, stale, future, malformed, no-device-key
    report: LocationReport | None = None
    distance_m: float | None = None  # from the registered site
    offset_m: float | None = None  # beyond the fence; <= 0 inside
    fix_age_s: float | None = None
    cells: str = "unknown"  # match, mismatch, unknown (no registered cells or none reported)
    alert_id: int | None = None

    @property
    def blocks(self) -> bool:
        return self.status in (OUTSIDE, REFUSED) or (self.status == MISSING and self.required)


class FenceMonitor:
    def __init__(self, store: FenceStore, policy: FencePolicy = DEFAULT_POLICY, clock=time.time,
                 adopt_first_fix: bool = True):
        self.store = store
        self.policy = policy
        self.clock = clock
        # case 32: staff activate the terminal on site, so its first signed fix is the site
        self.adopt_first_fix = adopt_first_fix
        self._keys: OrderedDict[bytes, SM2PublicKey] = OrderedDict()
        self._preverified: OrderedDict[tuple, LocationReport] = OrderedDict()
        self._latest: dict[str, tuple[bytes, LocationReport]] = {}  # terminal -> its last accepted report
        self._placed: dict[str, tuple] = {}  # terminal -> its last report placed against its fence (`_place`)
        self._terms: dict[tuple[str, bool], tuple[bool, int]] = {}  # `_grade_terms`, for `_terms_of`
        self._terms_of: FencePolicy | None = None
        self._again: dict[str, tuple] = {}  # terminal -> what its latest report attached again was judged on
        self._lock = threading.Lock()  # preverify runs on worker threads

    # --- registration ---------------------------------------------------------------
    def register_site(self, terminal_id: str, merchant, *, latitude: float | None = None,
                      longitude: float | None = None, radius_m: float | None = None, polygon: tuple[Point, ...] = (),
                      corridor: tuple[Point, ...] = (), corridor_width_m: float | None = None,
                      cell_ids: tuple[str, ...] = (), actor: str = "activation") -> Fence:
        """Fence a terminal from its merchant's record (a registry `Merchant`), at activation.

        Explicit arguments override the record. A merchant without coordinates gives a
        fence waiting for its site: the terminal's first accepted fix becomes the site
        when `adopt_first_fix` is on.
        """
        mobile = bool(merchant.mobile)
        lat = merchant.latitude if latitude is None else latitude
        lon = merchant.longitude if longitude is None else longitude
        radius = radius_m if radius_m is not None else self.policy.radius_m(merchant.radius_m, mobile)
        width = corridor_width_m if corridor_width_m is not None else (
            self.policy.corridor_width_m if corridor else 0.0)
        fence = Fence(terminal_id, merchant.merchant_id, lat, lon, float(radius), tuple(polygon), tuple(corridor),
                      float(width), frozenset(cell_ids), mobile, merchant.risk_grade, self.clock(), actor)
        self.store.save_fence(fence, actor, fence.registered_at)
        log.info("fence of %s registered by %s: site %s, radius %.0f m%s%s", terminal_id, actor,
                 (lat, lon) if lat is not None else "pending", radius, ", polygon" if polygon else "",
                 ", corridor" if corridor else "")
        return fence

    def fence(self, terminal_id: str) -> Fence | None:
        return self.store.fence(terminal_id)

    def report_interval_s(self, terminal_id: str, merchant=None) -> int:
        """Seconds between signed reports this terminal must keep to."""
        grade, mobile = self._grade(self.store.fence(terminal_id), merchant)
        return self.policy.report_interval_s(grade, mobile)

    def _grade(self, fence: Fence | None, merchant) -> tuple[str, bool]:
        if merchant is not None:
            return merchant.risk_grade, bool(merchant.mobile)
        if fence is not None:
            return fence.risk_grade, fence.mobile
        return self.policy.unknown_grade, False

    # --- the check ------------------------------------------------------------------
    def check(self, terminal, report: bytes | None, *, merchant=None, txn_id: str = "",
              required: bool | None = None) -> FenceVerdict:
        """Judge `report` (None: none attached) for a registry `Terminal`.

        `txn_id` names the transaction in alerts; leave it empty for a periodic report.
        `required` overrides the policy's "a fenced terminal must attach a fix".
        """
        terminal_id = terminal.terminal_id
        if txn_id and report is not None:
            again = self._again.get(terminal_id)
            # the verdict the full check gave this report last time, if everything it was judged
            # on is still the same object (all frozen; see `_remember`): only its age is new
            if again is not None and again[0] == report and again[1] is terminal and again[2] is merchant \
                    and again[3] is required and again[4] is self.policy and again[5] is self.store.fence(terminal_id) \
                    and again[6] is self.store.last_fix(terminal_id) and again[7] is self._latest.get(terminal_id):
                rep = again[8]
                age = self.clock() - rep.fix_time_ms / 1000.0  # `rep.age_s(now)`
                if again[9] <= age <= again[10]:  # `_fresh` would pass it
                    return FenceVerdict(INSIDE, "inside the fence", again[11], "", rep, again[12], again[13], age,
                                        again[14])
        now = self.clock()
        fence = self.store.fence(terminal_id)
        grade, mobile = self._grade(fence, merchant)
        merchant_id = fence.merchant_id if fence else terminal.merchant_id
        fix_required, max_age = self._grade_terms(grade, mobile)
        required_arg = required
        required = fence is not None and (fix_required if required is None else required)
        names = (now, terminal_id, merchant_id, txn_id)  # what this check's alerts record besides their own
        if report is None:
            if fence is None:
                return FenceVerdict(UNFENCED, "no fence registered")
            if not required:
                return FenceVerdict(MISSING, "no signed location attached")
            reason = "no signed location attached: fix required"
            return FenceVerdict(MISSING, reason, True, alert_id=self._alert(names, "missing", reason))
        try:
            rep = reused = self.current(terminal, report) if txn_id else None
            if rep is not None:  # the latest accepted report, attached again: judged again, not taken again
                age = rep.age_s(now)
                self._fresh(rep, age, max_age, terminal_id, now)
            else:
                rep = self._verified(terminal, report)
                last = self.store.last_fix(terminal_id)
                if last is not None and rep.counter <= last.counter:
                    raise LocationReportError(
                        "replay", f"report counter {rep.counter} already used (last {last.counter}): replayed")
                age = rep.age_s(now)
                self._fresh(rep, age, max_age, terminal_id, now)
                plausible = self._plausible(rep, last, mobile)
                if not self.store.advance(terminal_id, rep.counter, now, fix=(
                        rep.fix_time_ms, rep.latitude, rep.longitude, rep.accuracy_m) if plausible else None,
                        digest=sm3(report)):
                    raise LocationReportError("replay", f"report counter {rep.counter} already used: replayed")
                self._latest[terminal_id] = (report, rep)
        except LocationReportError as exc:
            log.warning("location report of %s refused (%s): %s", terminal_id, exc.reason, exc)
            return FenceVerdict(REFUSED, str(exc), required, exc.reason,
                                alert_id=self._alert(names, exc.reason, str(exc)))
        if fence is None:
            return FenceVerdict(UNFENCED, "no fence registered", report=rep, fix_age_s=age)
        if not fence.has_area:
            if not self.adopt_first_fix:
                return FenceVerdict(UNFENCED, "fence has no site yet", required, report=rep, fix_age_s=age)
            fence = self._adopt(fence, rep)
        verdict = self._judge(fence, rep, age, required, names)
        if reused is not None and verdict.status == INSIDE:
            self._remember(terminal, report, merchant, required_arg, fence, rep, max_age, verdict)
        return verdict

    def _remember(self, terminal, report: bytes, merchant, required_arg, fence: Fence, rep: LocationReport,
                  max_age: int, verdict: FenceVerdict) -> None:
        """Keep what an INSIDE verdict on the latest accepted report, attached again, followed
        from, for `check`'s shortcut: a till standing in its shop attaches that report to sale
        after sale, and each time the full check reads the same fence, last fix, kept report,
        merchant grade and policy (frozen objects, compared by identity: a changed one is a new
        object, and the full check runs again) to reach the same verdict; only the fix's age
        moves, and the shortcut checks it against the same limits as `_fresh`. Refusals,
        violations and missing reports always take the full check (they write alerts)."""
        terminal_id = terminal.terminal_id
        self._again[terminal_id] = (
            report, terminal, merchant, required_arg, self.policy, fence, self.store.last_fix(terminal_id),
            self._latest.get(terminal_id), rep, -self.policy.max_future_s, max_age, verdict.required,
            verdict.distance_m, verdict.offset_m, verdict.cells)

    def _grade_terms(self, grade: str, mobile: bool) -> tuple[bool, int]:
        """(a fix is required, the oldest usable fix in s) for a grade: the policy's answers,
        kept per policy object (it is frozen), since a sale asks for them every time."""
        policy = self.policy
        if policy is not self._terms_of:
            self._terms, self._terms_of = {}, policy
        terms = self._terms.get((grade, mobile))
        if terms is None:
            terms = self._terms[grade, mobile] = (policy.require_fix(grade), policy.max_fix_age_s(grade, mobile))
        return terms

    def _alert(self, names: tuple, kind: str, reason: str, counter=None, lat=None, lon=None, distance=None,
               offset=None) -> int:
        at, terminal_id, merchant_id, txn_id = names
        return self.store.add_alert(at, terminal_id, merchant_id, kind, reason, txn_id, counter, lat, lon, distance,
                                    offset)

    def current(self, terminal, report: bytes) -> LocationReport | None:
        """The report if it is this terminal's latest accepted one (its counter is still the
        newest, and it was not refused), else None.

        A payment attaches "the latest signed fix", so a terminal that has not moved sends
        the same report with each sale until its TEE signs a new one (terminal.secure.
        keystore: at most one report interval later). That report was verified, passed
        the replay and speed checks and advanced the counter when it first came; equal
        bytes are the same signed statement, so `check` judges it again (freshness, the
        fence) without a second signature check. A periodic report is never taken twice."""
        last = self.store.last_fix(terminal.terminal_id)
        if last is None or last.report_digest is None:
            return None
        kept = self._latest.get(terminal.terminal_id)
        if kept is not None and kept[1].counter == last.counter:  # the latest accepted report is in memory
            if kept[0] != report:
                return None  # a new report (or an old one): no digest needed to say so
        else:  # not kept here (a restart, another process): the stored digest says
            if sm3(report) != last.report_digest:
                return None
            try:
                kept = (report, parse(report)[0])
            except LocationReportError:
                return None
            self._latest[terminal.terminal_id] = kept
        rep = kept[1]
        return rep if rep.device_id == (terminal.device_id or "") and rep.counter == last.counter else None

    def preverify(self, terminal, report: bytes) -> bool:
        """Check the report's signature now (any thread) so `check` need not; True if it holds.

        A refusal is not remembered: `check` verifies again and refuses with its reason."""
        try:
            rep = self._verify(terminal, report)
        except LocationReportError:
            return False
        with self._lock:
            self._preverified[self._memo_key(terminal, report)] = rep
            while len(self._preverified) > _KEPT:  # requests that never reached their check
                self._preverified.popitem(last=False)
        return True

    @staticmethod
    def _memo_key(terminal, report: bytes) -> tuple:
        # everything `verify` depended on: the same bytes under the same key, terminal and device
        return terminal.terminal_id, terminal.device_id or "", bytes(terminal.device_public_key or b""), report

    def _verified(self, terminal, report: bytes) -> LocationReport:
        with self._lock:
            rep = self._preverified.pop(self._memo_key(terminal, report), None)
        return rep if rep is not None else self._verify(terminal, report)

    def _verify(self, terminal, report: bytes) -> LocationReport:
        if not terminal.device_public_key:
            raise LocationReportError("no-device-key", "terminal has no device key bound: activate it first")
        return verify(report, self._device_key(bytes(terminal.device_public_key)), terminal_id=terminal.terminal_id,
                      device_id=terminal.device_id or "")

    def _device_key(self, raw: bytes) -> SM2PublicKey | bytes:
        with self._lock:
            key = self._keys.get(raw)
        if key is None:
            try:
                key = SM2PublicKey.from_bytes(raw)
            except InvalidKey:  # not a point: `verify` refuses the raw bytes with its own reason
                return raw
            with self._lock:
                self._keys[raw] = key
                while len(self._keys) > _KEPT:
                    self._keys.popitem(last=False)
        return key

    def _fresh(self, rep: LocationReport, age: float, limit: int, terminal_id: str, now: float) -> None:
        if age > limit or age < -self.policy.max_future_s:
            self.store.advance(terminal_id, rep.counter, now)  # signed by the device: never again
        if age > limit:
            raise LocationReportError("stale", f"fix is {age:.0f} s old (limit {limit} s)")
        if age < -self.policy.max_future_s:
            raise LocationReportError("future", f"fix is dated {-age:.0f} s ahead of the host clock")

    def _plausible(self, rep: LocationReport, last, mobile: bool) -> bool:
        """True to keep this fix as the terminal's last; raises on an impossible jump."""
        if last is None or last.latitude is None:
            return True
        moved = distance_m((last.latitude, last.longitude), (rep.latitude, rep.longitude))
        cap = self.policy.accuracy_credit_m
        beyond_error = moved - min(last.accuracy_m, cap) - min(rep.accuracy_m, cap)
        elapsed = (rep.fix_time_ms - last.fix_time_ms) / 1000.0
        limit = self.policy.max_speed_mps(mobile)
        if beyond_error > 0 and (elapsed <= 0 or beyond_error / elapsed > limit):
            self.store.advance(rep.terminal_id, rep.counter, self.clock())
            speed = "instantly" if elapsed <= 0 else f"in {elapsed:.0f} s ({moved / elapsed * 3.6:.0f} km/h)"
            raise LocationReportError(
                "speed", f"moved {moved / 1000:.1f} km {speed}, faster than {limit * 3.6:.0f} km/h")
        return elapsed >= 0  # an older fix re-signed later must not replace a newer one

    def _adopt(self, fence: Fence, rep: LocationReport) -> Fence:
        adopted = Fence(fence.terminal_id, fence.merchant_id, rep.latitude, rep.longitude, fence.radius_m,
                        fence.polygon, fence.corridor, fence.corridor_width_m, fence.cell_ids or
                        frozenset(rep.cell_ids), fence.mobile, fence.risk_grade, self.clock(), "first-fix")
        self.store.save_fence(adopted, "first-fix", adopted.registered_at)
        log.info("fence of %s: site recorded from its first fix (counter %d)", fence.terminal_id, rep.counter)
        return adopted

    def _judge(self, fence: Fence, rep: LocationReport, age: float, required: bool, names: tuple) -> FenceVerdict:
        placed = self._placed.get(fence.terminal_id)
        if placed is None or placed[0] is not fence or placed[1] is not rep or placed[2] is not self.policy:
            placed = self._placed[fence.terminal_id] = self._place(fence, rep)
        _, _, _, distance, offset, cells, outside = placed
        if not outside:
            return FenceVerdict(INSIDE, "inside the fence", required, "", rep, distance, offset, age, cells)
        alert_id = self._alert(names, "outside", outside, rep.counter, rep.latitude, rep.longitude, distance, offset)
        return FenceVerdict(OUTSIDE, outside, required, "", rep, distance, offset, age, cells, alert_id)

    def _place(self, fence: Fence, rep: LocationReport) -> tuple:
        """Where the fix lies against the fence: (fence, report, policy it was judged for, distance
        from the site, offset, cells, "" inside or why outside). Kept per terminal: the same
        report is attached to sale after sale while the terminal stands still, and every part
        of this follows from the fence, the report and the policy alone (all three frozen)."""
        where = place(fence, rep.latitude, rep.longitude)
        cells = "unknown"
        if fence.cell_ids and rep.cell_ids:
            cells = "match" if fence.cell_ids.intersection(rep.cell_ids) else "mismatch"
        outside = ""
        if not where.within(rep.accuracy_m, self.policy.accuracy_credit_m):
            site = f", {where.distance_m / 1000:.1f} km from the site" if where.distance_m is not None else ""
            outside = f"terminal {where.offset_m:.0f} m outside its fence{site}"
        return fence, rep, self.policy, where.distance_m, where.offset_m, cells, outside
