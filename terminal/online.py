"""The terminal's online session: talk to the host, match responses, never lose a reversal.

Requests are MAC-ed and responses verified by the secure world; this module only sees
protected data. The secure world is anything with the `SecureWorld` methods: the TEE
process through `terminal.tee.secure_world.TeeKeys` (the terminal), or the in-process
`SecureKeys` (the host's tests and benchmarks, which need no second process).

A request that gets no answer leaves a reversal in the store-and-forward queue (SQLite,
survives a restart), sent before anything else until the host acknowledges it. The same
queue carries location alerts: signed reports of a fix the terminal refused to sell at,
sent (in counter order, before any newer report) once the host is reachable.

With `locate` (a function giving a freshly signed location report, or None without a
fix), every payment request carries one (59/DF03); the host's fence terms (59/DF20,
from sign-on and every location report) are kept for the terminal's own check.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

from acquirer.protocol import (MTI, EntryMode, Field60, Frame, FrameError, NetworkCode, Original, PrivateTag,
                               ProtocolError, ResponseCode, TxnType, decode, encode, mac_input, private_fields,
                               read_frame_blocking, read_private)
from acquirer.fence.terms import FenceTerms, FenceTermsError
from acquirer.protocol.settlement import encode_items, encode_totals
from keys.errors import MACError


class SecureWorld(Protocol):
    """What the online session asks of the secure world. No method returns a key."""

    @property
    def device_id(self) -> str: ...
    @property
    def device_public_key(self) -> bytes: ...
    def sign_key_download(self, terminal_id: str, nonce: bytes) -> bytes: ...
    def pin_host_key(self, raw: bytes) -> None: ...
    def install_tmk(self, sealed_envelope: bytes, terminal_id: str, nonce: bytes) -> str: ...
    def install_working_keys(self, blocks: str, check_values: dict[str, str]) -> dict[str, str]: ...
    def attest(self, measurement: bytes | None, nonce: bytes) -> bytes: ...
    def mac(self, data: bytes) -> bytes: ...
    def verify_mac(self, data: bytes, tag: bytes) -> None: ...


class HostUnavailable(Exception):
    """No answer from the host; for a financial request a reversal is queued."""


class HostRefused(Exception):
    """The host answered with a non-approval the caller must act on (sign on, locked...)."""

    def __init__(self, code: str, text: str):
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text


@dataclass(frozen=True)
class CardData:
    """What the kernel hands the normal world: protected and masked only."""

    sealed_track2: bytes  # under the TDK
    masked_pan: str
    psn: str = "00"
    icc: bytes = b""  # field 55 TLVs
    pin_block: bytes | None = None
    entry_mode: EntryMode = EntryMode.CONTACTLESS_NO_PIN
    risk_flags: tuple[str, ...] = ()


@dataclass
class Outcome:
    code: str
    text: str
    stan: str
    batch: str
    rrn: str = ""
    auth_code: str = ""
    fields: dict = field(default_factory=dict, repr=False)

    @property
    def approved(self) -> bool:
        return self.code == ResponseCode.APPROVED.value

    @property
    def private(self) -> dict:
        """Field 59 of the response as {PrivateTag: bytes}."""
        return read_private(self.fields)

    @property
    def code_url(self) -> str:
        """The merchant QR to show (59/DF10), after an approved `precreate`."""
        return self.private.get(PrivateTag.MERCHANT_QR, b"").decode("ascii", "replace")

    @property
    def step_up(self) -> str:
        """What the host asks for with a 1A (59/DF13), e.g. PASSCODE."""
        return self.private.get(PrivateTag.STEP_UP, b"").decode("ascii", "replace")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS saf (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, stan TEXT NOT NULL, batch TEXT NOT NULL,
    fields TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, acked_at REAL
);
"""


