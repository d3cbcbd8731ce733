"""Typed errors of the hardware layer.

Every PC/SC failure reaches callers as one of these, with a message a cashier or an
operator can act on; a raw pyscard exception or return code never escapes.
"""
from __future__ import annotations

import os

DEFAULT_PCSCD_SOCKET = "/run/pcscd/pcscd.comm"

# PC/SC return codes (winscard / pcsc-lite), unsigned 32-bit.
SCARD_E_CANCELLED = 0x80100002
SCARD_E_INVALID_HANDLE = 0x80100003
SCARD_E_TIMEOUT = 0x8010000A
SCARD_E_SHARING_VIOLATION = 0x8010000B
SCARD_E_NO_SMARTCARD = 0x8010000C
SCARD_E_UNKNOWN_READER = 0x80100009
SCARD_E_PROTO_MISMATCH = 0x8010000F
SCARD_E_NOT_TRANSACTED = 0x80100016
SCARD_E_READER_UNAVAILABLE = 0x80100017
SCARD_E_NO_SERVICE = 0x8010001D
SCARD_E_SERVICE_STOPPED = 0x8010001E
SCARD_E_NO_READERS_AVAILABLE = 0x8010002E
SCARD_W_UNRESPONSIVE_CARD = 0x80100066
SCARD_W_UNPOWERED_CARD = 0x80100067
SCARD_W_RESET_CARD = 0x80100068
SCARD_W_REMOVED_CARD = 0x80100069

# A contactless card that leaves the field mid-exchange shows up as one of these.
CARD_GONE_CODES = frozenset(
    {SCARD_W_REMOVED_CARD, SCARD_E_NOT_TRANSACTED, SCARD_E_NO_SMARTCARD}
)
DAEMON_GONE_CODES = frozenset({SCARD_E_NO_SERVICE, SCARD_E_SERVICE_STOPPED})


_socket_in_use: str | None = None


def pcscd_socket_path() -> str:
    """The socket a PC/SC client of this process talks to.

    libpcsclite reads PCSCLITE_CSOCK_NAME once, at the first context: after that,
    the value it read is the truth, whatever the environment says now.
    """
    return _socket_in_use or os.environ.get("PCSCLITE_CSOCK_NAME") or DEFAULT_PCSCD_SOCKET


def client_socket_in_use() -> str | None:
    """The socket libpcsclite bound this process to, None before the first context."""
    return _socket_in_use


def note_first_pcsc_call() -> None:
    """Remember the socket libpcsclite is about to bind this process to."""
    global _socket_in_use
    if _socket_in_use is None:
        _socket_in_use = pcscd_socket_path()


class HardwareError(Exception):
    """Base of every error raised by hardware/."""


class PcscError(HardwareError):
    """A PC/SC operation failed; `code` is the PC/SC return code when there is one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class PcscdNotRunning(PcscError):
    """No PC/SC daemon answers on the client's socket."""

    def __init__(self, socket_path: str | None = None, code: int | None = SCARD_E_NO_SERVICE) -> None:
        self.socket_path = socket_path or pcscd_socket_path()
        super().__init__(
            f"pcscd is not running (no answer on {self.socket_path}): start it with "
            "`sudo systemctl start pcscd.socket` (or `sudo pcscd`); "
            "`pos reader doctor` checks the whole chain",
            code,
        )


class NoReader(PcscError):
    """pcscd runs but has no reader at all."""

    def __init__(self) -> None:
        super().__init__(
            "no card reader: plug in a USB NFC reader, or install vsmartcard-vpcd and "
            "restart pcscd for the virtual reader; `pos reader doctor` tells what is missing",
            SCARD_E_NO_READERS_AVAILABLE,
        )


class ReaderNotFound(PcscError):
    """No reader matches the name or index asked for."""

    def __init__(self, wanted: str | int, available: list[str]) -> None:
        self.wanted = wanted
        self.available = list(available)
        present = ", ".join(repr(n) for n in self.available) or "none"
        super().__init__(
            f"reader {wanted!r} not found; readers present: {present}", SCARD_E_UNKNOWN_READER
        )


class NoCard(PcscError):
    """No card was tapped before the timeout."""

    def __init__(self, reader: str, timeout: float) -> None:
        self.reader = reader
        self.timeout = timeout
        super().__init__(f"no card on {reader!r} within {timeout:g} s", SCARD_E_TIMEOUT)


class CardNotRemoved(PcscError):
    """The card stayed on the reader past the timeout of a wait for its removal."""

    def __init__(self, reader: str, timeout: float) -> None:
        self.reader = reader
        super().__init__(f"the card stayed on {reader!r} for {timeout:g} s: lift it off", SCARD_E_TIMEOUT)


class WaitCancelled(PcscError):
    """Waiting for a card was cancelled by the caller."""

    def __init__(self, reader: str) -> None:
        super().__init__(f"waiting for a card on {reader!r} was cancelled", SCARD_E_CANCELLED)


class CardRemoved(PcscError):
    """The card left the field (or the virtual card vanished) during an exchange."""

    def __init__(self, detail: str = "", code: int | None = SCARD_W_REMOVED_CARD) -> None:
        self.detail = detail
        super().__init__("card removed, tap again", code)


class TransmitFailed(PcscError):
    """An exchange with the card failed for a reason other than removal."""


class PcscdLaunchError(HardwareError):
    """A private pcscd could not be started."""


class VirtualCardError(HardwareError):
    """The virtual card runtime failed."""


class VpcdUnreachable(VirtualCardError):
    """The vpcd driver does not listen on the port the virtual card was given."""


def _describe(code: int) -> str:
    # pyscard knows the pcsc-lite wording; fall back to the bare code without it.
    try:
        from smartcard import scard

        return f"{scard.SCardGetErrorMessage(code).rstrip('.')} (0x{code:08X})"
    except Exception:  # noqa: BLE001 - a message helper must never raise
        return f"PC/SC error 0x{code:08X}"


def error_for(code: int, doing: str, reader: str | None = None) -> PcscError:
    """The typed error for PC/SC return `code`, met while `doing` something."""
    code &= 0xFFFFFFFF
    if code in DAEMON_GONE_CODES:
        return PcscdNotRunning(code=code)
    if code in CARD_GONE_CODES:
        return CardRemoved(f"{doing}: {_describe(code)}", code)
    if code == SCARD_E_NO_READERS_AVAILABLE:
        return NoReader()
    if code in (SCARD_E_UNKNOWN_READER, SCARD_E_READER_UNAVAILABLE):
        return TransmitFailed(f"{doing}: reader {reader!r} is gone (unplugged?)", code)
    where = f" on {reader!r}" if reader else ""
    return TransmitFailed(f"{doing}{where} failed: {_describe(code)}", code)
