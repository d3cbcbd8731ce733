"""The reader-specific pseudo-APDUs and escape commands, byte for byte."""
import pytest

from hardware import reader_commands as rc


def test_get_uid_and_ats_are_pcsc_part3_get_data():
    assert rc.get_uid() == bytes.fromhex("FFCA000000")
    assert rc.get_ats() == bytes.fromhex("FFCA010000")


def test_led_state_byte_maps_each_flag_to_its_bit():
    assert rc.LedState(update_red=False, update_green=False).to_byte() == 0x00
    assert rc.LedState(final_red=True, update_red=True, update_green=False).to_byte() == 0x05
    assert rc.LedState(final_green=True, update_red=False, update_green=True).to_byte() == 0x0A
    everything = rc.LedState(True, True, True, True, True, True, True, True)
    assert everything.to_byte() == 0xFF
    assert rc.LedState(update_red=False, update_green=False, blink_green=True, initial_green=True).to_byte() == 0xA0


def test_acr122u_led_buzzer_command_layout():
    apdu = rc.acr122u_led_buzzer(
        rc.LedState(final_green=True, update_red=True, update_green=True),
        t1_ms=500,
        t2_ms=200,
        repeat=3,
        buzzer=rc.BUZZER_DURING_T1,
    )
    assert apdu == bytes.fromhex("FF00400E04050203" "01")


def test_acr122u_beep_leaves_leds_alone():
    assert rc.acr122u_beep(300) == bytes.fromhex("FF0040000403000101")


def test_acr122u_durations_must_be_whole_100ms_units():
    with pytest.raises(ValueError, match="multiple of 100 ms"):
        rc.acr122u_led_buzzer(rc.LedState(), t1_ms=150)
    with pytest.raises(ValueError, match="buzzer link"):
        rc.acr122u_led_buzzer(rc.LedState(), buzzer=4)


def test_acr122u_misc_pseudo_apdus():
    assert rc.acr122u_buzzer_on_detection(False) == bytes.fromhex("FF00520000")
    assert rc.acr122u_buzzer_on_detection(True) == bytes.fromhex("FF0052FF00")
    assert rc.acr122u_firmware_version() == bytes.fromhex("FF00480000")
    assert rc.acr122u_direct_transmit(rc.pn532_get_firmware_version()) == bytes.fromhex("FF00000002D402")
    with pytest.raises(ValueError):
        rc.acr122u_direct_transmit(b"")


def test_acr1252u_escapes():
    assert rc.ESCAPE_CONTROL_CODE == 0x42000DAC
    assert rc.acr1252u_firmware_version() == bytes.fromhex("E000001800")
    assert rc.acr1252u_led(red=True, green=False) == bytes.fromhex("E00000290101")
    assert rc.acr1252u_led(red=True, green=True) == bytes.fromhex("E00000290103")
    assert rc.acr1252u_buzzer(100) == bytes.fromhex("E0000028010A")
    with pytest.raises(ValueError):
        rc.acr1252u_buzzer(5)


def test_pn532_frames():
    assert rc.pn532_rf_field(False) == bytes.fromhex("D4320100")
    assert rc.pn532_rf_field(True) == bytes.fromhex("D4320101")
    assert rc.pn532_list_passive_target() == bytes.fromhex("D44A0100")
    assert rc.pn532_list_passive_target(2, rc.BAUD_106_TYPE_B) == bytes.fromhex("D44A0203")
    assert rc.pn532_release() == bytes.fromhex("D45200")
    with pytest.raises(ValueError):
        rc.pn532_list_passive_target(3)


def test_uid_is_taken_from_an_in_list_passive_target_answer():
    # NbTg 1, Tg 1, SENS_RES 0044, SEL_RES 00, NFCID length 7, then the UID, then SW.
    answer = bytes.fromhex("D54B01010044000704112233445566" "9000")
    assert rc.pn532_uid_from_list_passive_target(answer) == bytes.fromhex("04112233445566")
    assert rc.pn532_uid_from_list_passive_target(bytes.fromhex("D54B00")) is None
    with pytest.raises(ValueError, match="D5 4B"):
        rc.pn532_uid_from_list_passive_target(bytes.fromhex("D50332"))
    with pytest.raises(ValueError, match="cut short"):
        rc.pn532_uid_from_list_passive_target(bytes.fromhex("D54B010100440007041122"))
