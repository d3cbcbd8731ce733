"""Network management (0800/0810): activation, remote key download, challenge, sign-on, echo,
periodic location reports, and the merchant's static aggregated code URL.

None of these carry a MAC (the terminal may have no TAK yet); each is authenticated by
its own proof instead: the one-time activation code, the device key's signature over the
key-download request, the attestation evidence over a single-use host challenge, the
device key's signature over a location report (with its never-reused counter).

With a `FenceMonitor`, activation fences the terminal from its merchant's record, and
sign-on and every location report answer the fence terms (59/DF20) the terminal checks
itself against before it starts a payment.
"""
from __future__ import annotations

import os
import time

from acquirer.fence import OUTSIDE, REFUSED
from acquirer.fence.terms import FenceTerms
from acquirer.pipeline import Context
from acquirer.protocol import NetworkCode, PrivateTag, ResponseCode, private_fields
from acquirer.protocol.attestation import AttestationError, key_download_proof, verify as verify_attestation
from acquirer.registry import Registry, RegistryError, TerminalStatus
from keys.errors import InvalidKey, InvalidSignature
from keys.hsm import HSM, terminal_key_name
from keys.sm2 import SM2PublicKey

HOST_SIGNING_KEY = "host/SIGN"
WORKING_KEYS = ("TPK", "TAK", "TDK")
CHALLENGE_TTL_S = 60.0