class OnlineSession:
    def __init__(self, host: str, port: int, terminal_id: str, merchant_id: str, keys: SecureWorld,
                 journal_path: str | os.PathLike, timeout: float = 10.0,
                 locate: Callable[[], bytes | None] | None = None):
        self.address = (host, port)
        self.locate = locate
        self.terminal_id = terminal_id
        self.merchant_id = merchant_id
        self.keys = keys
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._db = sqlite3.connect(str(journal_path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    # --- small persistent state --------------------------------------------------
    def _get(self, k: str, default: str = "") -> str:
        row = self._db.execute("SELECT v FROM state WHERE k=?", (k,)).fetchone()
        return row[0] if row else default

    def _set(self, k: str, v: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO state VALUES (?,?)", (k, v))

    @property
    def batch(self) -> str:
        return self._get("batch", "000000")

    def next_stan(self) -> str:
        stan = int(self._get("stan", "0")) % 999999 + 1
        self._set("stan", str(stan))
        return f"{stan:06d}"

    # --- transport ----------------------------------------------------------------
    def connect(self) -> None:
        if self._sock is None:
            try:
                self._sock = socket.create_connection(self.address, timeout=self.timeout)
            except OSError as exc:
                raise HostUnavailable(f"cannot reach the host at {self.address[0]}:{self.address[1]}: {exc}") from None
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _exchange(self, fields: dict, maced: bool) -> dict:
        raw = encode(fields, self.keys.mac if maced else None)
        self.connect()
        try:
            self._sock.sendall(Frame(raw, 0x0000, 0x0001).encode())
            while True:
                frame = read_frame_blocking(self._sock)
                if frame is None:
                    raise HostUnavailable("the host closed the connection")
                doc = decode(frame.message)
                if doc.get("11") == fields["11"] and doc.get("41") == self.terminal_id and \
                        doc.get("t") == MTI(fields["t"]).response.value:
                    break  # anything else is a late answer to an earlier request: skip it
        except (OSError, FrameError, ProtocolError) as exc:
            self.close()
            raise HostUnavailable(f"no answer from the host: {exc}") from None
        if maced and doc.get("39") != ResponseCode.MAC_ERROR.value:
            try:
                data, tag = mac_input(frame.message)
                self.keys.verify_mac(data, tag)
            except (ProtocolError, MACError):
                raise HostUnavailable("the host's response failed MAC verification") from None
        return doc

    def _base(self, mti: MTI, type_code: TxnType, network: str = "000", stan: str | None = None) -> dict:
        return {"t": mti.value, "11": stan or self.next_stan(), "41": self.terminal_id, "42": self.merchant_id,
                "60": Field60(type_code.value, self.batch, network).encode()}

    # --- network management -------------------------------------------------------
    def activate(self, code: str) -> None:
        fields = self._base(MTI.NETWORK_REQUEST, TxnType.ACTIVATION, NetworkCode.ACTIVATE.value)
        fields["59"] = private_fields({PrivateTag.ACTIVATION_CODE: code.encode(),
                                       PrivateTag.DEVICE_ID: self.keys.device_id.encode(),
                                       PrivateTag.DEVICE_PUBLIC_KEY: self.keys.device_public_key})
        doc = self._checked(self._exchange(fields, False))
        self.keys.pin_host_key(read_private(doc)[PrivateTag.HOST_PUBLIC_KEY])

    def download_keys(self) -> str:
        nonce = os.urandom(16)
        fields = self._base(MTI.NETWORK_REQUEST, TxnType.KEY_DOWNLOAD, NetworkCode.KEY_DOWNLOAD.value)
        fields["59"] = private_fields({PrivateTag.NONCE: nonce,
                                       PrivateTag.ATTESTATION: self.keys.sign_key_download(self.terminal_id, nonce)})
        doc = self._checked(self._exchange(fields, False))
        return self.keys.install_tmk(bytes.fromhex(doc["62"]), self.terminal_id, nonce)

    def sign_on(self, measurement: bytes | None = None) -> dict[str, str]:
        """Challenge, attest, install fresh working keys. A TEE measures itself (pass
        None); the in-process SecureKeys is told what to claim."""
        challenge = self._checked(self._exchange(
            self._base(MTI.NETWORK_REQUEST, TxnType.SIGN_ON, NetworkCode.CHALLENGE.value), False))
        nonce = read_private(challenge)[PrivateTag.NONCE]
        fields = self._base(MTI.NETWORK_REQUEST, TxnType.SIGN_ON, NetworkCode.SIGN_ON.value)
        fields["59"] = private_fields({PrivateTag.NONCE: nonce,
                                       PrivateTag.ATTESTATION: self.keys.attest(measurement, nonce)})
        doc = self._checked(self._exchange(fields, False))
        kcvs = dict(item.split(":") for item in read_private(doc)[PrivateTag.KEY_CHECK_VALUES].decode().split())
        installed = self.keys.install_working_keys(bytes.fromhex(doc["62"]).decode("ascii"), kcvs)
        self._set("batch", Field60.decode(doc["60"]).batch)
        self._keep_terms(doc)
        return installed

    def static_qr(self) -> str:
        """The URL of the merchant's static aggregated code ("one code for every wallet"),
        to print: 0800 60.3 = 360, answered in 59/DF10. Not MAC-ed: the code is public."""
        fields = self._base(MTI.NETWORK_REQUEST, TxnType.SIGN_ON, NetworkCode.STATIC_QR.value)
        doc = self._checked(self._exchange(fields, False))
        return read_private(doc)[PrivateTag.MERCHANT_QR].decode("ascii")

    # --- location -----------------------------------------------------------------
    @property
    def fence_terms(self) -> FenceTerms | None:
        """The fence the host last told this terminal (None: not fenced, or not told yet)."""
        raw = self._get("fence_terms")
        return FenceTerms.decode(raw.encode()) if raw else None

    def _keep_terms(self, doc: dict) -> None:
        raw = read_private(doc).get(PrivateTag.FENCE_TERMS)
        if raw is None:
            return
        try:
            FenceTerms.decode(raw)
        except FenceTermsError:
            return  # keep the terms we had; the host checks every fix anyway
        self._set("fence_terms", raw.decode())

    def _location_fields(self, report: bytes) -> dict:
        fields = self._base(MTI.NETWORK_REQUEST, TxnType.LOCATION, NetworkCode.LOCATION_REPORT.value)
        fields["59"] = private_fields({PrivateTag.LOCATION: report})
        return fields

    def report_location(self, report: bytes) -> "Outcome":
        """Send one signed report (0800, 60.3 = 401); queued alerts go first, so the host
        sees the counters in order. Answers 00 (inside, or no fence) or G1 with why."""
        self.flush_reversals()
        doc = self._exchange(self._location_fields(report), False)
        self._keep_terms(doc)
        return Outcome(doc.get("39", "??"), doc.get("44", ""), doc.get("11", ""), self.batch, fields=doc)

    def queue_location_alert(self, report: bytes) -> int:
        """Keep a report the terminal refused to sell at, for the host's alert list."""
        fields = self._location_fields(report)
        cur = self._db.execute("INSERT INTO saf (kind, stan, batch, fields, created_at) VALUES (?,?,?,?,?)",
                               ("location", fields["11"], self.batch, json.dumps(fields), time.time()))
        return cur.lastrowid

    def _with_location(self, fields: dict) -> dict:
        """Attach a freshly signed report to a payment request (no fix: none attached,
        and the host decides by its policy)."""
        report = self.locate() if self.locate is not None else None
        if report:
            items = read_private(fields)
            items[PrivateTag.LOCATION] = report
            fields["59"] = private_fields(items)
        return fields

    def _checked(self, doc: dict) -> dict:
        if doc.get("39") != ResponseCode.APPROVED.value:
            raise HostRefused(doc.get("39", "??"), doc.get("44", ""))
        return doc

    # --- financial ----------------------------------------------------------------
    def _financial(self, fields: dict, reversible: bool, payment: bool = False) -> Outcome:
        """Send a MAC-ed request. A `payment` (sale, QR sale, merchant QR, face sale) carries a
        signed location report, signed after the queued reports went: counters stay in order."""
        self.flush_reversals()
        if payment:
            self._with_location(fields)
        if reversible:  # queued before sending: a crash between send and answer still reverses
            saf_id = self._queue_reversal(fields)
        try:
            doc = self._exchange(fields, True)
        except HostUnavailable:
            raise HostUnavailable("offline, reversal queued" if reversible else "host unavailable") from None
        if reversible:
            self._db.execute("UPDATE saf SET acked_at=? WHERE id=?", (time.time(), saf_id))
        return Outcome(doc.get("39", "??"), doc.get("44", ""), fields["11"], self.batch, doc.get("37", ""),
                       doc.get("38", ""), doc)

    def sale(self, amount: int, card: CardData, type_code: TxnType = TxnType.SALE) -> Outcome:
        fields = self._base(MTI.FINANCIAL_REQUEST, type_code)
        now = time.localtime()
        fields.update({"3": "000000", "4": f"{amount:012d}", "12": time.strftime("%H%M%S", now),
                       "13": time.strftime("%m%d", now), "22": card.entry_mode.value, "23": f"{int(card.psn):03d}",
                       "25": "00", "35": card.sealed_track2.hex().upper(), "49": "156"})
        if card.icc:
            fields["55"] = card.icc.hex().upper()
        if card.pin_block:
            fields["52"] = card.pin_block.hex().upper()
            fields["26"] = "12"
        if card.risk_flags:
            fields["59"] = private_fields({PrivateTag.RISK_FLAGS: ",".join(card.risk_flags).encode()})
        return self._financial(fields, reversible=True, payment=True)

    def void(self, original: Outcome, amount: int) -> Outcome:
        fields = self._base(MTI.FINANCIAL_REQUEST, TxnType.VOID)
        fields.update({"3": "200000", "4": f"{amount:012d}", "25": "00", "49": "156",
                       "61": Original(original.batch, original.stan, "0000", original.rrn).encode()})
        return self._financial(fields, reversible=True)

    def refund(self, original_batch: str, original_stan: str, amount: int, original_rrn: str = "") -> Outcome:
        fields = self._base(MTI.ADVICE_REQUEST, TxnType.REFUND)
        fields.update({"3": "200000", "4": f"{amount:012d}", "25": "00", "49": "156",
                       "61": Original(original_batch, original_stan, "0000", original_rrn).encode()})
        return self._financial(fields, reversible=False)

    def query(self, original_batch: str, original_stan: str, original_rrn: str = "") -> Outcome:
        fields = self._base(MTI.STATUS_REQUEST, TxnType.QUERY)
        fields.update({"3": "300000", "61": Original(original_batch, original_stan, "0000", original_rrn).encode()})
        return self._financial(fields, reversible=False)

    # --- wallets and face -------------------------------------------------------------
    # docs/protocol.md, "QR and face": order id at the wallet = terminal id-batch-STAN
    QR_SALE_TIMEOUT = 75.0  # the host may poll a customer confirming on the phone for up to 60 s

    @contextlib.contextmanager
    def _patience(self, seconds: float) -> Iterator[None]:
        """A longer socket timeout for one exchange the host may hold on purpose."""
        previous, self.timeout = self.timeout, max(self.timeout, seconds)
        if self._sock is not None:
            self._sock.settimeout(self.timeout)
        try:
            yield
        finally:
            self.timeout = previous
            if self._sock is not None:
                self._sock.settimeout(previous)

    def _wallet_fields(self, type_code: TxnType, amount: int, processing: str, entry: EntryMode,
                       stan: str | None = None) -> dict:
        fields = self._base(MTI.FINANCIAL_REQUEST, type_code, stan=stan)
        now = time.localtime()
        fields.update({"3": processing, "4": f"{amount:012d}", "12": time.strftime("%H%M%S", now),
                       "13": time.strftime("%m%d", now), "22": entry.value, "25": "00", "49": "156"})
        return fields

    def qr_sale(self, amount: int, code: str, timeout: float = QR_SALE_TIMEOUT) -> Outcome:
        """Pay with a customer-presented code (as scanned): 0200 type 31. Declines of note:
        59 code already used, 54 expired, 14 not a payment code, 51 balance."""
        fields = self._wallet_fields(TxnType.QR_SALE, amount, "000000", EntryMode.QR_CODE)
        fields["59"] = private_fields({PrivateTag.QR_CODE: code.strip().encode("ascii", "replace")})
        with self._patience(timeout):
            return self._financial(fields, reversible=True, payment=True)

    def precreate(self, amount: int, wallet: str) -> Outcome:
        """A merchant QR for `wallet` (alipay, wechat or unionpay): 0200 type 32. Approved:
        show `outcome.code_url` as a QR, then call `wait_paid(outcome)`. With no answer the
        queued reversal closes the QR at the wallet."""
        fields = self._wallet_fields(TxnType.QR_PRECREATE, amount, "380000", EntryMode.QR_CODE)
        fields["59"] = private_fields({PrivateTag.CHANNEL: wallet.encode("ascii")})
        return self._financial(fields, reversible=True, payment=True)

    def wait_paid(self, precreated: Outcome, timeout: float = 60.0, cancel: bool = True) -> Outcome:
        """Until the customer pays the QR of `precreated` or `timeout` seconds pass.

        Each wait is a 0200 type 32 naming the QR in field 61; the host holds it a few
        seconds and answers 00 (paid), a decline (closed), or U1 (not yet: ask again). At
        the deadline, with `cancel`, the precreate is reversed, which closes the QR (or
        refunds a payment that raced the close) and the answer is 98. An approved outcome
        carries the QR's own batch and STAN: that sale is what `void`/`refund` name."""
        deadline = time.monotonic() + timeout
        while True:
            fields = self._wallet_fields(TxnType.QR_PRECREATE, int(precreated.fields["4"]), "380000",
                                         EntryMode.QR_CODE)
            fields["61"] = Original(precreated.batch, precreated.stan, "0000", "").encode()
            out = self._financial(fields, reversible=False)  # a wait moves no money; the precreate's reversal undoes
            if out.code != ResponseCode.USER_PAYING.value:
                return Outcome(out.code, out.text, precreated.stan, precreated.batch, out.rrn, out.auth_code,
                               out.fields)
            if time.monotonic() >= deadline:
                break
        if not cancel:
            return out
        self.cancel_precreate(precreated)
        return Outcome(ResponseCode.ISSUER_TIMEOUT.value, "customer did not pay in time: QR closed",
                       precreated.stan, precreated.batch, fields=out.fields)

    def cancel_precreate(self, precreated: Outcome) -> None:
        """Withdraw a merchant QR: its reversal closes it at the wallet (refunds it if paid)."""
        self._queue_reversal(precreated.fields)
        self.flush_reversals()

    def face_sale(self, amount: int, template_field: bytes,
                  passcode_block: Callable[[str], bytes] | None = None) -> Outcome:
        """A face sale: 0200 type 33 with the sealed template (59/DF02).

        First without `passcode_block`: a recognised face gets 1A with `outcome.step_up ==
        "PASSCODE"`. Then again with `passcode_block`, a function of the new request's STAN
        giving 59/DF0C (the block's PAN is made from the STAN), for example
        `lambda stan: terminal.face.checkout.passcode_block(tee.pin_block, passcode, stan)`.
        Declines: 05 not recognised, 55 wrong passcode, 75 locked, 58 no liveness."""
        stan = self.next_stan()
        fields = self._wallet_fields(TxnType.FACE_SALE, amount, "000000", EntryMode.FACE, stan=stan)
        items = {PrivateTag.FACE_TEMPLATE: template_field}
        if passcode_block is not None:
            items[PrivateTag.PASSCODE_BLOCK] = passcode_block(stan)
        fields["59"] = private_fields(items)
        with self._patience(self.QR_SALE_TIMEOUT):
            # the step-up moves no money: nothing to reverse
            return self._financial(fields, reversible=passcode_block is not None, payment=True)

    # --- settlement ---------------------------------------------------------------
    def settle(self, totals: dict[str, tuple[int, int, int, int]]) -> Outcome:
        """Send the batch totals per channel; when balanced the host closes the batch and
        announces the next one, which this terminal then uses."""
        fields = self._base(MTI.SETTLEMENT_REQUEST, TxnType.SETTLEMENT, "201")
        fields.update({"48": encode_totals(totals), "49": "156"})
        out = self._financial(fields, reversible=False)
        if out.approved and out.text == "BALANCED":
            self._set("batch", Field60.decode(out.fields["60"]).batch)
        return out

    def upload_batch(self, items: list[tuple[str, str, str, int, str]], per_message: int = 20) -> Outcome:
        """Upload every transaction (STAN, kind, channel, amount, RRN); the last message
        makes the host compare, report the differences and close the batch."""
        chunks = [items[i : i + per_message] for i in range(0, len(items), per_message)] or [[]]
        out = None
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            fields = self._base(MTI.BATCH_UPLOAD_REQUEST, TxnType.BATCH_UPLOAD, "202" if last else "201")
            fields["48"] = encode_items(chunk)
            out = self._financial(fields, reversible=False)
            if not out.approved:
                return out
        self._set("batch", Field60.decode(out.fields["60"]).batch)
        return out

    # --- reversals ----------------------------------------------------------------
    def _queue_reversal(self, original: dict) -> int:
        rev = {k: original[k] for k in ("3", "4", "11", "22", "41", "42", "49", "60") if k in original}
        rev.update({"t": MTI.REVERSAL_REQUEST.value, "25": "98", "39": "98"})
        cur = self._db.execute("INSERT INTO saf (kind, stan, batch, fields, created_at) VALUES (?,?,?,?,?)",
                               ("reversal", original["11"], self.batch, json.dumps(rev), time.time()))
        return cur.lastrowid

    def pending_reversals(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM saf WHERE acked_at IS NULL AND kind != 'location'").fetchone()[0]

    def pending_alerts(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM saf WHERE acked_at IS NULL AND kind = 'location'").fetchone()[0]

    def flush_reversals(self) -> int:
        """Send every queued reversal until the host acknowledges it; returns how many were sent.

        Raises HostUnavailable if the host does not answer (they stay queued)."""
        sent = 0
        for saf_id, kind, fields in list(self._db.execute(
                "SELECT id, kind, fields FROM saf WHERE acked_at IS NULL ORDER BY id")):
            self._db.execute("UPDATE saf SET attempts=attempts+1 WHERE id=?", (saf_id,))
            if kind == "location":  # any answer means the host has judged (and alerted on) it
                self._exchange(json.loads(fields), False)
                self._db.execute("UPDATE saf SET acked_at=? WHERE id=?", (time.time(), saf_id))
                continue
            doc = self._exchange(json.loads(fields), True)
            if doc.get("39") in (ResponseCode.APPROVED.value, ResponseCode.ORIGINAL_NOT_FOUND.value):
                self._db.execute("UPDATE saf SET acked_at=? WHERE id=?", (time.time(), saf_id))
                sent += 1
        return sent
