"""The pipeline's risk step: the request context in, the engine's decision on the context out.

`CardFlows.sale` calls `assess(ctx)` after it opened the card and before it asks the
issuer; a decision that blocks sets `ctx.code` (`ctx.decide`), which ends the run.
What it reads from the context:

    ctx.terminal_id, ctx.terminal (registry Terminal: merchant, device id and key)
    ctx.doc: "4" amount, "22" entry mode, "52" PIN block present, "55" ICC data (CDCVM)
    ctx.private: DF03 signed location report, DF0A risk flags, DF0C passcode block
    ctx.f60 (type code -> channel), ctx.batch, ctx.stan (-> the transaction id)
    ctx.pan_token, ctx.masked_pan, ctx.card_family: set by the card flow when it has the
        card (optional: without them the card's rules and counters see an unknown card)
"""
from __future__ import annotations

import logging
import time
from dataclasses import fields

from acquirer.ledger import txn_id_for
from acquirer.protocol import PrivateTag, ResponseCode, private_fields
from keys.tlv import TLVError, flatten

from .engine import Decision, RiskEngine
from .rules import Action, Status
from .variables import Facts, normalise_flag

log = logging.getLogger("acquirer.risk")

_CHANNELS = {"22": "card", "23": "card", "25": "card", "31": "qr", "32": "qr", "33": "face"}
_KINDS = {"22": "sale", "23": "void", "25": "refund", "31": "sale", "32": "sale", "33": "sale"}
# looked up once: an enum's class attribute costs a metaclass lookup per use
_LOCATION, _RISK_FLAGS, _PASSCODE_BLOCK = PrivateTag.LOCATION, PrivateTag.RISK_FLAGS, PrivateTag.PASSCODE_BLOCK
_NO_FLAGS: frozenset[str] = frozenset()
_TRIAL = Status.TRIAL.value
# status, required, refusal, reason, offset, distance, fix age, cells without a fence check
_NO_LOCATION = ("none", False, "", "", 0.0, -1.0, -1.0, "unknown")
_FACTS_ORDER = ("txn_id", "terminal_id", "merchant_id", "amount", "at", "channel", "kind", "device_id",
                "merchant_grade", "merchant_mcc", "merchant_mobile", "card_token", "masked_pan", "card_family",
                "pin_present", "passcode_present", "cdcvm", "entry_mode", "flags", "location_status",
                "location_required", "location_refusal", "location_reason", "location_offset_m",
                "location_distance_m", "location_fix_age_s", "location_cells")
if tuple(f.name for f in fields(Facts)) != _FACTS_ORDER:
    raise ImportError("acquirer.risk.assessor builds Facts positionally: update it for the new Facts fields")
_CTQ = 0x9F6C
_CTQ2_CDCVM = 0x80  # card transaction qualifiers byte 2 bit 8: consumer device CVM performed


