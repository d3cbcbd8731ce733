"""PC/SC readers: list them, pick one, wait for a tap, open a `CardSession`.

Talks to pcscd through pyscard's thin `scard` layer so that every return code is
seen here and turned into a typed error from `hardware.errors`.
"""
from __future__ import annotations

import threading
import time

from smartcard import scard

from hardware.errors import (
    SCARD_E_CANCELLED,
    SCARD_E_NO_READERS_AVAILABLE,
    SCARD_E_TIMEOUT,
    SCARD_E_UNKNOWN_READER,
    CardNotRemoved,
    NoCard,
    NoReader,
    PcscdNotRunning,
    ReaderNotFound,
    WaitCancelled,
    error_for,
    note_first_pcsc_call,
)
from hardware.session import CardSession

# How often a blocked wait looks at its cancel event; a tap is still seen at once.
CANCEL_POLL_S = 0.1
# A slot seen "present" may be gone by the time we connect; retry within the timeout.
_CONNECT_RACE_CODES = frozenset(
    {0x8010000C, 0x80100069, 0x80100066, 0x80100067}  # no card, removed, mute, unpowered
)
_RACE_BACKOFF_S = 0.05


class PcscContext:
    """An established PC/SC context (one connection to pcscd)."""

    def __init__(self) -> None:
        note_first_pcsc_call()
        try:
            hresult, handle = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        except Exception as exc:  # noqa: BLE001 - e.g. libpcsclite.so.1 missing
            raise PcscdNotRunning() from exc
        if hresult != scard.SCARD_S_SUCCESS:
            raise error_for(hresult, "establish a PC/SC context")
        self.handle = handle
        self._released = False

    def readers(self) -> list[str]:
        """Names of the readers pcscd knows, in its order (empty if none)."""
        hresult, names = scard.SCardListReaders(self.handle, [])
        if hresult == SCARD_E_NO_READERS_AVAILABLE:
            return []
        if hresult != scard.SCARD_S_SUCCESS:
            raise error_for(hresult, "list readers")
        return list(names)

    def cancel(self) -> None:
        """Wake a blocked `SCardGetStatusChange` on this context (any thread)."""
        scard.SCardCancel(self.handle)

    def close(self) -> None:
        if not self._released:
            self._released = True
            scard.SCardReleaseContext(self.handle)

    def __enter__(self) -> "PcscContext":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def list_readers() -> list[str]:
    """Names of all readers pcscd knows; raises PcscdNotRunning if it is not there."""
    with PcscContext() as context:
        return context.readers()


def choose_reader(names: list[str], wanted: str | int | None = None) -> str:
    """The reader `wanted` names: an index, a name substring (case-insensitive) or None.

    None picks the first reader. Raises NoReader or ReaderNotFound (listing `names`).
    """
    if not names:
        raise NoReader()
    if wanted is None or wanted == "":
        return names[0]
    if isinstance(wanted, int) or (isinstance(wanted, str) and wanted.isdigit()):
        index = int(wanted)
        if 0 <= index < len(names):
            return names[index]
        raise ReaderNotFound(index, names)
    exact = [n for n in names if n == wanted]
    if exact:
        return exact[0]
    matches = [n for n in names if wanted.lower() in n.lower()]
    if matches:
        return matches[0]
    raise ReaderNotFound(wanted, names)


