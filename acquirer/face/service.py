"""Face pay at the host: enrolment, 1:N identification, passcode step-up, lockout.

    pay = FacePay(state / "face.db", hsm)
    candidate = pay.identify(df02, decrypt)           # or FaceDecline(code, reason)
    -> respond 1A with 59/DF13 = b"PASSCODE"; the terminal asks for the passcode
    payment = pay.confirm_passcode(candidate, code)   # or FaceDecline 55 / 75
    -> debit payment.wallet_account

Decision rule (evidence in docs/face.md): the nearest customer must be within
MATCH_THRESHOLD (0.5, dlib's L2 distance) and every other customer at least MIN_MARGIN
(0.1) further away; a face close to two customers is refused rather than guessed.
Nothing here logs a template or a passcode.
"""
from __future__ import annotations

import hmac
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from acquirer.protocol import ResponseCode
from keys.hsm import HSM

from . import passcode as passcodes
from .gallery import Gallery
from .models import MODEL_ID
from .store import FaceStore, FaceStoreError
from .wire import TEMPLATE_DIM, open_template

log = logging.getLogger("acquirer.face")

TEMPLATE_KEY = "host/FACE"  # SM4 data key (TDK usage) sealing templates at rest
TEMPLATE_MAC_KEY = "host/FACE_MAC"  # HMAC-SM3 key (TOKEN usage): seal_data is CBC, which is malleable
MATCH_THRESHOLD = 0.5
MIN_MARGIN = 0.1
MAX_PASSCODE_FAILURES = 3
CANDIDATE_TTL_S = 300.0  # a face seen five minutes ago is not the customer at the till now
_AT_REST_MAGIC = b"FTR1"
_CUSTOMER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


class FaceEnrolError(ValueError):
    """Enrolment refused; nothing was stored."""


