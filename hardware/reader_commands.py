"""Reader-specific commands of common USB NFC readers, as byte builders.

Nothing here talks to a device: each function returns the bytes to send, through
`CardSession.transmit` (pseudo-APDUs, CLA FF, which the reader answers itself and
never forwards to the card) or `CardSession.control` (escape commands).

Sources, by document title (the vendors' public manuals):
- PC/SC Workgroup, "Interoperability Specification for ICCs and Personal Computer
  Systems, Part 3: Requirements for PC-Connected Interface Devices", section on
  contactless storage cards: the GET DATA pseudo-APDU `FF CA`, supported by every
  PC/SC 2.0 contactless reader (ACR122U, ACR1252U, HID Omnikey, Identiv).
- ACS, "ACR122U USB NFC Reader - Application Programming Interface": pseudo-APDUs
  `FF 00 40` (bi-colour LED and buzzer), `FF 00 48` (firmware version), `FF 00 52`
  (buzzer on card detection) and `FF 00 00 00` (direct transmit to the PN532).
- ACS, "ACR1252U USB NFC Reader III - Reference Manual": escape commands `E0 00 00 xx`
  sent with SCardControl (LED, buzzer, firmware version).
- NXP, "PN532 User Manual" (UM0701): the host-to-PN532 command frames (`D4 cc ...`),
  answered with `D5 cc+1 ...`, used by PN532-based readers (the ACR122U inside).
"""
from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------------------
# PC/SC Part 3: GET DATA, any PC/SC 2.0 contactless reader
# ---------------------------------------------------------------------------

GET_DATA_UID = 0x00
GET_DATA_ATS = 0x01  # ISO 14443-4 A: the ATS historical bytes; type B: higher layer response


def get_uid() -> bytes:
    """GET DATA for the card's UID (type A) or PUPI (type B): `FF CA 00 00 00`.

    CLA FF = reader pseudo-APDU; INS CA = GET DATA; P1 00 = UID, P1 01 = ATS;
    P2 00; Le 00 = all bytes available. Answer: UID + 90 00, or 6A 81 when the
    reader does not support it, 6C xx with the exact length.
    """
    return bytes([0xFF, 0xCA, GET_DATA_UID, 0x00, 0x00])


def get_ats() -> bytes:
    """GET DATA for the ATS historical bytes (P1 01): `FF CA 01 00 00`."""
    return bytes([0xFF, 0xCA, GET_DATA_ATS, 0x00, 0x00])


# ---------------------------------------------------------------------------
# ACS ACR122U pseudo-APDUs (CLA FF, INS 00)
# ---------------------------------------------------------------------------

BUZZER_OFF = 0x00
BUZZER_DURING_T1 = 0x01
BUZZER_DURING_T2 = 0x02
BUZZER_DURING_T1_AND_T2 = 0x03


@dataclass(frozen=True)
class LedState:
    """The ACR122U LED state control byte (P2 of `FF 00 40`), one field per bit.

    bit 0 final red on, bit 1 final green on, bit 2 update red, bit 3 update green,
    bit 4 initial red blink state on, bit 5 initial green blink state on,
    bit 6 blink red, bit 7 blink green.
    """

    final_red: bool = False
    final_green: bool = False
    update_red: bool = True
    update_green: bool = True
    initial_red: bool = False
    initial_green: bool = False
    blink_red: bool = False
    blink_green: bool = False

    def to_byte(self) -> int:
        bits = (
            self.final_red,
            self.final_green,
            self.update_red,
            self.update_green,
            self.initial_red,
            self.initial_green,
            self.blink_red,
            self.blink_green,
        )
        return sum(1 << i for i, on in enumerate(bits) if on)


def _unit_100ms(name: str, ms: int) -> int:
    if ms < 0 or ms % 100 or ms > 25500:
        raise ValueError(f"{name} must be a multiple of 100 ms up to 25500 ms, got {ms}")
    return ms // 100


