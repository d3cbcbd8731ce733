"""The trusted application: what each TEE command does, over the keys it alone holds.

It owns the `SecureKeys` (device identity, host key, TMK, working keys; persisted only
through the sealed store), the measurement taken at start, the card of the current
transaction and the PIN entry in progress. When the sealed store fails to open, or
changes under it while running, it turns TAMPERED: every command but STATUS and
RESET_PROVISIONING answers SECURITY until the terminal is re-provisioned.
"""
from __future__ import annotations

import hmac
import threading
from pathlib import Path

from acquirer.protocol.attestation import AttestationError
from keys.errors import (CryptoError, EnvelopeError, InvalidKey, InvalidSignature, KeyBlockError, MACError,
                         PinBlockError)
from hardware.location import LocationCancelled, LocationError
from hardware.location.spec import LocationSpecError, fix_source_kind, open_location
from keys.model import KeyUsage
from terminal.secure.keystore import WORKING, NotProvisioned, SecureKeys
from terminal.secure.sealed import SealedStore, SealedStoreError
from . import api
from .api import Command, ErrorCode, TeeError, TeeState
from .card import CardReaderPath, HeldCard, KernelConfigFile
from .measurement import measure
from .pinpad import PASSCODE_MIN, PIN_MAX, PIN_MIN, PinEntry, PinEntryError

# Library errors a command may raise, as the code the normal world gets.
_ERRORS: tuple[tuple[type[BaseException], ErrorCode], ...] = (
    (NotProvisioned, ErrorCode.NOT_PROVISIONED),
    (SealedStoreError, ErrorCode.SECURITY),
    (MACError, ErrorCode.MAC_INVALID),
    ((EnvelopeError, KeyBlockError, InvalidKey, InvalidSignature), ErrorCode.BAD_FORMAT),
    ((PinBlockError, PinEntryError, AttestationError), ErrorCode.BAD_PARAMETERS),
    (CryptoError, ErrorCode.GENERIC),
)