class Reader:
    """One named reader, with its own PC/SC context.

    `wait_for_card` blocks (off the UI thread) until a tap, the timeout, or `cancel`.
    """

    def __init__(self, name: str, context: PcscContext | None = None) -> None:
        self.name = name
        self._context = context or PcscContext()
        self._owns_context = context is None

    @classmethod
    def open(cls, wanted: str | int | None = None) -> "Reader":
        """The reader chosen as `choose_reader` does, from the ones pcscd knows now."""
        context = PcscContext()
        try:
            name = choose_reader(context.readers(), wanted)
        except BaseException:
            context.close()
            raise
        reader = cls(name, context)
        reader._owns_context = True
        return reader

    def _state(self, known: int, timeout_s: float) -> tuple[int, int, bytes]:
        """(hresult, event state, ATR) after waiting up to `timeout_s` for a change."""
        hresult, states = scard.SCardGetStatusChange(
            self._context.handle, int(timeout_s * 1000), [(self.name, known)]
        )
        if hresult != scard.SCARD_S_SUCCESS:
            return hresult, known, b""
        _name, event, atr = states[0]
        return hresult, event, bytes(atr)

    def _check(self, hresult: int) -> None:
        if hresult in (scard.SCARD_S_SUCCESS, SCARD_E_TIMEOUT, SCARD_E_CANCELLED):
            return
        if hresult == SCARD_E_UNKNOWN_READER:
            raise ReaderNotFound(self.name, self._context.readers())
        raise error_for(hresult, "wait for a card", self.name)

    def _wait(self, want_present: bool, timeout: float, cancel: threading.Event | None) -> bytes:
        """Block until the slot is (or is not) holding a usable card; returns its ATR."""
        deadline = time.monotonic() + timeout
        known = scard.SCARD_STATE_UNAWARE
        while True:
            remaining = deadline - time.monotonic()
            slice_s = max(0.0, min(remaining, CANCEL_POLL_S if cancel else remaining))
            hresult, event, atr = self._state(known, slice_s)
            self._check(hresult)
            if hresult == scard.SCARD_S_SUCCESS:
                if event & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_IGNORE):
                    raise ReaderNotFound(self.name, self._context.readers())
                usable = bool(event & scard.SCARD_STATE_PRESENT) and not (
                    event & scard.SCARD_STATE_MUTE
                )
                if usable == want_present:
                    return atr
                known = event & ~scard.SCARD_STATE_CHANGED
            if cancel is not None and cancel.is_set():
                raise WaitCancelled(self.name)
            if hresult == SCARD_E_CANCELLED:
                raise WaitCancelled(self.name)
            if time.monotonic() >= deadline:
                if want_present:
                    raise NoCard(self.name, timeout)
                raise CardNotRemoved(self.name, timeout)

    def card_present(self) -> bool:
        """Whether a usable card is on the reader right now."""
        hresult, event, _atr = self._state(scard.SCARD_STATE_UNAWARE, 0)
        self._check(hresult)
        return bool(event & scard.SCARD_STATE_PRESENT) and not (event & scard.SCARD_STATE_MUTE)

    def wait_for_card(
        self,
        timeout: float,
        cancel: threading.Event | None = None,
        exclusive: bool = False,
    ) -> CardSession:
        """Wait for a tap and connect (T=0 or T=1, whichever the card offers).

        Raises NoCard after `timeout` seconds, WaitCancelled once `cancel` is set.
        """
        deadline = time.monotonic() + timeout
        share = scard.SCARD_SHARE_EXCLUSIVE if exclusive else scard.SCARD_SHARE_SHARED
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                atr = self._wait(True, remaining, cancel)
            except NoCard:
                raise NoCard(self.name, timeout) from None
            hresult, handle, protocol = scard.SCardConnect(
                self._context.handle,
                self.name,
                share,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            )
            if hresult == scard.SCARD_S_SUCCESS:
                return CardSession(self._context.handle, handle, protocol, self.name, atr)
            if (hresult & 0xFFFFFFFF) in _CONNECT_RACE_CODES:
                # The card left between being seen and being connected: keep waiting
                # until pcscd's next poll tells the slot is empty or holds a new card.
                if time.monotonic() >= deadline:
                    raise NoCard(self.name, timeout)
                time.sleep(min(_RACE_BACKOFF_S, max(0.0, deadline - time.monotonic())))
                continue
            raise error_for(hresult, "connect to the card", self.name)

    def wait_for_removal(self, timeout: float, cancel: threading.Event | None = None) -> None:
        """Block until the reader holds no card; raises CardNotRemoved after `timeout`."""
        self._wait(False, timeout, cancel)

    def cancel(self) -> None:
        """Wake a `wait_for_card` blocked in another thread now (it raises WaitCancelled)."""
        self._context.cancel()

    def close(self) -> None:
        if self._owns_context:
            self._context.close()

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "CardSession",
    "PcscContext",
    "Reader",
    "choose_reader",
    "list_readers",
]