def acr122u_led_buzzer(
    led: LedState,
    t1_ms: int = 0,
    t2_ms: int = 0,
    repeat: int = 1,
    buzzer: int = BUZZER_OFF,
) -> bytes:
    """ACR122U bi-colour LED and buzzer control: `FF 00 40 P2 04 T1 T2 Rep Link`.

    P2 = `LedState.to_byte()`; Lc 04; T1 = initial blinking state duration and
    T2 = toggle blinking state duration, both in units of 100 ms; Rep = number of
    repetitions; Link = buzzer: 00 off, 01 on during T1, 02 during T2, 03 during both.
    Answer: 90 xx, xx the LED state now (bit 0 red, bit 1 green).
    """
    if not 0 <= repeat <= 0xFF:
        raise ValueError(f"repeat must be 0..255, got {repeat}")
    if buzzer not in (BUZZER_OFF, BUZZER_DURING_T1, BUZZER_DURING_T2, BUZZER_DURING_T1_AND_T2):
        raise ValueError(f"buzzer link must be 0..3, got {buzzer}")
    return bytes(
        [
            0xFF, 0x00, 0x40, led.to_byte(), 0x04,
            _unit_100ms("t1_ms", t1_ms), _unit_100ms("t2_ms", t2_ms), repeat, buzzer,
        ]
    )


def acr122u_beep(ms: int = 100) -> bytes:
    """One beep of `ms` (multiple of 100), LEDs left as they are."""
    return acr122u_led_buzzer(
        LedState(update_red=False, update_green=False), t1_ms=ms, repeat=1, buzzer=BUZZER_DURING_T1
    )


def acr122u_buzzer_on_detection(enabled: bool) -> bytes:
    """Beep (or not) when a card enters the field: `FF 00 52 P2 00`, P2 FF on / 00 off.

    Turning it off matters for a POS: the terminal beeps itself once the kernel is done.
    """
    return bytes([0xFF, 0x00, 0x52, 0xFF if enabled else 0x00, 0x00])


def acr122u_firmware_version() -> bytes:
    """ACR122U firmware version: `FF 00 48 00 00`; answer is ASCII, e.g. "ACR122U207"."""
    return bytes([0xFF, 0x00, 0x48, 0x00, 0x00])


def acr122u_direct_transmit(payload: bytes) -> bytes:
    """Wrap a PN532 command frame: `FF 00 00 00 Lc payload`; answer `D5 ... 90 00`."""
    if not 1 <= len(payload) <= 255:
        raise ValueError(f"direct transmit payload must be 1..255 bytes, got {len(payload)}")
    return bytes([0xFF, 0x00, 0x00, 0x00, len(payload)]) + payload


# ---------------------------------------------------------------------------
# ACS ACR1252U escape commands (SCardControl with ESCAPE_CONTROL_CODE)
# ---------------------------------------------------------------------------

def scard_ctl_code(function: int) -> int:
    """pcsc-lite's SCARD_CTL_CODE(code): 0x42000000 + code (Linux, macOS)."""
    return 0x42000000 + function


# The CCID escape; ACS drivers accept it once the reader is connected (even DIRECT).
ESCAPE_CONTROL_CODE = scard_ctl_code(3500)

ACR1252U_LED_RED = 0x01
ACR1252U_LED_GREEN = 0x02


def acr1252u_firmware_version() -> bytes:
    """ACR1252U escape: `E0 00 00 18 00`; answer `E1 00 00 00 len` + ASCII version."""
    return bytes([0xE0, 0x00, 0x00, 0x18, 0x00])


def acr1252u_led(red: bool, green: bool) -> bytes:
    """ACR1252U escape LED control: `E0 00 00 29 01 state`, bit 0 red, bit 1 green."""
    state = (ACR1252U_LED_RED if red else 0) | (ACR1252U_LED_GREEN if green else 0)
    return bytes([0xE0, 0x00, 0x00, 0x29, 0x01, state])


