"""Barcode sources: real images through zbar, a real pty for serial, key bursts for HID."""
from __future__ import annotations

import os
import random
import sys
import threading

import barcode
import pytest
import qrcode
from barcode.writer import ImageWriter
from evdev import ecodes
from PIL import Image, ImageFilter

from hardware.clock import ManualClock
from hardware.scanners import (
    ScanCancelled,
    ScannerClosed,
    ScannerUnavailable,
    ScanTimeout,
    SimulatedScanner,
    Unreadable,
    Wallet,
    classify_payment_code,
    split_aim_identifier,
)
from hardware.scanners.hid import BurstAssembler, HidScanner, US_KEYMAP, _open_error
from hardware.scanners.image import CameraScanner, FrameScanner, GreyFrame, decode_image
from hardware.scanners.serial_scanner import LineFramer, SerialScanner

WECHAT_CODE = "134567890123456789"
URL = "https://qr.example.cn/merchant/8848?amount=12.50"


def qr_image(text: str) -> Image.Image:
    return qrcode.make(text, box_size=6, border=4).get_image().convert("L")


def linear_barcode(kind: str, digits: str) -> tuple[Image.Image, str]:
    code = barcode.get(kind, digits, writer=ImageWriter())
    return code.render(), code.get_fullcode()


def on_canvas(picture: Image.Image, size=(640, 480)) -> Image.Image:
    canvas = Image.new("L", size, 255)
    canvas.paste(picture.convert("L"), ((size[0] - picture.width) // 2, (size[1] - picture.height) // 2))
    return canvas


# --- images -------------------------------------------------------------------------


def test_qr_code_decodes_with_its_text_and_symbology():
    [event] = decode_image(qr_image(URL), source="counter camera")
    assert (event.symbology, event.text, event.source) == ("QRCODE", URL, "counter camera")


def test_ean13_and_code128_decode_from_python_barcode_images():
    ean, ean_text = linear_barcode("ean13", "690123456789")
    code128, code128_text = linear_barcode("code128", "SOFTPOS-0042")
    assert [(e.symbology, e.text) for e in decode_image(ean)] == [("EAN13", ean_text)]
    assert [(e.symbology, e.text) for e in decode_image(code128)] == [("CODE128", code128_text)]


def test_two_codes_in_one_picture_come_top_first():
    canvas = Image.new("L", (700, 700), 255)
    canvas.paste(qr_image(WECHAT_CODE), (20, 10))
    code128, text = linear_barcode("code128", "ORDER-77")
    canvas.paste(code128.convert("L"), (20, 400))
    assert [(e.symbology, e.text) for e in decode_image(canvas)] == [("QRCODE", WECHAT_CODE), ("CODE128", text)]


def test_rotated_and_blurred_qr_still_decodes():
    picture = on_canvas(qr_image(WECHAT_CODE)).rotate(8, fillcolor=255).filter(ImageFilter.GaussianBlur(1.2))
    assert [e.text for e in decode_image(picture, symbols=["QRCODE"])] == [WECHAT_CODE]


def test_blank_image_is_unreadable_with_a_clear_message():
    with pytest.raises(Unreadable, match="^no barcode found in the image$"):
        decode_image(Image.new("L", (640, 480), 255))


def test_noise_image_is_unreadable():
    noise = random.Random(20250101).randbytes(640 * 480)
    with pytest.raises(Unreadable, match="no barcode found in the image"):
        decode_image(Image.frombytes("L", (640, 480), noise))


def test_restricting_symbols_skips_other_codes_and_says_so():
    with pytest.raises(Unreadable, match=r"no barcode found in the image \(looked for EAN13 only\)"):
        decode_image(qr_image(URL), symbols=["ean13"])
    with pytest.raises(ValueError, match="unknown symbology 'QR'.*QRCODE"):
        decode_image(qr_image(URL), symbols=["QR"])


def test_file_paths_decode_and_bad_files_are_unreadable(tmp_path):
    path = tmp_path / "code.png"
    qr_image(URL).save(path)
    assert [e.text for e in decode_image(path)] == [URL]
    assert [e.text for e in decode_image(str(path))] == [URL]
    with pytest.raises(Unreadable, match="does not exist"):
        decode_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(Unreadable, match="is not an image"):
        decode_image(tmp_path / "notes.png")


def test_grey_frame_decodes_without_numpy():
    picture = on_canvas(qr_image(WECHAT_CODE))
    frame = GreyFrame(picture.tobytes(), picture.width, picture.height)
    assert [e.text for e in decode_image(frame)] == [WECHAT_CODE]
    with pytest.raises(ValueError, match="expected 12"):
        GreyFrame(b"\x00" * 10, 4, 3)


def test_frame_scanner_skips_empty_frames_and_repeats_until_they_are_old():
    clock = ManualClock()
    blank = Image.new("L", (320, 240), 255)
    ean, ean_text = linear_barcode("ean13", "590123412345")
    frames = iter([blank, qr_image(URL), qr_image(URL), ean, qr_image(URL)])
    scanner = FrameScanner(frames, name="camera 0", clock=clock, repeat_after=2.0)
    assert scanner.read(timeout=5).text == URL
    assert scanner.read(timeout=5).text == ean_text  # the second QR frame was a repeat
    clock.advance(2.0)
    assert scanner.read(timeout=5).text == URL
    with pytest.raises(ScannerClosed, match="has no more pictures"):
        scanner.read(timeout=5)


def test_frame_scanner_iterates_until_pictures_run_out():
    scanner = FrameScanner([qr_image("A-1"), qr_image("B-2")], clock=ManualClock())
    assert [e.text for e in scanner] == ["A-1", "B-2"]


def test_shown_pictures_are_read_as_they_come_and_a_wait_ends_on_cancel(tmp_path):
    from hardware.scanners import ScanCancelled, ScanTimeout, ShownPictures

    scanner = ShownPictures(name="demo camera")
    with pytest.raises(ScanTimeout):
        scanner.read(timeout=0.1)  # nothing shown yet
    qr_image(WECHAT_CODE).save(tmp_path / "code.png")
    scanner.show(on_canvas(Image.new("L", (50, 50), 255)))  # a picture without a code is skipped
    scanner.show(tmp_path / "code.png")
    scanner.show(tmp_path / "code.png")  # shown again: a new scan, not a repeat
    assert [scanner.read(timeout=5).text for _ in range(2)] == [WECHAT_CODE, WECHAT_CODE]
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()
    with pytest.raises(ScanCancelled):
        scanner.read(None, cancel)


def test_camera_without_opencv_names_the_package_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if not installed, whatever is installed
    with pytest.raises(ScannerUnavailable, match="pip install 'opencv-python-headless<5'"):
        CameraScanner(0)


# --- serial over a real pty ---------------------------------------------------------


@pytest.fixture
def pty_port():
    """(master fd to write as the scanner, slave path to open as the port)."""
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_serial_frames_end_at_cr_lf_or_crlf(pty_port):
    master, path = pty_port
    with SerialScanner(path, 115200) as scanner:
        os.write(master, b"6212345678901234567\r\n" + b"CR-ONLY\r" + b"LF-ONLY\n")
        events = [scanner.read(timeout=5) for _ in range(3)]
    assert [e.text for e in events] == ["6212345678901234567", "CR-ONLY", "LF-ONLY"]
    assert {(e.symbology, e.source) for e in events} == {("UNKNOWN", path)}


def test_serial_partial_line_times_out_then_completes(pty_port):
    master, path = pty_port
    with SerialScanner(path) as scanner:
        os.write(master, b"13456789")
        with pytest.raises(ScanTimeout, match=f"no scan from '{path}' within 0.2 s"):
            scanner.read(timeout=0.2)
        assert scanner.partial == b"13456789"
        os.write(master, b"0123456789\r")
        assert scanner.read(timeout=5).text == WECHAT_CODE


def test_serial_stale_partial_is_dropped_before_the_next_scan(pty_port):
    master, path = pty_port
    clock = ManualClock()
    with SerialScanner(path, clock=clock, stale_after=1.0) as scanner:
        os.write(master, b"\x00plug-noise")
        with pytest.raises(ScanTimeout):
            scanner.read(timeout=0.2)
        clock.advance(5)
        os.write(master, b"ORDER-1\r")
        assert scanner.read(timeout=5).text == "ORDER-1"


def test_serial_terminator_is_configurable_and_aim_prefixes_name_the_symbology(pty_port):
    master, path = pty_port
    with SerialScanner(path, terminators=b"\x03", aim_ids=True) as scanner:
        os.write(master, b"]Q1" + URL.encode() + b"\x03]E05901234123457\x03")
        first, second = scanner.read(timeout=5), scanner.read(timeout=5)
    assert (first.symbology, first.text) == ("QRCODE", URL)
    assert (second.symbology, second.text) == ("EAN13", "5901234123457")


def test_serial_bytes_in_the_wrong_encoding_are_unreadable_and_the_next_scan_is_not_lost(pty_port):
    master, path = pty_port
    with SerialScanner(path) as scanner:
        os.write(master, b"caf\xe9\rGOOD-1\r")
        with pytest.raises(Unreadable, match="not utf-8"):
            scanner.read(timeout=5)
        assert scanner.read(timeout=5).text == "GOOD-1"


def test_serial_read_is_cancelled_from_another_thread(pty_port):
    _, path = pty_port
    cancel = threading.Event()
    with SerialScanner(path) as scanner:
        threading.Timer(0.1, cancel.set).start()
        with pytest.raises(ScanCancelled):
            scanner.read(cancel=cancel)
    with pytest.raises(ScannerClosed, match="is closed"):
        scanner.read(timeout=1)


def test_serial_port_that_does_not_exist_is_unavailable():
    with pytest.raises(ScannerUnavailable, match="/dev/ttyNOSCANNER does not exist"):
        SerialScanner("/dev/ttyNOSCANNER")


def test_line_framer_drops_oversized_frames():
    framer = LineFramer(max_frame=8, stale_after=None)
    assert framer.feed(b"0123456789", now=0.0) == []
    assert framer.feed(b"ABC\rOK12\r", now=0.0) == [b"OK12"]  # the tail of the long one is gone too
    assert framer.dropped == 1


# --- HID keyboard wedge -------------------------------------------------------------

CHAR_TO_KEY = {}
for _code, (_plain, _shifted) in sorted(US_KEYMAP.items()):
    CHAR_TO_KEY.setdefault(_plain, (_code, False))
    CHAR_TO_KEY.setdefault(_shifted, (_code, True))


def key_events(text: str, start: float, gap: float, end_key: int | None = ecodes.KEY_ENTER):
    """(keycode, value, timestamp) as a scanner types `text`: presses `gap` apart."""
    events, t = [], start
    for char in text:
        code, shifted = CHAR_TO_KEY[char]
        if shifted:
            events.append((ecodes.KEY_LEFTSHIFT, 1, t))
        events += [(code, 1, t), (code, 0, t + 0.001)]
        if shifted:
            events.append((ecodes.KEY_LEFTSHIFT, 0, t + 0.002))
        t += gap
    if end_key is not None:
        events += [(end_key, 1, t), (end_key, 0, t + 0.001)]
    return events


def feed_all(assembler: BurstAssembler, events) -> list[str]:
    return [text for event in events if (text := assembler.feed(*event)) is not None]


def test_fast_burst_ending_in_enter_is_one_scan_with_shifted_characters():
    assembler = BurstAssembler(max_gap=0.05)
    assert feed_all(assembler, key_events("Pay-To:{Shop_42}!", 100.0, 0.004)) == ["Pay-To:{Shop_42}!"]
    assert assembler.pending == ""


def test_slow_typing_is_not_a_scan():
    assert feed_all(BurstAssembler(max_gap=0.05), key_events("134567", 100.0, 0.2)) == []


def test_a_gap_drops_what_came_before_it():
    events = key_events("9999", 100.0, 0.005, end_key=None) + key_events(WECHAT_CODE, 100.5, 0.005)
    assert feed_all(BurstAssembler(), events) == [WECHAT_CODE]


def test_burst_without_enter_is_dropped_unless_configured():
    tab_end = key_events("ORDER-55", 100.0, 0.005, end_key=ecodes.KEY_TAB)
    assert feed_all(BurstAssembler(), tab_end + key_events("x", 101.0, 0.005, None)) == []
    assert feed_all(BurstAssembler(terminators=frozenset({ecodes.KEY_TAB})), tab_end) == ["ORDER-55"]
    quiet = BurstAssembler(accept_unterminated=True)
    assert feed_all(quiet, key_events("ORDER-56", 100.0, 0.005, end_key=None)) == []
    assert quiet.flush(now=100.036) is None  # still within the gap: more may come
    assert quiet.flush(now=100.2) == "ORDER-56"


def test_short_bursts_releases_repeats_and_unmapped_keys_add_nothing():
    assert feed_all(BurstAssembler(min_length=4), key_events("12", 100.0, 0.005)) == []
    assembler = BurstAssembler()
    events = [(ecodes.KEY_KP6, 1, 1.0), (ecodes.KEY_KP6, 2, 1.001), (ecodes.KEY_LEFTCTRL, 1, 1.002),
              (ecodes.KEY_KP2, 1, 1.004), (ecodes.KEY_KPDOT, 1, 1.006), (ecodes.KEY_5, 1, 1.008),
              (ecodes.KEY_KPENTER, 1, 1.010)]
    assert feed_all(assembler, events) == ["62.5"]


def test_hid_open_errors_say_what_to_do(tmp_path):
    with pytest.raises(ScannerUnavailable, match="does not exist"):
        HidScanner(str(tmp_path / "event99"))
    with pytest.raises(ScannerUnavailable, match="/dev/null is not an input device"):
        HidScanner("/dev/null")
    # Root can open anything, so the permission message is checked on its own.
    message = str(_open_error("/dev/input/event5", PermissionError(13, "Permission denied")))
    assert message.startswith("device /dev/input/event5 is not readable: add the user to the input group")


def _uinput_unusable() -> str | None:
    if not os.path.exists("/dev/uinput"):
        return "no /dev/uinput: this kernel has no uinput module (absent from /proc/misc), so no virtual keyboard"
    if not os.access("/dev/uinput", os.R_OK | os.W_OK):
        return "/dev/uinput is not writable by this user"
    return None


@pytest.mark.skipif(_uinput_unusable() is not None, reason=str(_uinput_unusable()))
def test_hid_scanner_reads_a_burst_from_a_real_uinput_keyboard():
    from evdev import UInput

    keys = sorted(set(US_KEYMAP) | {ecodes.KEY_ENTER, ecodes.KEY_LEFTSHIFT})
    with UInput({ecodes.EV_KEY: keys}, name="softpos test scanner") as keyboard:
        with HidScanner(keyboard.device.path, grab=True) as scanner:
            for code, value, _ in key_events("Wx-" + WECHAT_CODE, 0.0, 0.0):
                keyboard.write(ecodes.EV_KEY, code, value)
                keyboard.syn()
            event = scanner.read(timeout=5)
    assert (event.text, event.source) == ("Wx-" + WECHAT_CODE, keyboard.device.path)


# --- simulated scanner, events, classification --------------------------------------


def test_simulated_scanner_hands_over_pushed_codes_across_threads():
    clock = ManualClock()
    scanner = SimulatedScanner(clock=clock)
    threading.Thread(target=scanner.push, args=(WECHAT_CODE,)).start()
    event = scanner.read(timeout=5)
    assert (event.symbology, event.text, event.source) == ("QRCODE", WECHAT_CODE, "simulated")
    assert (event.monotonic, event.wall) == (clock.monotonic(), clock.now())
    with pytest.raises(ScanTimeout):
        scanner.read(timeout=0)
    with pytest.raises(ValueError, match="non-empty"):
        scanner.push("")


def test_iteration_stops_on_cancel_and_close():
    scanner = SimulatedScanner()
    scanner.push("A-1234")
    cancel = threading.Event()
    seen = []
    for event in scanner.events(cancel):
        seen.append(event.text)
        cancel.set()
    assert seen == ["A-1234"]
    scanner.close()
    assert list(scanner) == []


def test_scan_event_is_immutable_and_its_repr_masks_the_code():
    scanner = SimulatedScanner(clock=ManualClock())
    scanner.push(WECHAT_CODE)
    event = scanner.read(timeout=1)
    with pytest.raises(AttributeError):
        event.text = "x"
    assert WECHAT_CODE not in repr(event) and "1345**********6789" in repr(event)


@pytest.mark.parametrize(
    "text, prefix",
    [("]Q1hello", ("QRCODE", "hello")), ("]C0ABC", ("CODE128", "ABC")), ("]E496385074", ("EAN8", "96385074")),
     ("]Z9odd", ("UNKNOWN", "]Z9odd")), ("plain", ("UNKNOWN", "plain"))],
)
def test_aim_identifiers(text, prefix):
    assert split_aim_identifier(text) == prefix


@pytest.mark.parametrize(
    "code, wallet",
    [
        ("104567890123456789", Wallet.WECHAT),
        ("154567890123456789", Wallet.WECHAT),
        ("  134567890123456789\r\n", Wallet.WECHAT),  # scanner whitespace around it
        ("164567890123456789", Wallet.UNKNOWN),  # 18 digits, 16 is nobody's
        ("13456789012345678", Wallet.UNKNOWN),  # 17 digits starting 13
        ("2512345678901234", Wallet.ALIPAY),  # 16 digits
        ("281234567890123456", Wallet.ALIPAY),  # 18 digits: Alipay's range, not WeChat's
        ("301234567890123456789012", Wallet.ALIPAY),  # 24 digits
        ("3012345678901234567890123", Wallet.UNKNOWN),  # 25 digits
        ("241234567890123456", Wallet.UNKNOWN),
        ("311234567890123456", Wallet.UNKNOWN),
        ("6212345678901234567", Wallet.UNIONPAY),
        ("621234567890123456", Wallet.UNKNOWN),  # 18 digits starting 62
        ("6312345678901234567", Wallet.UNKNOWN),
        ("1345678901234567 89", Wallet.UNKNOWN),
        ("１３４５６７８９０１２３４５６７８９", Wallet.UNKNOWN),  # full-width digits
        (URL, Wallet.UNKNOWN),
        ("", Wallet.UNKNOWN),
    ],
)
def test_payment_code_classification(code, wallet):
    assert classify_payment_code(code) is wallet


def test_a_decoded_qr_is_classified_end_to_end():
    [event] = decode_image(on_canvas(qr_image("6212345678901234567")))
    assert classify_payment_code(event.text) is Wallet.UNIONPAY