class FaceDecline(Exception):
    """A face payment refused: `code` for field 39, `reason` for the cashier (field 44)."""

    def __init__(self, code: ResponseCode, reason: str):
        super().__init__(f"{code.value} {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Candidate:
    """The customer a face matched; a payment needs their passcode next (DF13 PASSCODE)."""

    customer_id: str
    wallet_account: str
    distance: float
    runner_up_distance: float
    issued_at: float
    step_up: str = "PASSCODE"


@dataclass(frozen=True)
class FacePayment:
    customer_id: str
    wallet_account: str
    distance: float


@dataclass(frozen=True)
class Enrolment:
    customer_id: str
    wallet_account: str
    templates: int
    spread: float  # the largest distance between two of the customer's own photos
    nearest_other: float  # distance to the closest other enrolled customer (inf if none)
    notes: list[str] = field(default_factory=list)


class FacePay:
    def __init__(self, path, hsm: HSM, *, threshold: float = MATCH_THRESHOLD, margin: float = MIN_MARGIN,
                 max_failures: int = MAX_PASSCODE_FAILURES, require_liveness: bool = True,
                 clock: Callable[[], float] = time.time):
        self.hsm = hsm
        self.threshold, self.margin, self.max_failures = threshold, margin, max_failures
        self.require_liveness = require_liveness
        self.clock = clock
        for name, usage in ((TEMPLATE_KEY, "TDK"), (TEMPLATE_MAC_KEY, "TOKEN"), (passcodes.PEPPER_KEY, "TOKEN")):
            if not hsm.exists(name):
                hsm.generate(name, "SM4", usage)
        self.store = FaceStore(path, clock)
        self.gallery = Gallery()
        self._load()

    def close(self) -> None:
        self.store.close()

    # --- templates at rest -------------------------------------------------------
    def _tag(self, customer_id: str, sealed: bytes) -> str:
        return self.hsm.token(TEMPLATE_MAC_KEY, _AT_REST_MAGIC + customer_id.encode("ascii") + b"\x00" + sealed)

    def _seal(self, customer_id: str, template: np.ndarray) -> tuple[bytes, str]:
        # encrypt, then MAC with the customer id: a row edited or moved to another customer fails
        cid = customer_id.encode("ascii")
        clear = _AT_REST_MAGIC + MODEL_ID + bytes([len(cid)]) + cid + np.asarray(template, "<f4").tobytes()
        sealed = self.hsm.seal_data(TEMPLATE_KEY, clear)
        return sealed, self._tag(customer_id, sealed)

    def _open(self, row_id: int, customer_id: str, sealed: bytes, tag: str) -> np.ndarray:
        altered = FaceStoreError(f"template row {row_id} does not open as customer {customer_id}'s: "
                                 "the face store was altered")
        if not hmac.compare_digest(self._tag(customer_id, sealed), tag):
            raise altered
        clear = self.hsm.open_data(TEMPLATE_KEY, sealed)
        n = clear[8] if len(clear) > 8 else -1
        owner = clear[9:9 + n] if n >= 0 else b""
        if clear[:4] != _AT_REST_MAGIC or owner != customer_id.encode("ascii") or \
                len(clear) != 9 + n + 4 * TEMPLATE_DIM:
            raise altered
        if clear[4:8] != MODEL_ID:
            raise FaceStoreError(f"template row {row_id} was made by face model {clear[4:8].hex()}, this host runs "
                                 f"{MODEL_ID.hex()}: re-enrol the customers")
        return np.frombuffer(clear, "<f4", offset=9 + n).astype(np.float32)

    def _load(self) -> None:
        by_customer: dict[str, list[np.ndarray]] = {}
        for row_id, customer_id, _model, sealed, tag in self.store.templates():
            by_customer.setdefault(customer_id, []).append(self._open(row_id, customer_id, sealed, tag))
        for customer_id, templates in by_customer.items():
            self.gallery.add(customer_id, np.stack(templates))
        log.info("face gallery loaded: %d templates of %d customers", len(self.gallery), self.gallery.customers)

    # --- enrolment -----------------------------------------------------------------
    def enrol(self, customer_id: str, photos: Iterable, wallet_account: str, passcode: str, *,
              replace: bool = False, operator: str = "") -> Enrolment:
        """Enrol from photos (paths, encoded bytes or BGR arrays), one template per photo."""
        from .template import FaceQualityError, face_template  # dlib and OpenCV only where photos are read

        self._check_identity(customer_id, wallet_account, passcode)
        templates = []
        for i, photo in enumerate(photos, 1):
            label = f"photo {i}" + (f" ({os.fspath(photo)})" if isinstance(photo, (str, os.PathLike)) else "")
            try:
                templates.append(face_template(photo)[0])
            except FaceQualityError as exc:
                raise FaceEnrolError(f"{label}: {exc}") from None
        return self.enrol_templates(customer_id, templates, wallet_account, passcode, replace=replace,
                                    operator=operator)

    def enrol_templates(self, customer_id: str, templates, wallet_account: str, passcode: str, *,
                        replace: bool = False, operator: str = "") -> Enrolment:
        """Enrol templates computed elsewhere (an enrolment kiosk, a migration)."""
        self._check_identity(customer_id, wallet_account, passcode)
        block = np.asarray(templates, np.float32).reshape(-1, TEMPLATE_DIM) if len(templates) else None
        if block is None:
            raise FaceEnrolError("enrolment needs at least one photo of the customer")
        if not np.isfinite(block).all():
            raise FaceEnrolError("a template holds non-finite numbers")
        if self.store.customer(customer_id) is not None and not replace:
            raise FaceEnrolError(f"customer {customer_id} is already enrolled: re-enrol with replace")
        spread = 0.0
        for i in range(len(block)):
            for j in range(i + 1, len(block)):
                d = float(np.linalg.norm(block[i] - block[j]))
                spread = max(spread, d)
                if d > self.threshold:
                    raise FaceEnrolError(f"photos {i + 1} and {j + 1} do not show the same person "
                                         f"(distance {d:.2f}, at most {self.threshold})")
        nearest_other = math.inf
        for t in block:
            found = self.gallery.search(t)
            if found is None:
                break
            other, d = ((found.customer_id, found.distance) if found.customer_id != customer_id
                        else (found.runner_up_id, found.runner_up_distance))
            nearest_other = min(nearest_other, d)
            # a face this close to another customer's would make 1:N refuse both of them
            if other is not None and d < self.threshold + self.margin:
                raise FaceEnrolError(f"this face is {d:.2f} from enrolled customer {other} (at least "
                                     f"{self.threshold + self.margin:.2f} needed): same person twice? "
                                     "refer to risk review")
        record = passcodes.make_record(self._token(passcode))
        sealed = [self._seal(customer_id, t) for t in block]
        try:
            self.store.put_customer(customer_id, wallet_account, record, MODEL_ID.hex(), sealed,
                                    replace=replace, operator=operator)
        except FaceStoreError as exc:
            raise FaceEnrolError(str(exc)) from None
        self.gallery.remove(customer_id)
        self.gallery.add(customer_id, block)
        notes = [] if len(block) > 1 else ["one photo only: enrol two or more for steadier matching"]
        log.info("face enrolled: customer %s, %d templates, wallet %s", customer_id, len(block), wallet_account)
        return Enrolment(customer_id, wallet_account, len(block), spread, nearest_other, notes)

    @staticmethod
    def _check_identity(customer_id: str, wallet_account: str, passcode: str) -> None:
        if not isinstance(customer_id, str) or not _CUSTOMER_ID.fullmatch(customer_id):
            raise FaceEnrolError("customer id must be 1-32 letters, digits, '_', '.' or '-', starting with a "
                                 "letter or digit")
        if not isinstance(wallet_account, str) or not 1 <= len(wallet_account) <= 64 or \
                not wallet_account.isprintable():
            raise FaceEnrolError("wallet account must be 1-64 printable characters")
        try:
            passcodes.check_new(passcode)
        except passcodes.PasscodeError as exc:
            raise FaceEnrolError(str(exc)) from None

    def _token(self, passcode: str) -> str:
        if not isinstance(passcode, str):
            raise FaceDecline(ResponseCode.FORMAT_ERROR, "the passcode must be digits")
        return self.hsm.token(passcodes.PEPPER_KEY, passcode.encode("ascii", "replace"))

    # --- paying --------------------------------------------------------------------
    def identify(self, sealed_template: bytes, decrypt: Callable[[bytes], bytes]) -> Candidate:
        """DF02 -> the matched customer, or FaceDecline. `decrypt` opens under the terminal's TDK."""
        from .wire import FaceWireError

        try:
            wire = open_template(sealed_template, decrypt)
        except FaceWireError as exc:
            raise FaceDecline(ResponseCode.FORMAT_ERROR, str(exc)) from None
        return self.identify_template(wire.template, liveness=wire.liveness)

    def identify_template(self, template: np.ndarray, *, liveness: bool) -> Candidate:
        if self.require_liveness and not liveness:
            raise FaceDecline(ResponseCode.NOT_PERMITTED_TERMINAL,
                              "face pay needs the head-turn liveness check on this terminal")
        found = self.gallery.search(template)
        if found is None or found.distance > self.threshold:
            raise FaceDecline(ResponseCode.DO_NOT_HONOR, "face not recognised: pay another way")
        if found.runner_up_distance - found.distance < self.margin:
            log.warning("face ambiguous: %s at %.3f, %s at %.3f", found.customer_id, found.distance,
                        found.runner_up_id, found.runner_up_distance)
            raise FaceDecline(ResponseCode.DO_NOT_HONOR, "face matches more than one customer: pay another way")
        record = self.store.customer(found.customer_id)
        if record is None:  # withdrawn between the search and now
            raise FaceDecline(ResponseCode.DO_NOT_HONOR, "face not recognised: pay another way")
        if record.locked:
            raise FaceDecline(ResponseCode.PIN_TRIES_EXCEEDED, "face pay is locked for this customer after wrong "
                                                               "passcodes: ask the acquirer to unlock it")
        log.info("face matched customer %s at %.3f (runner-up %.3f)", found.customer_id, found.distance,
                 found.runner_up_distance)
        return Candidate(found.customer_id, record.wallet_account, found.distance, found.runner_up_distance,
                         self.clock())

    def confirm_passcode(self, candidate: Candidate, passcode: str) -> FacePayment:
        """The second factor. Wrong passcodes count; the last allowed one locks face pay."""
        return self.confirm_passcode_token(candidate, self._token(passcode))

    def confirm_passcode_token(self, candidate: Candidate, token: str) -> FacePayment:
        """As `confirm_passcode`, given the HSM's token of the passcode (see docs/face.md:
        an HSM operation can make it straight from the DF0C block, the passcode never clear)."""
        if self.clock() - candidate.issued_at > CANDIDATE_TTL_S:
            raise FaceDecline(ResponseCode.INVALID_TRANSACTION, "face capture expired: capture the face again")
        record = self.store.customer(candidate.customer_id)
        if record is None:
            raise FaceDecline(ResponseCode.DO_NOT_HONOR, "face not recognised: pay another way")
        if record.locked:
            raise FaceDecline(ResponseCode.PIN_TRIES_EXCEEDED, "face pay is locked for this customer after wrong "
                                                               "passcodes: ask the acquirer to unlock it")
        if passcodes.matches(record.passcode, token):
            self.store.reset_failures(record.customer_id)
            return FacePayment(record.customer_id, record.wallet_account, candidate.distance)
        failures, locked = self.store.record_failure(record.customer_id, self.max_failures)
        log.warning("face pay: wrong passcode for customer %s (%d in a row)", record.customer_id, failures)
        if locked:
            raise FaceDecline(ResponseCode.PIN_TRIES_EXCEEDED,
                              f"wrong passcode {failures} times: face pay is now locked for this customer")
        left = self.max_failures - failures
        raise FaceDecline(ResponseCode.INCORRECT_PIN, f"wrong passcode: {left} {'try' if left == 1 else 'tries'} left")

    # --- operations ------------------------------------------------------------------
    def unlock(self, customer_id: str, operator: str, reason: str = "") -> None:
        if not operator:
            raise FaceStoreError("unlocking face pay needs the operator's name for the audit trail")
        self.store.unlock(customer_id, operator, reason)
        log.info("face pay unlocked for customer %s by %s", customer_id, operator)

    def withdraw(self, customer_id: str, operator: str, reason: str = "") -> None:
        """Delete a customer's face data (the customer withdrew consent)."""
        self.store.delete(customer_id, operator, reason)
        self.gallery.remove(customer_id)
