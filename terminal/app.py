"""The normal world's use cases: what the cashier UI asks for, in payment terms.

The secure world (TEE) reads cards and holds keys and PINs; the online session talks
to the host; the journal remembers what happened. Every method here blocks (UI calls
them from workers) and returns plain results with a message a cashier can act on.
"""
from __future__ import annotations

import datetime as dt
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from acquirer.protocol import ResponseCode
from .journal import Entry, Journal
from .online import HostRefused, HostUnavailable, OnlineSession, Outcome

MESSAGES = {
    "TRY_AGAIN": "Card removed too early: tap again and hold it still",
    "USE_ANOTHER_INTERFACE": "Amount above the contactless limit: insert or swipe the card, or use a QR code",
    "END_APPLICATION": "The card could not be read: try another card or payment method",
    "DECLINED": "Declined by the card",
}


@dataclass(frozen=True)
class TerminalConfig:
    terminal_id: str
    merchant_id: str
    host: str = "127.0.0.1"
    port: int = 5858
    state_dir: Path = Path("var/terminal")
    reader: str | None = None  # None: the first reader (the virtual one in the demo)
    kernel_config: str | None = None
    ca_keys: str | None = None
    timeout: float = 10.0
    location: str | None = None  # the TEE's location source (hardware/location/spec.py); None: no fix


@dataclass
class SaleResult:
    approved: bool
    code: str
    message: str
    amount: int
    channel: str = "card"
    masked: str = ""
    entry: Entry | None = None
    next_step: str = ""

    @property
    def receipt(self) -> str:
        e = self.entry
        title = "SETTLEMENT (net)" if self.channel == "batch" else ("SALE" if not e or e.kind == "sale" else e.kind.upper())
        lines = [title, f"AMOUNT  CNY {self.amount / 100:,.2f}"]
        if self.masked:
            lines.append(f"CARD    {self.masked}" if self.channel == "card" else f"PAID BY {self.masked}")
        if e:
            lines += [f"TERMINAL {e.batch}/{e.stan}", f"RRN     {e.rrn}", f"AUTH    {e.auth_code}", f"TIME    {e.when}"]
        lines.append("APPROVED" if self.approved else f"NOT APPROVED ({self.code}) {self.message}")
        return "\n".join(lines)


@dataclass
class Status:
    terminal_id: str
    merchant_id: str
    device_id: str
    tee_state: str
    check_values: dict[str, str] = field(default_factory=dict)
    host: str = ""
    batch: str = ""
    pending_reversals: int = 0
    location: str = ""  # the last location check, in words
    pending_alerts: int = 0


@dataclass(frozen=True)
class Gate:
    """May a payment start here and now? If not, what the cashier is told and does next."""

    ok: bool
    message: str = ""
    next_step: str = ""


