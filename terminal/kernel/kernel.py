"""The contactless kernel the secure world calls: `Kernel.run` for a tap, `Kernel.complete`
for the standard flow's second GENERATE AC after the issuer answered.

Whatever the card does (leaves the field, sends broken TLV, refuses a command), `run`
returns a `KernelResult`; only a caller's own mistake (a bad unpredictable number)
raises. Flow and decisions: docs/kernel.md.
"""
from __future__ import annotations

import logging
import os
from dataclasses import replace

from hardware.apdu import command
from hardware.errors import CardRemoved, HardwareError, PcscdNotRunning
from keys.tlv import TLVError, build_dol_data

from . import tvr as T
from .carddata import CardDataError, parse_generate_ac
from .config import KernelConfig
from .decisions import AAC, CID_NAMES, TC, cid_type
from .relay import TimedCard, assess
from .result import KernelResult, Outcome, TransactionRequest
from .transaction import AIP_ISSUER_AUTH, SecondAc, Stop, Tap, field55

log = logging.getLogger(__name__)

REMOVED = "card removed, tap again"
APPROVAL_ARC, DECLINE_ARC = b"00", b"05"  # sent in CDOL2 when the host gave no tag 91


class Kernel:
    """Stateless between taps: one instance may serve every transaction of a terminal."""

    def __init__(self, config: KernelConfig) -> None:
        self.config = config

    def run(self, session, request: TransactionRequest, unpredictable_number: bytes | None = None) -> KernelResult:
        """One tap: PPSE to cryptogram. `session` has `transmit(apdu) -> (data, sw)`."""
        un = os.urandom(4) if unpredictable_number is None else bytes(unpredictable_number)
        if len(un) != 4:
            raise ValueError("unpredictable_number: must be 4 bytes")
        tap = Tap(self.config, request, un, TimedCard(session))
        try:
            decision = tap.run()
            outcome, reason = decision.outcome, decision.reason
        except Stop as stop:
            outcome, reason = stop.outcome, stop.reason
        except CardRemoved:
            outcome, reason = Outcome.TRY_AGAIN, REMOVED
        except PcscdNotRunning:
            outcome, reason = Outcome.END_APPLICATION, "card reader service is not running"
        except HardwareError:
            # A transmission error on contactless is usually the card moving in the field.
            outcome, reason = Outcome.TRY_AGAIN, "card communication error, tap again"
        except CardDataError as exc:
            outcome, reason = Outcome.END_APPLICATION, f"card data error: {exc}"
        except TLVError as exc:
            outcome, reason = Outcome.END_APPLICATION, f"card data error: malformed TLV ({exc})"
        except (ValueError, IndexError, KeyError) as exc:
            # Card data the checks above did not foresee: still never a crash in the TEE.
            log.warning("kernel: %s while processing card data", type(exc).__name__)
            outcome, reason = Outcome.END_APPLICATION, "card data error"
        return self._result(tap, outcome, reason)

    def _result(self, tap: Tap, outcome: Outcome, reason: str) -> KernelResult:
        timings = tap.card.timings
        verdict = assess(timings, self.config.relay)
        if verdict.suspected:
            tap.tvr.set(T.RELAY_THRESHOLD_EXCEEDED)
        candidate = tap.candidate
        return KernelResult(
            outcome=outcome, reason=reason,
            aid=tap.fci.df_name if tap.fci else b"", label=tap.fci.label if tap.fci else "",
            family=candidate.config.family if candidate else "",
            pan=tap.pan, psn=tap.psn if tap.pan else "",
            expiry=tap.expiry.strftime("%y%m") if tap.expiry else "", track2=tap.track2,
            icc_data=tap.icc_data() if tap.fci else b"", oda=tap.oda, cvm=tap.cvm, tvr=tap.tvr.value(),
            relay_suspected=verdict.suspected, apdu_timings_ms=[t.ms for t in timings],
            card_in_field_ms=tap.card.in_field_ms, apdu_commands=[t.command for t in timings],
            cryptogram=tap.cryptogram,
            continuation=(tap, tap.second_ac) if tap.second_ac and outcome is Outcome.ONLINE_REQUEST else None)

    def complete(self, session, result: KernelResult, issuer_auth_data: bytes | None,
                 approved: bool) -> KernelResult:
        """After the issuer's answer. Quick flow: no command (the card has left the field;
        the issuer's answer decides). Standard flow: EXTERNAL AUTHENTICATE with tag 91
        (ARPC || ARC) when the card supports it, then the second GENERATE AC (TC when
        approved, AAC when not). A result that is not an ONLINE_REQUEST comes back as is."""
        if result.outcome is not Outcome.ONLINE_REQUEST:
            return result
        if result.continuation is None:
            outcome = Outcome.APPROVED if approved else Outcome.DECLINED
            return replace(result, outcome=outcome, reason="approved online" if approved else "declined by the issuer")
        tap, second = result.continuation
        card = TimedCard(session)
        tvr = T.Tvr(result.tvr)
        try:
            cid, card_tags, values = self._second_ac(card, second, tvr, issuer_auth_data, approved)
        except (CardRemoved, HardwareError):
            return self._completed(result, card, tvr, Outcome.DECLINED,
                                   "card removed before completion, transaction cancelled", None)
        except (CardDataError, TLVError, ValueError, IndexError):
            return self._completed(result, card, tvr, Outcome.DECLINED, "card data error at completion, declined",
                                   None)
        if cid == TC and approved:
            outcome, reason = Outcome.APPROVED, "approved online"
        elif approved:
            outcome, reason = Outcome.DECLINED, "the card refused the issuer's approval, declined"
        else:
            outcome, reason = Outcome.DECLINED, "declined by the issuer"
        return self._completed(result, card, tvr, outcome, reason, field55(card_tags, values, tap),
                               CID_NAMES.get(cid, ""))

    def _second_ac(self, card: TimedCard, second: SecondAc, tvr: T.Tvr, issuer_auth_data: bytes | None,
                   approved: bool) -> tuple[int, dict, dict]:
        arc = APPROVAL_ARC if approved else DECLINE_ARC
        if issuer_auth_data:
            data = bytes(issuer_auth_data)
            if 10 <= len(data) <= 16:
                arc = data[8:10]  # method 1: ARPC (8) || ARC (2)
                if second.aip[0] & AIP_ISSUER_AUTH:
                    _, sw = card.exchange("EXTERNAL AUTHENTICATE", command(0x00, 0x82, 0x00, 0x00, data))
                    if sw != 0x9000:
                        tvr.set(T.ISSUER_AUTH_FAILED)
            else:
                tvr.set(T.ISSUER_AUTH_FAILED)
        values = {**second.values, 0x8A: arc, 0x95: tvr.value(), 0x9F37: second.un}
        dol = build_dol_data(second.cdol2, values) if second.cdol2 else b""
        answer, sw = card.exchange("GENERATE AC", command(0x80, 0xAE, TC if approved else AAC, 0x00, dol, le=0),
                                   crypto=True)
        if sw != 0x9000:
            raise CardDataError("second GENERATE AC", f"card answered {sw:04X}")
        card_tags = {**second.card_tags, **dict(parse_generate_ac(answer))}
        return cid_type(card_tags.get(0x9F27, b"")), card_tags, values

    @staticmethod
    def _completed(result: KernelResult, card: TimedCard, tvr: T.Tvr, outcome: Outcome, reason: str,
                   icc: bytes | None, cryptogram: str | None = None) -> KernelResult:
        # The tap's card-in-field time stays the tap's; completion only adds its own APDUs.
        return replace(result, outcome=outcome, reason=reason, tvr=tvr.value(),
                       icc_data=result.icc_data if icc is None else icc,
                       cryptogram=result.cryptogram if cryptogram is None else cryptogram,
                       apdu_timings_ms=result.apdu_timings_ms + [t.ms for t in card.timings],
                       apdu_commands=result.apdu_commands + [t.command for t in card.timings], continuation=None)

