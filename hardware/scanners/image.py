"""Barcodes in pictures: image files, PIL images, raw grey frames and cameras, via zbar.

`decode_image` is the one decode path. A grey frame given as (pixels, width, height)
needs neither numpy nor OpenCV; the webcam source needs OpenCV and loads it only
when asked for.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Union

from PIL import Image, UnidentifiedImageError

from hardware.scanners.events import (
    Clock,
    Scanner,
    ScanEvent,
    ScannerClosed,
    ScannerUnavailable,
    SystemClock,
    Unreadable,
)

OPENCV_REQUIREMENT = "opencv-python-headless<5"
DEFAULT_REPEAT_AFTER_S = 2.0  # a code held before the camera is one scan, not 30 a second


@dataclass(frozen=True)
class GreyFrame:
    """8-bit grey pixels, row by row: what a camera driver hands over, numpy-free."""

    pixels: bytes
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"width, height: must be positive, got {self.width}x{self.height}")
        if len(self.pixels) != self.width * self.height:
            raise ValueError(
                f"pixels: {len(self.pixels)} bytes for a {self.width}x{self.height} grey frame "
                f"(expected {self.width * self.height})"
            )


Picture = Union[Image.Image, GreyFrame, str, os.PathLike]


def _zbar():
    try:
        from pyzbar import pyzbar
    except ImportError as exc:  # pyzbar raises ImportError when libzbar.so.0 is missing
        raise ScannerUnavailable(
            f"cannot load zbar ({exc}): sudo apt-get install libzbar0"
        ) from exc
    return pyzbar


def symbol_names() -> list[str]:
    """The symbology names `symbols=` accepts (zbar's: QRCODE, EAN13, CODE128, ...)."""
    from pyzbar.pyzbar import ZBarSymbol

    return [symbol.name for symbol in ZBarSymbol if symbol.name not in ("NONE", "PARTIAL")]


def _symbols(names: Iterable[str] | None):
    if names is None:
        return None
    from pyzbar.pyzbar import ZBarSymbol

    chosen = []
    for name in names:
        try:
            chosen.append(ZBarSymbol[name.upper()])
        except KeyError:
            raise ValueError(
                f"symbols: unknown symbology {name!r}; known: {', '.join(symbol_names())}"
            ) from None
    if not chosen:
        raise ValueError("symbols: name at least one symbology, or pass None for all")
    return chosen


def _pixels(picture: Picture):
    """What pyzbar takes: a PIL image or a (bytes, width, height) grey tuple."""
    if isinstance(picture, GreyFrame):
        return picture.pixels, picture.width, picture.height
    if isinstance(picture, Image.Image):
        return picture
    if isinstance(picture, (str, os.PathLike)):
        try:
            with Image.open(picture) as image:
                return image.convert("L")
        except FileNotFoundError as exc:
            raise Unreadable(f"image {os.fspath(picture)} does not exist") from exc
        except UnidentifiedImageError as exc:
            raise Unreadable(f"{os.fspath(picture)} is not an image Pillow can read") from exc
        except OSError as exc:
            raise Unreadable(f"image {os.fspath(picture)} cannot be read: {exc}") from exc
    raise TypeError(
        f"picture: expected a PIL image, a GreyFrame or a file path, got {type(picture).__name__}"
    )


def _text(data: bytes) -> str:
    # zbar hands QR text over as UTF-8; Latin-1 keeps any other bytes one-to-one.
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_image(
    picture: Picture,
    symbols: Iterable[str] | None = None,
    *,
    source: str = "image",
    clock: Clock | None = None,
) -> list[ScanEvent]:
    """Every barcode in `picture`, top-left first; Unreadable if there is none."""
    pyzbar = _zbar()
    wanted = _symbols(symbols)
    results = pyzbar.decode(_pixels(picture), symbols=wanted)
    if not results:
        only = f" (looked for {', '.join(s.name for s in wanted)} only)" if wanted else ""
        raise Unreadable(f"no barcode found in the image{only}")
    clock = clock or SystemClock()
    monotonic, wall = clock.monotonic(), clock.now()
    ordered = sorted(results, key=lambda r: (r.rect.top, r.rect.left))
    return [ScanEvent(r.type, _text(r.data), source, monotonic, wall) for r in ordered]


class FrameScanner(Scanner):
    """Scans from a stream of pictures (camera frames or a list of files).

    Pictures without a barcode are skipped. The same code seen again within
    `repeat_after` seconds is not a new scan. When the pictures run out the scanner
    closes.
    """

    def __init__(
        self,
        pictures: Iterable[Picture],
        symbols: Iterable[str] | None = None,
        *,
        repeat_after: float = DEFAULT_REPEAT_AFTER_S,
        name: str = "frames",
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name, clock)
        self.symbols = None if symbols is None else list(symbols)
        _symbols(self.symbols)  # bad names fail here, not on the first frame
        self.repeat_after = repeat_after
        self._pictures: Iterator[Picture] = iter(pictures)
        self._pending: list[ScanEvent] = []
        self._last_seen: dict[tuple[str, str], float] = {}

    def _next_picture(self, wait: float) -> Picture | None:
        try:
            return next(self._pictures)
        except StopIteration:
            raise ScannerClosed(self.name, "has no more pictures") from None

    def _poll(self, wait: float) -> ScanEvent | None:
        if not self._pending:
            picture = self._next_picture(wait)
            if picture is None:
                return None
            try:
                self._pending = decode_image(picture, self.symbols, source=self.name, clock=self._clock)
            except Unreadable:
                return None
        while self._pending:
            event = self._pending.pop(0)
            key = (event.symbology, event.text)
            seen = self._last_seen.get(key)
            self._last_seen[key] = event.monotonic
            if seen is None or event.monotonic - seen >= self.repeat_after:
                return event
        return None


class ShownPictures(FrameScanner):
    """Pictures handed over one at a time (`show(path)`), read with zbar as they come: the
    demo's scanner, where the customer's phone screen is a PNG of the payment code."""

    def __init__(self, symbols: Iterable[str] | None = ("QRCODE",), *, name: str = "shown pictures",
                 clock: Clock | None = None) -> None:
        import queue

        self._shown: queue.SimpleQueue = queue.SimpleQueue()
        self._empty = queue.Empty
        # every showing is a new scan: a customer showing a fresh code twice means it
        super().__init__((), symbols, repeat_after=0.0, name=name, clock=clock)

    def show(self, picture: Picture) -> None:
        self._shown.put(picture)

    def _next_picture(self, wait: float) -> Picture | None:
        try:
            return self._shown.get(timeout=wait) if wait > 0 else self._shown.get_nowait()
        except self._empty:
            return None


class CameraScanner(FrameScanner):
    """A webcam through OpenCV (`pip install 'opencv-python-headless<5'`)."""

    def __init__(
        self,
        index: int = 0,
        symbols: Iterable[str] | None = None,
        *,
        repeat_after: float = DEFAULT_REPEAT_AFTER_S,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise ScannerUnavailable(
                f"the camera source needs OpenCV, which is not installed: "
                f"pip install '{OPENCV_REQUIREMENT}'"
            ) from exc
        self._cv2 = cv2
        self._capture = cv2.VideoCapture(index)
        if not self._capture.isOpened():
            raise ScannerUnavailable(
                f"camera {index} cannot be opened: is it plugged in, and is the user in "
                "the video group (sudo usermod -aG video $USER)?"
            )
        super().__init__((), symbols, repeat_after=repeat_after, name=name or f"camera {index}", clock=clock)

    def _next_picture(self, wait: float) -> Picture | None:
        ok, frame = self._capture.read()  # blocks for about one frame time
        if not ok:
            raise ScannerUnavailable(f"{self.name} stopped giving frames (unplugged?)")
        grey = self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2GRAY)
        height, width = grey.shape[:2]
        return GreyFrame(grey.tobytes(), width, height)

    def _close_device(self) -> None:
        self._capture.release()
