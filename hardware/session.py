"""A connection to one card on one reader, with T=0/T=1-agnostic APDU exchange."""
from __future__ import annotations

import threading

from smartcard import scard

from hardware.apdu import ApduFormatError, apdu_case, get_response, split_response, with_le
from hardware.errors import CardRemoved, TransmitFailed, error_for

# A broken card answering 61xx/6Cxx forever must not hang the terminal.
MAX_EXCHANGES_PER_COMMAND = 128

# pcsc-lite's SCardStatus "card present" bit; pyscard does not export it.
_SCARD_PRESENT = 0x0004

PROTOCOL_NAMES = {scard.SCARD_PROTOCOL_T0: "T=0", scard.SCARD_PROTOCOL_T1: "T=1"}


class CardSession:
    """One card connection: `transmit` APDUs, check presence, `close` when done.

    Made by `Reader.wait_for_card`; the reader keeps the PC/SC context it lives in.
    """

    def __init__(self, context: int, handle: int, protocol: int, reader: str, atr: bytes) -> None:
        self._context = context
        self._handle = handle
        self._protocol = protocol
        self.reader = reader
        self.atr = atr
        self._lock = threading.Lock()
        self._closed = False
        self._removed = False

    @property
    def protocol(self) -> str:
        """The transmission protocol pcscd negotiated ("T=0" or "T=1")."""
        return PROTOCOL_NAMES.get(self._protocol, f"0x{self._protocol:X}")

    @property
    def closed(self) -> bool:
        return self._closed

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        """Send `apdu`; return (data, SW1SW2) after GET RESPONSE / Le re-issue.

        61xx: GET RESPONSE for xx bytes, data accumulated across answers.
        6Cxx: the same command again with Le=xx.
        Raises CardRemoved, TransmitFailed or PcscdNotRunning.
        """
        try:
            command = bytes(apdu)
            apdu_case(command)  # a malformed APDU is refused before it reaches the card
        except (ApduFormatError, TypeError) as exc:
            raise TransmitFailed(f"not a command APDU: {exc}") from None
        data = bytearray()
        with self._lock:
            for _ in range(MAX_EXCHANGES_PER_COMMAND):
                body, sw = self._exchange(command)
                sw1, sw2 = sw >> 8, sw & 0xFF
                if sw1 == 0x61:
                    data += body
                    command = get_response(apdu[0], sw2)
                elif sw1 == 0x6C:
                    command = with_le(command, sw2)
                else:
                    data += body
                    return bytes(data), sw
        raise TransmitFailed(
            f"card on {self.reader!r} still answered 61xx/6Cxx after "
            f"{MAX_EXCHANGES_PER_COMMAND} exchanges"
        )

    def transmit_raw(self, apdu: bytes) -> tuple[bytes, int]:
        """One exchange exactly as given: no GET RESPONSE, no Le re-issue."""
        with self._lock:
            return self._exchange(bytes(apdu))

    def _exchange(self, command: bytes) -> tuple[bytes, int]:
        if self._closed:
            if self._removed:
                raise CardRemoved("the session already lost its card")
            raise TransmitFailed(f"the session on {self.reader!r} is closed")
        try:
            hresult, response = scard.SCardTransmit(self._handle, self._protocol, list(command))
        except Exception as exc:  # noqa: BLE001 - pyscard's own errors become ours
            raise TransmitFailed(f"transmit on {self.reader!r} failed: {exc}") from None
        if hresult != scard.SCARD_S_SUCCESS:
            error = error_for(hresult, "transmit", self.reader)
            if isinstance(error, CardRemoved):
                self._lose_card()
            raise error
        if len(response) < 2:
            # Every ISO 7816 answer ends in a status word; none means the link dropped
            # (vpcd reports its card's closed socket exactly so).
            self._lose_card()
            raise CardRemoved("the card answered without a status word")
        return split_response(bytes(response))

    def is_present(self) -> bool:
        """Whether the card of this session is still on the reader."""
        if self._closed:
            return False
        try:
            hresult, _reader, state, _protocol, _atr = scard.SCardStatus(self._handle)
        except Exception:  # noqa: BLE001 - pyscard's own errors mean "not usable"
            return False
        if hresult != scard.SCARD_S_SUCCESS:
            return False
        return bool(state & _SCARD_PRESENT)

    def control(self, code: int, data: bytes) -> bytes:
        """A reader escape/control command (SCardControl), e.g. ACR1252U escapes."""
        with self._lock:
            if self._closed:
                raise TransmitFailed(f"the session on {self.reader!r} is closed")
            try:
                hresult, response = scard.SCardControl(self._handle, code, list(data))
            except Exception as exc:  # noqa: BLE001 - pyscard's own errors become ours
                raise TransmitFailed(f"control on {self.reader!r} failed: {exc}") from None
            if hresult != scard.SCARD_S_SUCCESS:
                raise error_for(hresult, f"control 0x{code:08X}", self.reader)
            return bytes(response)

    def _lose_card(self) -> None:
        self._removed = True
        self._release(scard.SCARD_LEAVE_CARD)

    def _release(self, disposition: int) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            scard.SCardDisconnect(self._handle, disposition)
        except Exception:  # noqa: BLE001 - a dead handle needs no more care
            pass

    def close(self, reset: bool = False) -> None:
        """Disconnect; `reset` powers the card down so the next session starts clean."""
        with self._lock:
            self._release(scard.SCARD_RESET_CARD if reset else scard.SCARD_LEAVE_CARD)

    def __enter__(self) -> "CardSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