def acr1252u_buzzer(duration_ms: int) -> bytes:
    """ACR1252U escape buzzer control: `E0 00 00 28 01 d`, d in units of 10 ms (0 = off)."""
    if duration_ms < 0 or duration_ms % 10 or duration_ms > 2550:
        raise ValueError(f"duration_ms must be a multiple of 10 up to 2550, got {duration_ms}")
    return bytes([0xE0, 0x00, 0x00, 0x28, 0x01, duration_ms // 10])


# ---------------------------------------------------------------------------
# PN532 command frames (NXP UM0701); wrap with `acr122u_direct_transmit`
# ---------------------------------------------------------------------------

PN532_HOST_TO_CHIP = 0xD4  # TFI of a frame from the host
PN532_CHIP_TO_HOST = 0xD5  # TFI of the PN532's answer
PN532_GET_FIRMWARE_VERSION = 0x02
PN532_RF_CONFIGURATION = 0x32
PN532_IN_LIST_PASSIVE_TARGET = 0x4A
PN532_IN_RELEASE = 0x52
BAUD_106_TYPE_A = 0x00  # BrTy of InListPassiveTarget: 106 kbps ISO 14443 type A
BAUD_106_TYPE_B = 0x03


def pn532_get_firmware_version() -> bytes:
    """`D4 02`: answer `D5 03 IC Ver Rev Support` (IC 32 for a PN532)."""
    return bytes([PN532_HOST_TO_CHIP, PN532_GET_FIRMWARE_VERSION])


def pn532_rf_field(on: bool) -> bytes:
    """`D4 32 01 v`: RFConfiguration item 01 (RF field), bit 0 of v switches it.

    Switching the field off and on forces a card to be re-detected (a fresh tap).
    """
    return bytes([PN532_HOST_TO_CHIP, PN532_RF_CONFIGURATION, 0x01, 0x01 if on else 0x00])


def pn532_list_passive_target(max_targets: int = 1, baud: int = BAUD_106_TYPE_A) -> bytes:
    """`D4 4A MaxTg BrTy`: poll for up to MaxTg (1 or 2) cards of modulation BrTy."""
    if max_targets not in (1, 2):
        raise ValueError(f"the PN532 lists 1 or 2 targets at once, not {max_targets}")
    return bytes([PN532_HOST_TO_CHIP, PN532_IN_LIST_PASSIVE_TARGET, max_targets, baud])


def pn532_release(target: int = 0) -> bytes:
    """`D4 52 Tg`: release target Tg (0 = all), ending its session."""
    return bytes([PN532_HOST_TO_CHIP, PN532_IN_RELEASE, target])


def pn532_uid_from_list_passive_target(answer: bytes) -> bytes | None:
    """The UID (NFCID1) of the first type A target in an InListPassiveTarget answer.

    Answer layout: `D5 4B NbTg [Tg SENS_RES(2) SEL_RES NFCIDLength NFCID1 ...]`,
    optionally followed by `90 00` when it came through the ACR122U. None if no target.
    """
    if len(answer) < 3 or answer[0] != PN532_CHIP_TO_HOST or answer[1] != PN532_IN_LIST_PASSIVE_TARGET + 1:
        raise ValueError("not an InListPassiveTarget answer (expected D5 4B ...)")
    if answer[2] == 0:
        return None
    # Tg(1) SENS_RES(2) SEL_RES(1) then the length byte, at offset 3 + 4.
    length_at = 3 + 4
    if len(answer) <= length_at:
        raise ValueError("InListPassiveTarget answer too short for a type A target")
    length = answer[length_at]
    uid = answer[length_at + 1 : length_at + 1 + length]
    if len(uid) != length:
        raise ValueError(f"InListPassiveTarget answer cut short: NFCID length {length}")
    return bytes(uid)
