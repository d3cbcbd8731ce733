"""Barcode scanners: HID keyboard-wedge (evdev), serial, camera/images (zbar), simulated.

Every source yields `ScanEvent`s through `Scanner.read(timeout, cancel)` (or iteration)
and raises the `ScannerError` family; `classify_payment_code` names the wallet of a code.
"""
from hardware.scanners.events import (
    UNKNOWN_SYMBOLOGY,
    ScanCancelled,
    ScanEvent,
    ScanTimeout,
    Scanner,
    ScannerClosed,
    ScannerError,
    ScannerUnavailable,
    Unreadable,
    split_aim_identifier,
)
from hardware.scanners.payment_codes import PAYMENT_CODE_RULES, Wallet, classify_payment_code
from hardware.scanners.simulated import SimulatedScanner

# The device sources load their libraries (evdev, pyserial, zbar) on first use.
_LAZY = {
    "BurstAssembler": "hardware.scanners.hid",
    "HidScanner": "hardware.scanners.hid",
    "list_input_devices": "hardware.scanners.hid",
    "LineFramer": "hardware.scanners.serial_scanner",
    "SerialScanner": "hardware.scanners.serial_scanner",
    "CameraScanner": "hardware.scanners.image",
    "FrameScanner": "hardware.scanners.image",
    "GreyFrame": "hardware.scanners.image",
    "ShownPictures": "hardware.scanners.image",
    "decode_image": "hardware.scanners.image",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hardware.scanners' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "PAYMENT_CODE_RULES",
    "UNKNOWN_SYMBOLOGY",
    "ScanCancelled",
    "ScanEvent",
    "ScanTimeout",
    "Scanner",
    "ScannerClosed",
    "ScannerError",
    "ScannerUnavailable",
    "SimulatedScanner",
    "Unreadable",
    "Wallet",
    "classify_payment_code",
    "split_aim_identifier",
    *_LAZY,
]
