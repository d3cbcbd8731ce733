"""Card applications the virtual card runtime serves, and the built-in test profiles.

A card application is any object with an `atr` and `process_apdu`; the runtime
also calls `power_on`, `power_off` and `reset` when the application has them.
Profiles: the simulated EMV cards of `hardware.emvcard` (PBOC SM, international RSA,
phone wallet, faulty cards) and two test applications that exercise the reader layer
(SELECT/FCI, 61xx, 6Cxx, delay, vanishing card).
"""
from __future__ import annotations

import time
from typing import Callable, Protocol, runtime_checkable

SW_OK = b"\x90\x00"
SW_WRONG_LENGTH = b"\x67\x00"
SW_CONDITIONS_NOT_SATISFIED = b"\x69\x85"
SW_FILE_NOT_FOUND = b"\x6A\x82"
SW_WRONG_P1P2 = b"\x6B\x00"
SW_INS_NOT_SUPPORTED = b"\x6D\x00"
SW_CLA_NOT_SUPPORTED = b"\x6E\x00"
SW_NO_PRECISE_DIAGNOSIS = b"\x6F\x00"

# Test-profile instructions (proprietary class 80).
INS_LONG_DATA = 0x10  # answer P1P2 bytes through 61xx + GET RESPONSE
INS_EXACT_LENGTH = 0x12  # answer 6C xx unless Le is exactly P2
INS_VANISH = 0xEE  # leave the field instead of answering
TEST_AID = bytes.fromhex("F0534F4654504F5301")  # "SOFTPOS" test RID F0 (not assigned)


@runtime_checkable
class CardApplication(Protocol):
    """What the virtual card runtime needs from a card."""

    atr: bytes

    def process_apdu(self, apdu: bytes) -> bytes:
        """The full response APDU (data + SW1 SW2) to one command APDU."""
        ...

    def power_on(self) -> None: ...

    def power_off(self) -> None: ...

    def reset(self) -> None: ...


class CardVanishes(Exception):
    """Raised by `process_apdu` to leave the field without answering."""


def contactless_atr(historical: bytes = b"") -> bytes:
    """The ATR a PC/SC reader builds for an ISO 14443-4 card (PC/SC Part 3).

    3B 8n 80 01 <historical> TCK: TD1 and TD2 present, T=1 offered, TCK = XOR of T0..
    """
    if len(historical) > 15:
        raise ValueError(f"at most 15 historical bytes, got {len(historical)}")
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3B" + body + bytes([tck])


class _PowerHooks:
    """No-op power hooks for applications that keep no state across power cycles."""

    def power_on(self) -> None:
        pass

    def power_off(self) -> None:
        pass

    def reset(self) -> None:
        pass


class EchoApplication(_PowerHooks):
    """Answers every command with its own data field and 90 00."""

    def __init__(self, atr: bytes | None = None, delay_s: float = 0.0) -> None:
        self.atr = atr or contactless_atr(b"ECHO")
        self.delay_s = delay_s

    def process_apdu(self, apdu: bytes) -> bytes:
        if self.delay_s:
            time.sleep(self.delay_s)
        if len(apdu) > 5 and len(apdu) >= 5 + apdu[4]:
            return apdu[5 : 5 + apdu[4]] + SW_OK
        return SW_OK