class RiskAssessor:
    def __init__(self, engine: RiskEngine, registry, fences=None, *, clock=time.time,
                 require_fix: bool | None = None, merchant_ttl_s: float = 30.0):
        """`fences`: a FenceMonitor, or None to skip location checks. `require_fix`: None
        follows the fence policy per risk grade; False never declines for a missing fix
        (a roll-out while terminals learn to attach reports); True always does for a
        fenced terminal."""
        self.engine = engine
        self.registry = registry
        self.fences = fences
        self.clock = clock
        self.require_fix = require_fix
        self._merchant_ttl_s = merchant_ttl_s
        self._merchants: dict[str, tuple[float, object]] = {}

    def _merchant(self, merchant_id: str, now: float | None = None):
        # the registry caches terminals, not merchants: a grade change shows within the TTL
        if now is None:
            now = self.clock()
        cached = self._merchants.get(merchant_id)
        if cached is None or cached[0] < now:
            cached = self._merchants[merchant_id] = (now + self._merchant_ttl_s, self.registry.merchant(merchant_id))
        return cached[1]

    def assess(self, ctx) -> Decision:
        txn_id = txn_id_for(ctx.terminal_id, ctx.batch, ctx.stan)
        terminal = ctx.terminal
        at = self.clock()
        merchant = self._merchant(terminal.merchant_id, at)
        verdict = None
        if self.fences is not None:
            verdict = self.fences.check(terminal, ctx.private.get(_LOCATION), merchant=merchant, txn_id=txn_id,
                                        required=self.require_fix)
        facts = self.facts(ctx, txn_id, merchant, verdict, at)
        decision = self.engine.decide(facts)
        self._answer(ctx, decision, facts)
        return decision

    def facts(self, ctx, txn_id: str, merchant, verdict=None, at: float | None = None) -> Facts:
        """The engine's view of the request; `verdict`: the fence's on its signed fix, if checked."""
        doc, private = ctx.doc or {}, ctx.private
        amount = doc.get("4", "")
        type_code = ctx.f60.type_code if ctx.f60 else ""
        flags = private.get(_RISK_FLAGS)
        pin = "52" in doc
        if verdict is None:
            location = _NO_LOCATION
        else:
            offset, distance, age = verdict.offset_m, verdict.distance_m, verdict.fix_age_s
            location = (verdict.status, verdict.required, verdict.refusal, verdict.reason,
                        0.0 if offset is None else offset, -1.0 if distance is None else distance,
                        -1.0 if age is None else age, verdict.cells)
        # positional, in `Facts` field order (checked at import, `_FACTS_ORDER`): keywords
        # cost more than the rest of this method together (a dataclass of 27 fields)
        return Facts(
            txn_id, ctx.terminal_id, merchant.merchant_id, int(amount) if amount.isdigit() else 0,
            self.clock() if at is None else at, _CHANNELS.get(type_code, "card"), _KINDS.get(type_code, "sale"),
            ctx.terminal.device_id or "", merchant.risk_grade, merchant.mcc, bool(merchant.mobile),
            getattr(ctx, "pan_token", "") or "", getattr(ctx, "masked_pan", "") or "",
            getattr(ctx, "card_family", "") or "", pin, _PASSCODE_BLOCK in private,
            not pin and _cdcvm(ctx.icc, doc.get("55")), doc.get("22", ""),
            _flags(flags) if flags else _NO_FLAGS, *location)

    @staticmethod
    def _answer(ctx, decision: Decision, facts: Facts) -> None:
        hits = decision.hits
        if hits:  # `_value_`: the member's own attribute (`.value` is a property, the enum's hash a Python call)
            ctx.notes.append(f"risk {decision.action._value_}: " + ",".join(
                [h.rule + "(trial)" if h.status == _TRIAL else h.rule for h in hits]))
        if not decision.blocks:
            return
        text = decision.text
        if decision.code == ResponseCode.GEOFENCE_VIOLATION.value and facts.location_reason:
            text = facts.location_reason  # how far, for the cashier
        if decision.action is Action.STEP_UP:
            ctx.reply_fields["59"] = private_fields({PrivateTag.STEP_UP: decision.step_up.encode("ascii"),
                                                     PrivateTag.CASHIER_TEXT: text.encode("ascii", "replace")})
        ctx.decide(ResponseCode(decision.code), text)


def _flags(raw: bytes) -> frozenset[str]:
    return frozenset(normalise_flag(f) for f in raw.decode("ascii", "replace").split(",") if f.strip())


def _cdcvm(icc: dict | None, icc_hex: str | None) -> bool:
    """The card verified its holder on the device (CTQ byte 2); `icc` is field 55 already
    parsed by the flow, else `icc_hex` is parsed here."""
    if icc is None:
        if not icc_hex:
            return False
        try:
            icc = flatten(bytes.fromhex(icc_hex))
        except (TLVError, ValueError):
            return False
    ctq = icc.get(_CTQ, b"")
    return len(ctq) >= 2 and bool(ctq[1] & _CTQ2_CDCVM)
