"""The transaction pipeline: small steps over one context (jPOS participants' habit).

Every request flows through the same list of steps; a step either enriches the context
or decides the response (sets `ctx.code`), which ends the run. Steps keep no
per-transaction state of their own, so they can be listed, reordered and tested alone.

    decode -> identify terminal -> authenticate MAC -> de-duplicate -> pre-verify the
           location signature (worker thread) -> validate -> risk -> route to channel
           -> commit to ledger -> respond
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from acquirer.protocol import (MTI, Field60, Frame, PrivateTag, ProtocolError, ResponseCode, decode, mac_input,
                               read_private)
from acquirer.registry import Terminal
from keys.hashes import sm3


@dataclass
class Context:
    frame: Frame
    peer: str
    received_at: float = field(default_factory=time.monotonic)
    doc: dict | None = None
    mti: MTI | None = None
    terminal_id: str = ""
    terminal: Terminal | None = None
    f60: Field60 | None = None
    private: dict = field(default_factory=dict)
    digest: bytes = b""  # SM3 of the request without its MAC: the de-duplication identity
    maced: bool = False
    code: ResponseCode | None = None  # set => respond now
    text: str = ""  # field 44 for the cashier
    reply_fields: dict[str, str] = field(default_factory=dict)
    replay: bytes | None = None  # a stored response to send again as it is
    unit: Any = None  # what the ledger will commit before the response leaves
    store_response: bool = True  # financial responses are stored for de-duplication
    notes: list[str] = field(default_factory=list)  # reasons, for logs and `risk explain`
    undo: Any = None  # what to give back at the channel if the ledger refuses the unit
    redecided: bool = False  # the ledger refused the unit: the response must be rebuilt
    pan_token: str = ""  # set by the card flow once the card is open: what risk counters key on
    masked_pan: str = ""
    icc: dict | None = None  # field 55 as tag -> value, once a flow has parsed it (risk reads it too)

    def decide(self, code: ResponseCode, text: str = "") -> None:
        self.code = code
        if text:
            self.text = text

    @property
    def done(self) -> bool:
        return self.code is not None or self.replay is not None

    @property
    def stan(self) -> str:
        return (self.doc or {}).get("11", "")

    @property
    def batch(self) -> str:
        return self.f60.batch if self.f60 else "000000"


Step = Callable[[Context], Awaitable[None]]


def step_decode(ctx: Context) -> None:
    try:
        ctx.doc = doc = decode(ctx.frame.message)
        ctx.mti = _MTIS.get(doc["t"])  # MTI(...) without the enum call
        if ctx.mti is None:
            raise ValueError(f"{doc['t']!r} is not a valid MTI")
    except ValueError as exc:  # ProtocolError, or an MTI we do not speak
        ctx.doc = ctx.doc or {}
        try:  # answer in kind when at least the MTI is readable
            ctx.mti = MTI(ctx.frame.message[:2].hex())
        except ValueError:
            ctx.mti = None
        ctx.decide(ResponseCode.FORMAT_ERROR, _short(exc))
        return
    ctx.terminal_id = doc.get("41", "")
    try:
        if "60" in doc:
            ctx.f60 = Field60.decode(doc["60"])
        ctx.private = read_private(doc)
    except ProtocolError as exc:
        ctx.decide(ResponseCode.FORMAT_ERROR, _short(exc))
        return
    if not ctx.terminal_id or "11" not in doc:
        ctx.decide(ResponseCode.FORMAT_ERROR, "terminal id (41) and STAN (11) are required")


_MTIS = MTI._value2member_map_


def identify_terminal(registry) -> Callable[[Context], None]:
    def step_identify(ctx: Context) -> None:
        terminal = registry.find_terminal(ctx.terminal_id)
        if terminal is None:
            ctx.decide(ResponseCode.TERMINAL_NOT_REGISTERED, "terminal not registered")
            return
        ctx.terminal = terminal
        if terminal.locked:
            ctx.decide(ResponseCode.TERMINAL_LOCKED, "terminal locked by the acquirer: call support")
        elif ctx.doc.get("42") not in (None, terminal.merchant_id):
            ctx.decide(ResponseCode.INVALID_MERCHANT, "merchant id does not match the terminal")
    return step_identify


def authenticate_mac(hsm, key_name: Callable[[str, str], str]) -> Callable[[Context], None]:
    """Verify field 64 under the terminal's TAK; a failure stores nothing (A0)."""
    def step_mac(ctx: Context) -> None:
        if ctx.mti is MTI.NETWORK_REQUEST:
            return
        try:
            data, tag = mac_input(ctx.frame.message)
        except ProtocolError:
            ctx.decide(ResponseCode.MAC_ERROR, "message carries no MAC")
            ctx.store_response = False
            return
        name = key_name(ctx.terminal_id, "TAK")
        if not hsm.exists(name):
            ctx.decide(ResponseCode.SIGN_ON_AGAIN, "no working keys: sign on")
            ctx.store_response = False
            return
        try:
            hsm.verify_mac(name, data, tag)
        except Exception:
            ctx.decide(ResponseCode.MAC_ERROR, "MAC verification failed")
            ctx.store_response = False
            return
        ctx.maced = True
        ctx.digest = sm3(data)
    return step_mac


