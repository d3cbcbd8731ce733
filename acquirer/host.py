"""The acquirer host: the pipeline assembled over the registry, HSM, ledger and channels.

`Host.handle` is the server's handler: one frame in, one frame (or nothing) out. The
response leaves only after the ledger committed what it depends on.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from acquirer import pipeline
from acquirer.pipeline import Context
from acquirer.protocol import (MTI, Frame, PrivateTag, Processing, ResponseCode, TxnType, describe, encode,
                               private_fields)
from acquirer.netmgmt import NetworkManagement
from acquirer.registry import Registry
from keys.hsm import HSM, terminal_key_name

log = logging.getLogger("acquirer.host")

# 60.1 types the wallet flows own outright (face sales go to the face flows)
WALLET_TYPES = frozenset({TxnType.QR_SALE.value, TxnType.QR_PRECREATE.value, TxnType.FACE_SALE.value})
# requests that name an original in field 61: whoever moved the original's money handles them
_BY_ORIGINAL = frozenset({(MTI.FINANCIAL_REQUEST, TxnType.VOID.value), (MTI.ADVICE_REQUEST, TxnType.REFUND.value),
                          (MTI.STATUS_REQUEST, TxnType.QUERY.value)})

# fields a response echoes from its request when present
ECHOED = ("3", "4", "11", "12", "13", "22", "25", "41", "42", "49", "60", "61")


@dataclass
class Metrics:
    """Per-response-code counts and a latency histogram (ms buckets), for `acquirer stats`."""

    codes: dict[str, int] = field(default_factory=dict)
    buckets: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, float("inf"))
    histogram: list[int] = field(default_factory=lambda: [0] * 11)
    total: int = 0
    started: float = field(default_factory=time.monotonic)

    def observe(self, code: str, seconds: float) -> None:
        self.codes[code] = self.codes.get(code, 0) + 1
        ms = seconds * 1000
        for i, b in enumerate(self.buckets):
            if ms <= b:
                self.histogram[i] += 1
                break
        self.total += 1

    def prometheus(self) -> str:
        lines = ["# TYPE acquirer_responses_total counter"]
        lines += [f'acquirer_responses_total{{code="{c}"}} {n}' for c, n in sorted(self.codes.items())]
        lines.append("# TYPE acquirer_latency_ms histogram")
        acc = 0
        for b, n in zip(self.buckets, self.histogram):
            acc += n
            le = "+Inf" if b == float("inf") else f"{b:g}"
            lines.append(f'acquirer_latency_ms_bucket{{le="{le}"}} {acc}')
        lines.append(f"acquirer_latency_ms_count {self.total}")
        elapsed = max(time.monotonic() - self.started, 1e-9)
        lines.append(f"acquirer_tps {self.total / elapsed:.2f}")
        return "\n".join(lines) + "\n"


class Host:
    def __init__(self, registry: Registry, hsm: HSM, ledger, card_flows, clock: Callable[[], float] = time.time, *,
                 wallet_flows=None, face_flows=None, fences=None):
        self.registry = registry
        self.hsm = hsm
        self.ledger = ledger
        self.clock = clock
        self.netmgmt = NetworkManagement(registry, hsm, ledger, clock, fences=fences)
        self.card_flows = card_flows
        self.wallet_flows = wallet_flows  # None: this host has no QR channel (QR and face types answer 12)
        self.face_flows = face_flows
        self.metrics = Metrics()
        self.steps = [
            pipeline.step_decode,
            pipeline.identify_terminal(registry),
            pipeline.authenticate_mac(hsm, terminal_key_name),
            pipeline.deduplicate(ledger),
            *([pipeline.preverify_location(fences)] if fences is not None else []),
            self.route,
        ]

    async def handle(self, frame: Frame, peer: str) -> Frame | None:
        ctx = Context(frame, peer)
        for step in self.steps:
            result = step(ctx)  # None, or an awaitable for a step that waits
            if result is not None:
                await result
            if ctx.done:
                break
        if ctx.replay is not None:
            self.metrics.observe(ResponseCode.DUPLICATE.value + "-replay", time.monotonic() - ctx.received_at)
            return frame.reply(ctx.replay)
        if ctx.code is None:  # a step forgot to decide: never leave a terminal hanging
            ctx.decide(ResponseCode.SYSTEM_ERROR, "no decision")
        if ctx.mti is None:
            return None  # not even a message of ours: the server closes the connection
        response = self._response(ctx)
        if ctx.unit is None and not (ctx.store_response and ctx.maced):
            self._flush_companions()  # no group commit carries this one: what it wrote is committed now
        else:
            replacement = await self._commit(ctx, response)
            if replacement is not None:  # the same request was answered meanwhile: send that answer
                return frame.reply(replacement)
            if ctx.redecided:  # the ledger refused the unit: answer its code, and keep that answer
                response = self._response(ctx)
                if ctx.store_response and ctx.maced:
                    await self.card_flows.commit(ctx, response)
        self.metrics.observe(ctx.code.value, time.monotonic() - ctx.received_at)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %s %s", ctx.peer, describe(ctx.doc or {}), ctx.code.value, ctx.text)
        processing = Processing.LOCKED if ctx.code is ResponseCode.TERMINAL_LOCKED else (
            Processing.SIGN_ON_AGAIN if ctx.code is ResponseCode.SIGN_ON_AGAIN else Processing.NONE)
        return frame.reply(response, processing)

    def _flush_companions(self) -> None:
        writer = getattr(self.card_flows, "writer", None)
        if writer is not None:
            writer.flush_companions()

    def route(self, ctx: Context):
        if ctx.mti is MTI.NETWORK_REQUEST:
            return self.netmgmt.handle(ctx)
        return self._flows_for(ctx).handle(ctx)

    def _flows_for(self, ctx: Context):
        """Card, wallet (QR and the aftermath of every wallet-paid sale) or face."""
        wallets = self.wallet_flows
        if wallets is None:
            return self.card_flows
        type_code = ctx.f60.type_code if ctx.f60 else ""
        if type_code == TxnType.FACE_SALE.value and ctx.mti is MTI.FINANCIAL_REQUEST and self.face_flows is not None:
            return self.face_flows
        if type_code in WALLET_TYPES:  # QR sales, merchant QR, and reversals of those and of face sales
            return wallets
        if ctx.mti is MTI.REVERSAL_REQUEST:  # 60.1 is the original's: a void's reversal names a void
            return wallets if wallets.owns_reversal(ctx) else self.card_flows
        if (ctx.mti, type_code) in _BY_ORIGINAL and wallets.owns_original(ctx):
            return wallets
        return self.card_flows

    async def _commit(self, ctx: Context, response: bytes) -> bytes | None:
        # CardFlows gives back card authorisations; a wallet payment is given back by its own undo,
        # and only when the ledger refused the unit (a replayed answer is the same order, already paid)
        give_back = getattr(ctx.undo, "give_back", None)
        if give_back is not None:
            ctx.undo = None
        replacement = await self.card_flows.commit(ctx, response)
        if give_back is not None and ctx.redecided:
            await give_back()
        return replacement

    def _response(self, ctx: Context) -> bytes:
        doc = ctx.doc or {}
        fields = {k: doc[k] for k in ECHOED if k in doc}
        fields["t"] = ctx.mti.response._value_  # the value without enum's property (its plain attribute)
        fields["39"] = ctx.code._value_
        if ctx.text:
            fields["44"] = ctx.text.encode("ascii", "replace").decode("ascii")[:99]
        fields.update(ctx.reply_fields)
        mac = None
        if ctx.mti is not MTI.NETWORK_REQUEST:
            tak = terminal_key_name(ctx.terminal_id, "TAK")
            if self.hsm.exists(tak):
                mac = self.hsm.mac_function(tak)  # generate_mac(tak, data) without a lambda per response
        try:
            return encode(fields, mac)
        except ValueError:
            # an echoed field we cannot re-encode: answer with the bare minimum
            bare = {k: fields[k] for k in ("t", "11", "39", "41") if k in fields}
            return encode(bare, mac)


def cashier_text(ctx: Context) -> None:
    """Put the decision's text in the private area too, for terminals that show 59."""
    if ctx.text:
        ctx.reply_fields.setdefault("59", private_fields({PrivateTag.CASHIER_TEXT: ctx.text.encode()}))


__all__ = ["Host", "Metrics", "TxnType"]