class Iso7816TestApplication(_PowerHooks):
    """A minimal ISO 7816-4 application for exercising readers end to end.

    - `00 A4 04 00 Lc AID [Le]` SELECT by AID: FCI (6F: 84 AID, A5: 50 label) + 90 00,
      6A 82 for an AID it does not hold.
    - `80 10 P1 P2 Le`: P1P2 bytes (i mod 256) delivered through 61 xx and GET RESPONSE.
    - `80 12 00 P2 Le`: P2 bytes, but only when Le equals P2; otherwise 6C P2.
    - `80 EE 00 00`: the card vanishes (the runtime closes its socket, no answer).
    - `00 C0 00 00 Le` GET RESPONSE: the next chunk of pending data.
    `delay_s` sleeps before each answer; `vanish_after` vanishes on the Nth command.
    """

    def __init__(
        self,
        aid: bytes = TEST_AID,
        label: bytes = b"SOFTPOS TEST",
        delay_s: float = 0.0,
        vanish_after: int | None = None,
    ) -> None:
        self.atr = contactless_atr(b"SOFTPOS")
        self.aid = aid
        self.label = label
        self.delay_s = delay_s
        self.vanish_after = vanish_after
        self._commands = 0
        self._pending = b""
        self.selected = False
        self._by_instruction = self._handlers()

    def power_on(self) -> None:
        self._pending = b""

    def reset(self) -> None:
        self._pending = b""
        self.selected = False

    def process_apdu(self, apdu: bytes) -> bytes:
        self._commands += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.vanish_after is not None and self._commands >= self.vanish_after:
            raise CardVanishes()
        if len(apdu) < 4:
            return SW_WRONG_LENGTH
        cla, ins = apdu[0], apdu[1]
        handler = self._by_instruction.get((cla & 0xFC, ins))
        if handler is None:
            known_cla = any(c == cla & 0xFC for c, _ in self._by_instruction)
            return SW_INS_NOT_SUPPORTED if known_cla else SW_CLA_NOT_SUPPORTED
        if ins != 0xC0:
            # Any command other than GET RESPONSE drops data left from before (ISO 7816-4).
            self._pending = b""
        return handler(apdu)

    def _handlers(self) -> dict[tuple[int, int], Callable[[bytes], bytes]]:
        return {
            (0x00, 0xA4): self._select,
            (0x00, 0xC0): self._get_response,
            (0x80, INS_LONG_DATA): self._long_data,
            (0x80, INS_EXACT_LENGTH): self._exact_length,
            (0x80, INS_VANISH): self._vanish,
        }

    def fci(self) -> bytes:
        proprietary = _tlv(0x50, self.label)
        return _tlv(0x6F, _tlv(0x84, self.aid) + _tlv(0xA5, proprietary))

    def _select(self, apdu: bytes) -> bytes:
        if apdu[2] != 0x04 or len(apdu) < 6:
            return SW_WRONG_P1P2
        aid = apdu[5 : 5 + apdu[4]]
        # A partial AID selects the application it starts (ISO 7816-4 "first or only").
        if not aid or not self.aid.startswith(aid):
            self.selected = False
            return SW_FILE_NOT_FOUND
        self.selected = True
        return self.fci() + SW_OK

    def _long_data(self, apdu: bytes) -> bytes:
        total = int.from_bytes(apdu[2:4], "big")
        if total == 0:
            return SW_OK
        self._pending = bytes(i & 0xFF for i in range(total))
        return b"\x61" + bytes([min(len(self._pending), 256) & 0xFF])

    def _get_response(self, apdu: bytes) -> bytes:
        if not self._pending:
            return SW_CONDITIONS_NOT_SATISFIED
        le = apdu[4] if len(apdu) == 5 else 0
        chunk, self._pending = self._pending[: le or 256], self._pending[le or 256 :]
        if self._pending:
            return chunk + b"\x61" + bytes([min(len(self._pending), 256) & 0xFF])
        return chunk + SW_OK

    def _exact_length(self, apdu: bytes) -> bytes:
        wanted = apdu[3]
        le = apdu[4] if len(apdu) == 5 else None
        if le != wanted:
            return b"\x6C" + bytes([wanted])
        return bytes((0xA0 + i) & 0xFF for i in range(wanted)) + SW_OK

    def _vanish(self, apdu: bytes) -> bytes:
        raise CardVanishes()


def _tlv(tag: int, value: bytes) -> bytes:
    if len(value) > 0x7F:
        return bytes([tag, 0x81, len(value)]) + value
    return bytes([tag, len(value)]) + value


# Profile name -> factory taking the options `pos card insert` passes on.
PROFILES: dict[str, Callable[..., CardApplication]] = {
    "iso7816-test": lambda delay_s=0.0: Iso7816TestApplication(delay_s=delay_s),
    "echo": lambda delay_s=0.0: EchoApplication(delay_s=delay_s),
}


def _register_emv_profiles() -> None:
    # the simulated EMV cards (hardware.emvcard), personalised on first use
    import functools

    from hardware import emvcard

    PROFILES.update({name: functools.partial(emvcard.open_card, name) for name in emvcard.profile_names()})


_register_emv_profiles()


def make_application(profile: str, delay_s: float = 0.0) -> CardApplication:
    """The application of a built-in profile; ValueError naming the known ones."""
    try:
        factory = PROFILES[profile]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown card profile {profile!r}; profiles: {known}") from None
    return factory(delay_s=delay_s)