def dedup_key(ctx: Context) -> tuple[str, str, str]:
    # a reversal carries its original's STAN: keep its own de-duplication slot
    prefix = "R" if ctx.mti is MTI.REVERSAL_REQUEST else ""
    return ctx.terminal_id, ctx.batch, prefix + ctx.stan


def deduplicate(ledger) -> Callable[[Context], None]:
    def step_dedup(ctx: Context) -> None:
        if not ctx.maced:
            return
        found = ledger.lookup_response(*dedup_key(ctx))
        if found is None:
            return
        digest, response = found
        if digest == ctx.digest:
            ctx.replay = response
            ctx.notes.append("duplicate: original response replayed")
        else:
            ctx.decide(ResponseCode.DUPLICATE, "STAN already used in this batch for another request")
            ctx.store_response = False
    return step_dedup


def preverify_location(fences) -> Callable[[Context], Awaitable[None] | None]:
    """Check the signature of an attached location report on a worker thread.

    SM2 verification is most of a sale's CPU and OpenSSL does it without the GIL: off the
    event loop it runs on the other core while the loop serves other requests. It only
    prepares: the fence check (risk step) uses the verified report, or verifies itself.
    A terminal's requests still reach the fence check in the order they arrived (the
    check refuses a report counter below one already seen): each waits for the one
    before it from the same terminal to be through this step, and the check follows
    this step without yielding to the event loop."""
    behind: dict[str, asyncio.Future] = {}  # terminal -> the last request of it in this step

    def step_preverify(ctx: Context) -> Awaitable[None] | None:
        report = ctx.private.get(PrivateTag.LOCATION)
        if not report or ctx.terminal is None or not ctx.terminal.device_public_key:
            return None
        if ctx.terminal_id not in behind and fences.current(ctx.terminal, report) is not None:
            return None  # the latest accepted report again (a payment's "latest signed fix"): nothing to verify
        return _verify(ctx, report)

    async def _verify(ctx: Context, report: bytes) -> None:
        loop = asyncio.get_running_loop()
        verified = loop.run_in_executor(None, fences.preverify, ctx.terminal, report)
        before, mine = behind.get(ctx.terminal_id), loop.create_future()
        behind[ctx.terminal_id] = mine
        try:
            if before is not None:
                await asyncio.shield(before)
            await verified
        finally:
            mine.set_result(None)
            if behind.get(ctx.terminal_id) is mine:
                del behind[ctx.terminal_id]
    return step_preverify


def _short(exc: Exception) -> str:
    return str(exc)[:90]


def private_text(ctx: Context, tag: PrivateTag) -> str:
    value = ctx.private.get(tag, b"")
    return value.decode("ascii", "replace")
