"""`TeeKeys`: the secure world as `OnlineSession` sees it (the `SecureWorld` protocol in
terminal/online.py), with every operation carried out in the TEE process; plus the card
and PIN steps a checkout needs.

The in-process `SecureKeys` satisfies the same protocol (the host tests use it); this
is the production path, where no key, PAN or PIN is ever in the normal world.
"""
from __future__ import annotations

from typing import Callable

from keys.errors import MACError
from terminal.online import CardData
from acquirer.protocol import EntryMode
from . import api
from .api import Command, ErrorCode, TeeError
from .client import TeeClient
from .supervisor import TeeSupervisor

# Commands that may be sent again after the TEE restarted under them: they change nothing.
_RETRY_AFTER_RESTART = frozenset({Command.STATUS, Command.MAC, Command.VERIFY_MAC, Command.ATTEST,
                                  Command.SIGN_KEY_DOWNLOAD, Command.LOCATION_REPORT})


class TeeKeys:
    def __init__(self, supervisor: TeeSupervisor, observer: Callable[[bytes], None] | None = None):
        self.supervisor = supervisor
        self.client = TeeClient(supervisor.channel, observer)
        self.client.open_session(supervisor.credentials)

    def _invoke(self, command: Command, params=None):
        try:
            return self.client.invoke(command, params)
        except TeeError as exc:
            if exc.code is not ErrorCode.TARGET_DEAD or command not in _RETRY_AFTER_RESTART:
                raise
        self.client.open_session(self.supervisor.credentials)  # the supervisor restarted it
        return self.client.invoke(command, params)

    def close(self) -> None:
        self.client.close_session()

    def cancel(self) -> None:
        self.client.request_cancellation()

    # --- identity ---------------------------------------------------------------------
    def status(self) -> api.Status:
        return self._invoke(Command.STATUS)

    @property
    def device_id(self) -> str:
        return self.status().device_id

    @property
    def device_public_key(self) -> bytes:
        return self.status().device_public_key

    def measurement(self) -> bytes:
        """What the TEE measured at start and attests to: the value a host registry allows."""
        return self.status().measurement

    def check_values(self) -> dict[str, str]:
        return self.status().check_values

    def reset_provisioning(self) -> api.Status:
        """Wipe the sealed store and make a fresh identity; the host must re-activate."""
        return self._invoke(Command.RESET_PROVISIONING)

    # --- the SecureWorld protocol -------------------------------------------------------
    def sign_key_download(self, terminal_id: str, nonce: bytes) -> bytes:
        return self._invoke(Command.SIGN_KEY_DOWNLOAD, api.KeyDownloadRequest(terminal_id, nonce)).signature

    def pin_host_key(self, raw: bytes) -> None:
        self._invoke(Command.PIN_HOST_KEY, api.HostKey(raw))

    def install_tmk(self, sealed_envelope: bytes, terminal_id: str, nonce: bytes) -> str:
        return self._invoke(Command.INSTALL_TMK, api.TmkEnvelope(sealed_envelope, terminal_id, nonce)).kcv

    def install_working_keys(self, blocks: str, check_values: dict[str, str]) -> dict[str, str]:
        return self._invoke(Command.INSTALL_WORKING_KEYS, api.WorkingKeys(blocks, dict(check_values))).values

    def attest(self, measurement: bytes | None, nonce: bytes) -> bytes:
        """Evidence over the host's nonce. The TEE signs its own measurement only: one
        chosen by the caller is refused rather than silently replaced."""
        if measurement is not None:
            raise TeeError(ErrorCode.BAD_PARAMETERS, "the TEE attests the measurement it took itself; pass None")
        return self._invoke(Command.ATTEST, api.Challenge(nonce)).evidence

    def mac(self, data: bytes) -> bytes:
        return self._invoke(Command.MAC, api.MacInput(data)).tag

    def verify_mac(self, data: bytes, tag: bytes) -> None:
        try:
            self._invoke(Command.VERIFY_MAC, api.MacCheck(data, tag))
        except TeeError as exc:
            if exc.code is ErrorCode.MAC_INVALID:
                raise MACError(exc.detail) from None
            raise

    # --- card and PIN -----------------------------------------------------------------
    def transact(self, amount: int, timeout_s: float = 30.0) -> api.CardOutcome:
        """Wait for a tap and run the kernel in the TEE; `cancel()` from another thread stops the wait."""
        return self._invoke(Command.TRANSACT, api.TransactRequest(amount, max(1, int(timeout_s * 1000))))

    def end_transaction(self, handle: bytes) -> None:
        self._invoke(Command.END_TRANSACTION, api.TransactionHandle(handle))

    def pin_begin(self, handle: bytes) -> api.PinPadLayout:
        return self._invoke(Command.PIN_BEGIN, api.TransactionHandle(handle))

    def pin_key(self, position: int) -> int:
        return self._invoke(Command.PIN_KEY, api.PinPosition(position)).digits

    def pin_backspace(self) -> int:
        return self._invoke(Command.PIN_BACKSPACE).digits

    def pin_cancel(self) -> None:
        self._invoke(Command.PIN_CANCEL)

    def pin_enter(self) -> api.PinBlock:
        return self._invoke(Command.PIN_ENTER)

    # --- face pay -----------------------------------------------------------------------
    def passcode_begin(self) -> api.PinPadLayout:
        """The scrambled keypad for a face-pay passcode; keys go through pin_key/pin_backspace."""
        return self._invoke(Command.PASSCODE_BEGIN)

    def passcode_enter(self, stan: str) -> bytes:
        """59/DF0C for the face sale request with this STAN; the digits are gone afterwards."""
        return self._invoke(Command.PASSCODE_ENTER, api.PasscodeRequest(stan)).block

    def seal_face_template(self, template, liveness: bool) -> bytes:
        """59/DF02: the template sealed under the TDK inside the TEE."""
        import numpy as np

        return self._invoke(Command.SEAL_FACE_TEMPLATE,
                            api.FaceTemplate(np.asarray(template, dtype="<f4").tobytes(), bool(liveness))).sealed


    # --- location -----------------------------------------------------------------------
    def location_report(self, terminal_id: str, timeout_s: float = 2.0, max_age_s: float = 60.0,
                        reuse_s: float = 0.0) -> bytes:
        """A report signed in the TEE over a fix it read itself. With `reuse_s` (payments)
        the TEE may give its last report again while that young and the terminal has not
        moved. Raises TeeError NO_FIX (no source, no fresh fix) or CANCEL."""
        return self._invoke(Command.LOCATION_REPORT, api.LocationRequest(
            terminal_id, max(1, int(timeout_s * 1000)), max(1, int(max_age_s * 1000)),
            max(0, int(reuse_s * 1000)))).report


def card_data(outcome: api.CardOutcome, pin_block: api.PinBlock | None = None) -> CardData:
    """What `OnlineSession.sale` sends, from the TEE's protected outputs."""
    flags = ("relay-suspected",) if outcome.relay_suspected else ()
    mode = EntryMode.CONTACTLESS_PIN if pin_block is not None else EntryMode(outcome.entry_mode)
    return CardData(outcome.sealed_track2, outcome.masked_pan, outcome.psn, outcome.icc_data,
                    pin_block.block if pin_block is not None else None, mode, flags)
