"""The terminal's device choices (reader, scanner, location source), kept in its state
directory as settings.json so the next start uses them.

Choices are plain strings, one per kind:
  reader    "" (the first PC/SC reader) or a reader name
  scanner   "none", "demo" (the demo's shown codes), "hid" (keyboard wedge), "camera:0",
            "serial:/dev/ttyACM0"
  location  "" (none) or a location source the TEE reads (hardware/location/spec.py):
            "fixed:LAT,LON[,ACC]", "nmea:PORT[@BAUD]", "gpsd[:HOST[:PORT]]", "file:PATH"
The reader and the location source belong to the TEE, opened when it starts: a change
to either applies at the next start (`pos run` and `pos demo` read this file).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

SCANNERS = ("none", "demo", "hid", "camera:0", "serial:/dev/ttyACM0")
LOCATIONS = ("gpsd", "nmea:/dev/ttyUSB0", "")  # offered besides the one configured at start
SCANNER_LABELS = {"none": "none", "demo": "demo camera (codes the customer shows)", "hid": "keyboard-wedge scanner",
                  "camera:0": "camera 0 (zbar)", "serial:/dev/ttyACM0": "serial scanner /dev/ttyACM0"}


def location_label(spec: str | None) -> str:
    if not spec:
        return "none (a fenced terminal may not sell)"
    kind, _, rest = spec.partition(":")
    return {"fixed": f"fixed site {rest}", "nmea": f"NMEA GNSS receiver on {rest}",
            "gpsd": f"gpsd {rest or 'on localhost'}", "file": "simulated receiver (demo)"}.get(kind, spec)


class SettingsError(ValueError):
    """A settings file or value that cannot be used (the message says which)."""


@dataclass
class DeviceSettings:
    reader: str = ""
    scanner: str = "none"
    location: str = ""

    def __post_init__(self) -> None:
        from hardware.location.spec import KINDS

        if self.scanner not in SCANNERS:
            raise SettingsError(f"scanner must be one of {', '.join(SCANNERS)}, got {self.scanner!r}")
        if self.location and self.location.partition(":")[0] not in KINDS:
            raise SettingsError(f"location must be empty or start with one of {', '.join(KINDS)}, "
                                f"got {self.location!r}")

    @staticmethod
    def path(state_dir: str | os.PathLike) -> Path:
        return Path(state_dir) / "settings.json"

    @classmethod
    def load(cls, state_dir: str | os.PathLike, **defaults) -> "DeviceSettings":
        """The saved choices; `defaults` for a terminal that never saved any."""
        path = cls.path(state_dir)
        if not path.is_file():
            return cls(**defaults)
        try:
            data = json.loads(path.read_text())
            return cls(**{k: str(data[k]) for k in ("reader", "scanner", "location") if k in data})
        except (ValueError, TypeError) as exc:
            raise SettingsError(f"{path}: {exc}; delete it to start from the defaults") from None

    def save(self, state_dir: str | os.PathLike) -> Path:
        """Written whole to a temporary file, then renamed: a crash never leaves half a file."""
        path = self.path(state_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1) + "\n")
        os.replace(tmp, path)
        return path


def next_choice(choices: tuple[str, ...] | list[str], current: str) -> str:
    """The choice after `current`, wrapping around (one key cycles through them)."""
    items = list(choices)
    return items[(items.index(current) + 1) % len(items)] if current in items else items[0]


def open_scanner(choice: str, demo_scanner=None):
    """The scanner source for a choice; None for "none". Device errors propagate
    (ScannerUnavailable with a message naming what to fix)."""
    if choice == "none":
        return None
    if choice == "demo":
        if demo_scanner is None:
            raise SettingsError("the demo camera exists only in `pos demo`")
        return demo_scanner
    from hardware import scanners

    if choice == "hid":
        found = [path for path, name in scanners.list_input_devices()
                 if any(word in name.lower() for word in ("scan", "barcode"))]
        if not found:
            raise scanners.ScannerUnavailable("no input device named like a barcode scanner under /dev/input "
                                              "(is it plugged in, and may this user read it?)")
        return scanners.HidScanner(found[0])
    kind, _, arg = choice.partition(":")
    if kind == "camera":
        return scanners.CameraScanner(int(arg or 0), ["QRCODE"])
    if kind == "serial":
        return scanners.SerialScanner(arg)
    raise SettingsError(f"unknown scanner {choice!r}")