class TerminalApp:
    def __init__(self, config: TerminalConfig, keys, session: OnlineSession, journal: Journal):
        self.config = config
        self.keys = keys  # terminal.tee.secure_world.TeeKeys (or anything with the same methods)
        self.session = session
        self.journal = journal
        self._location_state = "not checked yet"
        self._last_report = 0.0  # monotonic time of the last periodic report sent
        self._report_lock = threading.Lock()
        self._tapping = threading.Event()  # a tap wait holds the TEE: periodic reports wait for the next tick

    @classmethod
    def start(cls, config: TerminalConfig) -> "TerminalApp":
        """Spawn the TEE, open the journal and the online session."""
        from .tee.secure_world import TeeKeys
        from .tee.supervisor import TeeSupervisor

        state = Path(config.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        supervisor = TeeSupervisor(state / "tee", reader=config.reader, kernel_config=config.kernel_config,
                                   ca_keys=config.ca_keys, location=config.location).start()
        keys = TeeKeys(supervisor)
        journal_path = state / "journal.db"
        session = OnlineSession(config.host, config.port, config.terminal_id, config.merchant_id, keys, journal_path,
                                timeout=config.timeout)
        app = cls(config, keys, session, Journal(journal_path))
        session.locate = app.signed_fix
        app._supervisor = supervisor
        return app

    def close(self) -> None:
        self.session.close()
        self.journal.close()
        sup = getattr(self, "_supervisor", None)
        if sup is not None:
            self.keys.close()
            sup.stop()

    # --- status and provisioning ---------------------------------------------------
    def status(self) -> Status:
        st = self.keys.status()
        return Status(self.config.terminal_id, self.config.merchant_id, st.device_id, st.state,
                      dict(st.check_values), f"{self.config.host}:{self.config.port}", self.session.batch,
                      self.session.pending_reversals(), self._location_state, self.session.pending_alerts())

    def measurement(self) -> bytes:
        return self.keys.measurement()

    def provision(self, activation_code: str) -> None:
        self.session.activate(activation_code)
        self.session.download_keys()
        self.session.sign_on()

    def sign_on(self) -> None:
        self.session.sign_on()

    # --- location fence ----------------------------------------------------------------
    FIX_WAIT_S = 2.0  # how long a check waits for the receiver

    def _signed_report(self, for_payment: bool = False) -> bytes:
        """A report the TEE signs over a fix it reads now, no older than the host's terms
        allow (10 minutes before any terms came). Raises TeeError (NO_FIX, CANCEL).

        For a payment (and the gate before it) the TEE may give its latest report again
        when the terminal has not moved and that report is younger than one report
        interval: the host checks one signature per interval, not one per sale, and
        the fix it sees is never older than its terms allow. Periodic reports and
        alerts are always new."""
        terms = self.session.fence_terms
        max_age = float(terms.max_fix_age_s) if terms else 600.0
        reuse = terms.payment_fix_reuse_s if terms and for_payment else 0.0
        return self.keys.location_report(self.config.terminal_id, self.FIX_WAIT_S, max_age, reuse)

    def signed_fix(self) -> bytes | None:
        """What the session attaches to every payment; None without a source or a fix:
        the host then decides by its policy."""
        from .tee.api import TeeError

        if self.config.location is None:
            return None
        try:
            return self._signed_report(for_payment=True)
        except TeeError:
            return None

    def _since(self, what: str) -> str:
        """When the current refusal began (kept across restarts), as local time."""
        key = f"fence_{what}_since"
        started = self.session._get(key)
        if not started:
            started = str(time.time())
            self.session._set(key, started)
        return dt.datetime.fromtimestamp(float(started)).strftime("%H:%M:%S")

    def _clear_since(self) -> None:
        for what in ("outside", "nofix"):
            self.session._set(f"fence_{what}_since", "")

    def location_gate(self) -> Gate:
        """Check this terminal against the fence the host set, before a payment starts.

        Outside the fence, or without a fresh fix, the terminal refuses, says how far and
        since when, and queues the signed report as an alert for the host. The host checks
        every payment's report again: this gate spares the customer a decline."""
        from acquirer.fence.policy import DEFAULT_POLICY
        from acquirer.fence.report import LocationReportError, parse
        from .tee.api import TeeError

        terms = self.session.fence_terms
        if terms is None:
            self._location_state = "no fence set by the host"
            return Gate(True, self._location_state)
        if self.config.location is None:
            since = self._since("nofix")
            self._location_state = f"no location source since {since}"
            return Gate(False, "No location source is configured: this terminal is fenced and may not sell "
                        "without a fix", "Choose a location source in Settings (key o), then try again")
        try:
            report = self._signed_report(for_payment=True)
            fix = parse(report)[0]
        except (TeeError, LocationReportError) as exc:
            since = self._since("nofix")
            self._location_state = f"no fix since {since}"
            detail = getattr(exc, "detail", "") or str(exc)
            gate = Gate(False, f"No current location fix (since {since}): {detail}",
                        "Check the GPS antenna or move the terminal near a window; sales resume with a fix")
            self.journal.note_alert("location", gate.message)
            return gate
        if not terms.has_area:
            self._clear_since()
            self._location_state = "fence site pending: the host records it from the first fix"
            return Gate(True, self._location_state)
        where = terms.place(fix.latitude, fix.longitude)
        if where.within(fix.accuracy_m, DEFAULT_POLICY.accuracy_credit_m):  # the host's rule, its default credit
            self._clear_since()
            away = f", {where.distance_m:.0f} m from the site" if where.distance_m is not None else ""
            self._location_state = f"inside the fence{away}"
            return Gate(True, self._location_state)
        since = self._since("outside")
        away = f"{where.distance_m / 1000:.1f} km from the registered site" if where.distance_m is not None \
            else f"{where.offset_m / 1000:.1f} km outside the fence"
        self._location_state = f"OUTSIDE the fence since {since} ({away})"
        try:  # the alert carries a report of its own: the host takes each report once outside a payment
            report = self._signed_report()
        except TeeError:
            pass  # the position just read is still evidence enough
        self.session.queue_location_alert(report)
        self._send_alerts()
        gate = Gate(False, f"Outside the location fence since {since}: {away} (allowed {terms.radius_m:.0f} m)",
                    "Sales are blocked here and the acquirer is alerted: return the terminal to the shop")
        self.journal.note_alert("fence", gate.message)
        return gate

    def _send_alerts(self) -> None:
        try:
            self.session.flush_reversals()
        except (HostUnavailable, HostRefused):
            pass  # queued: sent before the next request

    def report_location(self):
        """Send one signed report now (0800/401); the host answers 00 or G1 with why."""
        out = self.session.report_location(self._signed_report())
        self._last_report = time.monotonic()
        if not out.approved:
            self.journal.note_alert("fence", f"host: location report {out.code} {out.text}")
        return out

    def alerts(self, limit: int = 50):
        """Fence refusals, lost fixes, the host's location verdicts and the payments its
        risk step refused, newest first (terminal.journal.Alert)."""
        return self.journal.alerts(limit)

    def report_if_due(self):
        """The periodic report at the frequency the host set; None when not due (or no
        fence, or no source). Safe to call from a timer: one report at a time."""
        terms = self.session.fence_terms
        if terms is None or self.config.location is None:
            return None
        if time.monotonic() - self._last_report < terms.report_every_s and self._last_report:
            return None
        if self._tapping.is_set():
            return None  # the TEE is waiting for a card; the next tick reports
        if not self._report_lock.acquire(blocking=False):
            return None
        from .tee.api import TeeError

        try:
            return self.report_location()
        except (HostUnavailable, HostRefused, TeeError) as exc:  # offline or no fix: the next tick tries again
            self._location_state = f"periodic report not sent: {exc}"
            self._last_report = time.monotonic()
            return None
        finally:
            self._report_lock.release()

    # --- card sale ---------------------------------------------------------------------
    def tap(self, amount: int, timeout_s: float = 30.0):
        """Wait for a tap and run the kernel in the TEE; returns the protected card outcome."""
        self._tapping.set()
        try:
            return self.keys.transact(amount, timeout_s)
        finally:
            self._tapping.clear()

    def cancel(self) -> None:
        self.keys.cancel()

    def pin_begin(self, handle: bytes):
        return self.keys.pin_begin(handle)

    def pin_key(self, position: int) -> int:
        return self.keys.pin_key(position)

    def pin_backspace(self) -> int:
        return self.keys.pin_backspace()

    def pin_cancel(self) -> None:
        self.keys.pin_cancel()

    def pin_enter(self):
        return self.keys.pin_enter()

    def complete_card_sale(self, amount: int, outcome, pin_block=None) -> SaleResult:
        """Send an online request for a tapped card (after PIN entry when asked)."""
        from .tee.secure_world import card_data

        if outcome.outcome != "ONLINE_REQUEST":
            message = outcome.reason or MESSAGES.get(outcome.outcome, outcome.outcome)
            approved = outcome.outcome == "APPROVED_OFFLINE"
            entry = self.journal.record(batch=self.session.batch, stan=self.session.next_stan(), kind="sale",
                                        channel="card", amount=amount, code="00" if approved else "05",
                                        masked=outcome.masked_pan, text=message) if approved or \
                outcome.outcome == "DECLINED" else None
            return SaleResult(approved, "00" if approved else outcome.outcome, message, amount, "card",
                              outcome.masked_pan, entry)
        try:
            out = self.session.sale(amount, card_data(outcome, pin_block))
        except HostUnavailable as exc:
            return SaleResult(False, "98", f"Host unavailable: {exc}", amount, "card", outcome.masked_pan,
                              next_step="The sale is not complete; the reversal is queued and sent automatically")
        finally:
            self.keys.end_transaction(outcome.handle)
        return self._result(out, amount, "card", outcome.masked_pan, "sale")

    def _result(self, out: Outcome, amount: int, channel: str, masked: str, kind: str,
                original: Entry | None = None) -> SaleResult:
        entry = self.journal.record(batch=out.batch, stan=out.stan, kind=kind, channel=channel, amount=amount,
                                    code=out.code, masked=masked, rrn=out.rrn, auth_code=out.auth_code,
                                    text=out.text, original=original)
        meaning = ResponseCode(out.code).meaning if out.code in ResponseCode._value2member_map_ else out.code
        next_step = ""
        if out.code == ResponseCode.SIGN_ON_AGAIN.value:
            next_step = "Sign on again (key g on the status screen), then retry"
        elif out.code == ResponseCode.INCORRECT_PIN.value:
            next_step = "Ask the customer to try the PIN again"
        elif out.code == ResponseCode.TERMINAL_LOCKED.value:
            next_step = "The acquirer locked this terminal: call support"
        return SaleResult(out.approved, out.code, out.text or meaning, amount, channel, masked, entry, next_step)

    # --- after the sale -------------------------------------------------------------------
    def void(self, entry: Entry) -> SaleResult:
        out = self.session.void(Outcome(entry.code, "", entry.stan, entry.batch, entry.rrn), entry.amount)
        return self._result(out, entry.amount, entry.channel, entry.masked, "void", entry)

    def refund(self, entry: Entry, amount: int) -> SaleResult:
        out = self.session.refund(entry.batch, entry.stan, amount, entry.rrn)
        return self._result(out, amount, entry.channel, entry.masked, "refund", entry)

    def history(self, search: str = "") -> list[Entry]:
        return self.journal.entries(search)

    def totals(self) -> dict[str, tuple[int, int, int, int]]:
        return self.journal.totals(self.session.batch)

    def settle(self) -> SaleResult:
        """Settle the open batch; upload it when the host's totals differ."""
        batch = self.session.batch
        totals = self.journal.totals(batch)
        out = self.session.settle(totals)
        if out.approved and out.text.startswith("NOT BALANCED"):
            out = self.session.upload_batch(self.journal.upload_items(batch))
        amount = sum(t[1] - t[3] for t in totals.values())
        return SaleResult(out.approved, out.code, out.text, amount, "batch",
                          next_step=f"batch {batch} closed; new batch {self.session.batch}" if out.approved else "")

    def flush_reversals(self) -> int:
        try:
            return self.session.flush_reversals()
        except (HostUnavailable, HostRefused):
            return 0


def default_state_dir() -> Path:
    return Path(os.environ.get("SOFTPOS_TERMINAL_STATE", "var/terminal"))