class NetworkManagement:
    static_codes = None  # acquirer.static_codes.StaticCodes, set by the service that has them

    def __init__(self, registry: Registry, hsm: HSM, ledger, clock=time.time, fences=None):
        self.registry = registry
        self.fences = fences  # a FenceMonitor, or None: no fencing
        self.hsm = hsm
        self.ledger = ledger
        self.clock = clock
        self._challenges: dict[str, tuple[bytes, float]] = {}
        if not hsm.exists(HOST_SIGNING_KEY):
            hsm.generate(HOST_SIGNING_KEY, "SM2", "SIGN")

    @property
    def host_public_key(self) -> SM2PublicKey:
        return self.hsm.public_key(HOST_SIGNING_KEY)

    def handle(self, ctx: Context) -> None:
        code = ctx.f60.network if ctx.f60 else ""
        handler = {
            NetworkCode.ACTIVATE.value: self.activate,
            NetworkCode.KEY_DOWNLOAD.value: self.key_download,
            NetworkCode.CHALLENGE.value: self.challenge,
            NetworkCode.SIGN_ON.value: self.sign_on,
            NetworkCode.ECHO.value: self.echo,
            NetworkCode.LOCATION_REPORT.value: self.location_report,
            NetworkCode.STATIC_QR.value: self.static_qr,
        }.get(code)
        if handler is None:
            ctx.decide(ResponseCode.INVALID_TRANSACTION, f"unknown network management code {code!r}")
            return
        if code != NetworkCode.ACTIVATE.value and not self._active(ctx):
            return
        handler(ctx)

    def _active(self, ctx: Context) -> bool:
        if ctx.terminal is None or ctx.terminal.status is not TerminalStatus.ACTIVE:
            ctx.decide(ResponseCode.TERMINAL_NOT_REGISTERED, "terminal not activated")
            return False
        return True

    def activate(self, ctx: Context) -> None:
        code = ctx.private.get(PrivateTag.ACTIVATION_CODE, b"").decode("ascii", "replace")
        device_id = ctx.private.get(PrivateTag.DEVICE_ID, b"").decode("ascii", "replace")
        raw_key = ctx.private.get(PrivateTag.DEVICE_PUBLIC_KEY, b"")
        try:
            SM2PublicKey.from_bytes(raw_key)
        except InvalidKey:
            ctx.decide(ResponseCode.FORMAT_ERROR, "device public key is not an SM2 point")
            return
        try:
            self.registry.activate(ctx.terminal_id, code, device_id, raw_key, now=self.clock())
        except RegistryError as exc:
            ctx.decide(ResponseCode.DO_NOT_HONOR, str(exc)[:90])
            return
        if self.fences is not None and self.fences.fence(ctx.terminal_id) is None:
            self.fences.register_site(ctx.terminal_id, self.registry.merchant(ctx.terminal.merchant_id))
        ctx.reply_fields["59"] = private_fields({PrivateTag.HOST_PUBLIC_KEY: self.host_public_key.to_bytes()})
        ctx.decide(ResponseCode.APPROVED, "activated")

    def _device_key(self, ctx: Context) -> SM2PublicKey:
        return SM2PublicKey.from_bytes(ctx.terminal.device_public_key)

    def key_download(self, ctx: Context) -> None:
        nonce = ctx.private.get(PrivateTag.NONCE, b"")
        proof = ctx.private.get(PrivateTag.ATTESTATION, b"")
        if len(nonce) != 16:
            ctx.decide(ResponseCode.FORMAT_ERROR, "key download needs a 16-byte nonce")
            return
        try:
            self._device_key(ctx).verify(proof, key_download_proof(ctx.terminal_id, nonce))
        except (InvalidSignature, InvalidKey):
            ctx.decide(ResponseCode.ATTESTATION_FAILED, "key download request not signed by the bound device")
            return
        tmk = terminal_key_name(ctx.terminal_id, "TMK")
        self.hsm.generate(tmk, "SM4", "TMK")
        for usage in WORKING_KEYS:  # keys under the old TMK are dead: force a sign-on
            self.hsm.delete(terminal_key_name(ctx.terminal_id, usage))
        envelope = self.hsm.export_envelope(tmk, self._device_key(ctx), ctx.terminal_id, HOST_SIGNING_KEY,
                                            nonce=nonce, now=self.clock())
        ctx.reply_fields["62"] = envelope.hex().upper()
        ctx.decide(ResponseCode.APPROVED, "terminal master key delivered")

    def challenge(self, ctx: Context) -> None:
        nonce = os.urandom(16)
        self._challenges[ctx.terminal_id] = (nonce, self.clock() + CHALLENGE_TTL_S)
        ctx.reply_fields["59"] = private_fields({PrivateTag.NONCE: nonce})
        ctx.decide(ResponseCode.APPROVED)

    def sign_on(self, ctx: Context) -> None:
        outstanding = self._challenges.pop(ctx.terminal_id, None)  # single use, whatever happens next
        if outstanding is None or outstanding[1] < self.clock():
            ctx.decide(ResponseCode.ATTESTATION_FAILED, "no fresh challenge: ask for one first")
            return
        try:
            evidence = verify_attestation(ctx.private.get(PrivateTag.ATTESTATION, b""), self._device_key(ctx),
                                          ctx.terminal.device_id or "", outstanding[0], now=self.clock())
        except AttestationError as exc:
            ctx.decide(ResponseCode.ATTESTATION_FAILED, str(exc)[:90])
            return
        if not self.registry.measurement_allowed(evidence.measurement):
            ctx.decide(ResponseCode.ATTESTATION_FAILED, "terminal software measurement is not on the allowed list")
            ctx.notes.append(f"unknown measurement {evidence.measurement.hex()}")
            return
        tmk = terminal_key_name(ctx.terminal_id, "TMK")
        if not self.hsm.exists(tmk):
            ctx.decide(ResponseCode.SIGN_ON_AGAIN, "no terminal master key: download keys first")
            return
        blocks, kcvs = [], []
        for usage in WORKING_KEYS:  # fresh working keys at every sign-on
            name = terminal_key_name(ctx.terminal_id, usage)
            info = self.hsm.generate(name, "SM4", usage)
            blocks.append(self.hsm.export_wrapped(name, under=tmk))
            kcvs.append(f"{usage}:{info.kcv}")
        batch = self.ledger.current_batch(ctx.terminal_id) or self.ledger.open_batch(ctx.terminal_id)
        self.registry.record_sign_on(ctx.terminal_id, now=self.clock())
        ctx.reply_fields["62"] = "".join(blocks).encode("ascii").hex().upper()
        ctx.reply_fields["59"] = private_fields({PrivateTag.KEY_CHECK_VALUES: " ".join(kcvs).encode("ascii"),
                                                 **self._terms(ctx)})
        ctx.reply_fields["60"] = ctx.f60.__class__(ctx.f60.type_code, batch, ctx.f60.network).encode()
        ctx.decide(ResponseCode.APPROVED, "signed on")

    def echo(self, ctx: Context) -> None:
        ctx.decide(ResponseCode.APPROVED, "echo")

    # --- location -------------------------------------------------------------------
    def _terms(self, ctx: Context) -> dict:
        """{DF20: the fence terms} for this terminal, or {} when it is not fenced."""
        fence = self.fences.fence(ctx.terminal_id) if self.fences is not None else None
        if fence is None:
            return {}
        merchant = self.registry.merchant(ctx.terminal.merchant_id)
        return {PrivateTag.FENCE_TERMS: FenceTerms.of(fence, merchant.risk_grade, bool(merchant.mobile),
                                                      self.fences.policy).encode()}

    def location_report(self, ctx: Context) -> None:
        """A periodic report: judged like one attached to a payment (alerts included),
        answered with the verdict and the current terms."""
        report = ctx.private.get(PrivateTag.LOCATION)
        if not report:
            ctx.decide(ResponseCode.FORMAT_ERROR, "59/DF03: signed location report missing")
            return
        if self.fences is None:
            ctx.decide(ResponseCode.APPROVED, "location reports are not required here")
            return
        merchant = self.registry.merchant(ctx.terminal.merchant_id)
        verdict = self.fences.check(ctx.terminal, report, merchant=merchant)
        ctx.notes.append(f"location {verdict.status}: {verdict.reason}")
        terms = self._terms(ctx)
        if terms:
            ctx.reply_fields["59"] = private_fields(terms)
        if verdict.status in (OUTSIDE, REFUSED):
            ctx.decide(ResponseCode.GEOFENCE_VIOLATION, verdict.reason[:90])
        else:
            ctx.decide(ResponseCode.APPROVED, verdict.reason[:90])

    def static_qr(self, ctx: Context) -> None:
        """The URL of the terminal's merchant's static code, to print (59/DF10). The code is
        public by nature (it hangs at the counter), so the plain 0800 of an active,
        unlocked terminal of the merchant is enough to ask for it."""
        from acquirer.static_codes import StaticCodeError

        code = self.static_codes.current(ctx.terminal.merchant_id) if self.static_codes else None
        if code is None:
            ctx.decide(ResponseCode.INVALID_TRANSACTION, "no static code issued for this merchant")
            return
        try:
            url = self.static_codes.url(code)
        except StaticCodeError as exc:
            ctx.decide(ResponseCode.INVALID_TRANSACTION, str(exc)[:90])
            return
        ctx.reply_fields["59"] = private_fields({PrivateTag.MERCHANT_QR: url.encode("ascii")})
        ctx.decide(ResponseCode.APPROVED, "static code")