class TrustedApp:
    def __init__(self, state_dir: str | Path, reader: str | None = None, kernel_config: str | None = None,
                 ca_keys: str | None = None, location: str | None = None):
        self.state_dir = Path(state_dir)
        config = KernelConfigFile.read(kernel_config)  # read once: what is measured is what runs
        self.measurement = measure(config.raw)
        self.cards = CardReaderPath(reader, config, ca_keys)
        self._store: SealedStore | None = None
        self._keys: SecureKeys | None = None
        self._fault = ""
        self._card: HeldCard | None = None
        self._pin: PinEntry | None = None
        # the TEE reads its location source itself (a trusted path, like the reader):
        # the normal world cannot hand it a position to sign
        self._location_spec = location
        self._location = None
        self._open()

    def _open(self) -> None:
        """First start creates the device key and id; later starts unseal them."""
        try:
            self._store = SealedStore(self.state_dir)
            self._keys = SecureKeys(self._store)
            self._fault = ""
        except SealedStoreError as exc:
            self._tampered(str(exc))

    def _tampered(self, why: str) -> None:
        self.end_session()
        self._keys = None
        self._fault = why

    # --- dispatch ---------------------------------------------------------------
    def handle(self, command: Command, params, cancel: threading.Event):
        """Run one command. The server runs one at a time, so no lock is needed here."""
        if command is Command.STATUS:
            return self._status()
        if command is Command.RESET_PROVISIONING:
            return self._reset()
        keys = self._healthy()
        try:
            return self._HANDLERS[command](self, keys, params, cancel)
        except TeeError:
            raise
        except Exception as exc:
            for kinds, code in _ERRORS:
                if isinstance(exc, kinds):
                    if code is ErrorCode.SECURITY:
                        self._tampered(str(exc))
                    raise TeeError(code, str(exc)) from None
            raise

    def _healthy(self) -> SecureKeys:
        if self._keys is not None:
            try:
                self._store.check()
            except SealedStoreError as exc:
                self._tampered(str(exc))
        if self._keys is None:
            raise TeeError(ErrorCode.SECURITY, f"sealed store refused ({self._fault}); re-provision the terminal")
        return self._keys

    def end_session(self) -> None:
        """Forget the card and wipe any PIN digits (session closed, new card, reset)."""
        if self._pin is not None:
            self._pin.wipe()
        self._pin = None
        self._card = None

    # --- identity and provisioning -------------------------------------------------
    def _status(self) -> api.Status:
        keys = self._keys
        if keys is None:
            return api.Status(TeeState.TAMPERED.value, "", b"", self.measurement, {}, self._fault)
        ready = all(keys.holds(u) for u in WORKING)
        state = TeeState.READY if ready else TeeState.NOT_PROVISIONED
        return api.Status(state.value, keys.device_id, keys.device_public_key, self.measurement,
                          keys.check_values(), "")

    def _reset(self) -> api.Status:
        """Wipe the sealed store and its secret, make a fresh identity: the host must
        then activate this terminal again (its old device key is gone)."""
        self.end_session()
        if self._store is not None:
            self._store.wipe()
        else:  # the store never opened: remove its files by path
            for name in ("sealed.bin", "sealed.tmp", "device.secret"):
                (self.state_dir / name).unlink(missing_ok=True)
        self._store = None
        self._keys = None
        self._open()
        return self._status()

    def _sign_key_download(self, keys: SecureKeys, p: api.KeyDownloadRequest, _c) -> api.Signature:
        return api.Signature(keys.sign_key_download(p.terminal_id, p.nonce))

    def _pin_host_key(self, keys: SecureKeys, p: api.HostKey, _c) -> api.Empty:
        keys.pin_host_key(p.public_key)
        return api.Empty()

    def _install_tmk(self, keys: SecureKeys, p: api.TmkEnvelope, _c) -> api.CheckValue:
        self.end_session()
        return api.CheckValue(keys.install_tmk(p.envelope, p.terminal_id, p.nonce))

    def _install_working_keys(self, keys: SecureKeys, p: api.WorkingKeys, _c) -> api.CheckValues:
        self.end_session()
        return api.CheckValues(keys.install_working_keys(p.blocks, p.check_values))

    def _attest(self, keys: SecureKeys, p: api.Challenge, _c) -> api.Evidence:
        return api.Evidence(keys.attest(self.measurement, p.nonce))  # our measurement, never the caller's

    # --- messages ---------------------------------------------------------------------
    def _mac(self, keys: SecureKeys, p: api.MacInput, _c) -> api.MacTag:
        return api.MacTag(keys.mac(p.data))

    def _verify_mac(self, keys: SecureKeys, p: api.MacCheck, _c) -> api.Empty:
        keys.verify_mac(p.data, p.tag)
        return api.Empty()

    # --- card and PIN -----------------------------------------------------------------
    def _transact(self, keys: SecureKeys, p: api.TransactRequest, cancel: threading.Event) -> api.CardOutcome:
        self.end_session()  # one card at a time: the previous one is forgotten now
        if not 0 < p.timeout_ms <= 600_000:
            raise TeeError(ErrorCode.BAD_PARAMETERS, "TransactRequest.timeout_ms: must be 1 to 600000")
        outcome, self._card = self.cards.transact(keys, p.amount, p.timeout_ms / 1000, cancel)
        return outcome

    def _held(self, handle: bytes) -> HeldCard:
        if self._card is None or not hmac.compare_digest(self._card.handle, handle):
            raise TeeError(ErrorCode.ITEM_NOT_FOUND, "no card held under that transaction handle")
        return self._card

    def _end_transaction(self, _keys, p: api.TransactionHandle, _c) -> api.Empty:
        """Idempotent: a handle already forgotten (new tap, reset, restart) is not an error,
        so a caller may end its transaction in a `finally` without masking the outcome."""
        if self._card is not None and hmac.compare_digest(self._card.handle, p.handle):
            self.end_session()
        return api.Empty()

    def _pin_begin(self, keys: SecureKeys, p: api.TransactionHandle, _c) -> api.PinPadLayout:
        self._held(p.handle)
        if not keys.holds(KeyUsage.TPK):
            raise NotProvisioned("no TPK: sign on first")
        if self._pin is not None:
            self._pin.wipe()
        self._pin = PinEntry(p.handle)
        return api.PinPadLayout(list(self._pin.layout), PIN_MIN, PIN_MAX)

    def _entry(self) -> PinEntry:
        if self._pin is None:
            raise TeeError(ErrorCode.BAD_STATE, "no PIN entry in progress: PIN_BEGIN first")
        return self._pin

    def _pin_key(self, _keys, p: api.PinPosition, _c) -> api.PinProgress:
        return api.PinProgress(self._entry().press(p.position))

    def _pin_backspace(self, _keys, _p, _c) -> api.PinProgress:
        return api.PinProgress(self._entry().backspace())

    def _pin_cancel(self, _keys, _p, _c) -> api.PinProgress:
        if self._pin is not None:
            self._pin.wipe()
        self._pin = None
        return api.PinProgress(0)

    def _pin_enter(self, keys: SecureKeys, _p, _c) -> api.PinBlock:
        entry = self._entry()
        if not entry.handle:
            raise TeeError(ErrorCode.BAD_STATE, "a passcode entry ends with PASSCODE_ENTER")
        card = self._held(entry.handle)
        pin = entry.take()  # wipes the entry
        self._pin = None
        try:
            return api.PinBlock(keys.pin_block(pin, card.pan), keys.pin_block_format.value)
        finally:
            del pin

    # --- face pay ----------------------------------------------------------------------
    def _passcode_begin(self, keys: SecureKeys, _p, _c) -> api.PinPadLayout:
        """The scrambled keypad for a face-pay passcode: no card, so no handle; the digits
        stay here until PASSCODE_ENTER names the request the block is for."""
        if not keys.holds(KeyUsage.TPK):
            raise NotProvisioned("no TPK: sign on first")
        if self._pin is not None:
            self._pin.wipe()
        self._pin = PinEntry(b"", min_digits=PASSCODE_MIN)
        return api.PinPadLayout(list(self._pin.layout), PASSCODE_MIN, PIN_MAX)

    def _passcode_enter(self, keys: SecureKeys, p: api.PasscodeRequest, _c) -> api.PinBlock:
        from acquirer.face.wire import FaceWireError, passcode_pan

        entry = self._entry()
        if entry.handle:
            raise TeeError(ErrorCode.BAD_STATE, "a card PIN entry ends with PIN_ENTER")
        try:
            pan = passcode_pan(p.stan)
        except FaceWireError as exc:
            raise TeeError(ErrorCode.BAD_PARAMETERS, str(exc)) from None
        passcode = entry.take()  # wipes the entry
        self._pin = None
        try:
            return api.PinBlock(keys.pin_block(passcode, pan), keys.pin_block_format.value)
        finally:
            del passcode

    def _seal_face_template(self, keys: SecureKeys, p: api.FaceTemplate, _c) -> api.SealedField:
        """59/DF02 under the TDK. Only a well-formed template is sealed (128 finite floats
        behind the face header), so this is no general encryption oracle for the TDK."""
        import numpy as np

        from acquirer.face.wire import TEMPLATE_DIM, FaceWireError, seal_template

        if len(p.template) != 4 * TEMPLATE_DIM:
            raise TeeError(ErrorCode.BAD_PARAMETERS, f"a face template is {4 * TEMPLATE_DIM} bytes")
        try:
            return api.SealedField(seal_template(np.frombuffer(p.template, dtype="<f4"), p.liveness, keys.seal))
        except FaceWireError as exc:
            raise TeeError(ErrorCode.BAD_PARAMETERS, str(exc)) from None

    # --- location -------------------------------------------------------------------
    def _location_report(self, keys: SecureKeys, p: api.LocationRequest, cancel: threading.Event) -> api.SignedLocation:
        if not 0 < p.timeout_ms <= 60_000 or not 0 < p.max_age_ms <= 86_400_000 or \
                not 0 <= p.reuse_ms <= 86_400_000:
            raise TeeError(ErrorCode.BAD_PARAMETERS,
                           "LocationRequest: timeout 1-60000 ms, max age 1-86400000 ms, reuse 0-86400000 ms")
        if self._location_spec is None:
            raise TeeError(ErrorCode.NO_FIX, "no location source configured in the secure world")
        try:
            if self._location is None:
                self._location = open_location(self._location_spec)
            fix = self._location.read(p.timeout_ms / 1000, cancel, max_age=p.max_age_ms / 1000)
        except LocationCancelled:
            raise TeeError(ErrorCode.CANCEL, "waiting for a location fix was cancelled") from None
        except (LocationError, LocationSpecError) as exc:
            raise TeeError(ErrorCode.NO_FIX, str(exc)) from None
        return api.SignedLocation(keys.location_report(p.terminal_id, fix, fix_source_kind(self._location),
                                                       reuse_s=p.reuse_ms / 1000))

    _HANDLERS = {
        Command.SIGN_KEY_DOWNLOAD: _sign_key_download,
        Command.PIN_HOST_KEY: _pin_host_key,
        Command.INSTALL_TMK: _install_tmk,
        Command.INSTALL_WORKING_KEYS: _install_working_keys,
        Command.ATTEST: _attest,
        Command.MAC: _mac,
        Command.VERIFY_MAC: _verify_mac,
        Command.TRANSACT: _transact,
        Command.END_TRANSACTION: _end_transaction,
        Command.PIN_BEGIN: _pin_begin,
        Command.PIN_KEY: _pin_key,
        Command.PIN_BACKSPACE: _pin_backspace,
        Command.PIN_ENTER: _pin_enter,
        Command.PIN_CANCEL: _pin_cancel,
        Command.PASSCODE_BEGIN: _passcode_begin,
        Command.PASSCODE_ENTER: _passcode_enter,
        Command.SEAL_FACE_TEMPLATE: _seal_face_template,
        Command.LOCATION_REPORT: _location_report,
    }

