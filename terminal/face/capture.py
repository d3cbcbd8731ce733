"""Where the terminal's face frames come from: a webcam, an image file, or a simulated
camera replaying given frames (tests, demos, CI without a camera).

Every source answers `frames(count)` with BGR uint8 arrays, OpenCV's order. OpenCV is
imported when a source is first read, not when this module is imported.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from typing import Protocol, Sequence

import numpy as np


class CameraError(RuntimeError):
    """The camera cannot be opened or stopped delivering frames."""


class FrameSource(Protocol):
    def frames(self, count: int) -> list[np.ndarray]: ...


def _image(item) -> np.ndarray:
    from acquirer.face.template import load_image  # OpenCV decoding, with its clear errors

    return load_image(item)


class ImageFile:
    """One still picture: enough for a template, never for the liveness check."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)

    def frames(self, count: int = 1) -> list[np.ndarray]:
        return [_image(self.path)]

    def __repr__(self) -> str:
        return f"<ImageFile {self.path}>"


class SimulatedCamera:
    """Replays frames (paths, encoded bytes or arrays) in order; stops when they run out."""

    def __init__(self, frames: Sequence):
        self._frames = list(frames)
        self._next = 0

    def frames(self, count: int) -> list[np.ndarray]:
        taken = self._frames[self._next:self._next + count]
        self._next += len(taken)
        if not taken:
            raise CameraError("simulated camera has no frames left")
        return [_image(f) for f in taken]

    def __repr__(self) -> str:
        return f"<SimulatedCamera {len(self._frames) - self._next} frames left>"


class Webcam:
    """A V4L2/USB camera through OpenCV, opened on first use, 640x480 by default.

    640x480 keeps HOG detection near 22 ms per frame; at 1280x720 it is 65-95 ms."""

    def __init__(self, index: int = 0, width: int = 640, height: int = 480, interval_s: float = 0.1,
                 warmup_frames: int = 5):
        self.index, self.width, self.height = index, width, height
        self.interval_s = interval_s  # ~10 frames/s spreads a short sequence over a head turn
        self.warmup_frames = warmup_frames  # auto-exposure settles on the first frames
        self._cap = None

    def _open(self):
        if self._cap is None:
            import cv2

            cap = cv2.VideoCapture(self.index)
            if not cap.isOpened():
                raise CameraError(f"camera {self.index} could not be opened: is it connected, and may this user "
                                  "use it (group 'video')?")
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            for _ in range(self.warmup_frames):
                cap.read()
            self._cap = cap
        return self._cap

    def frames(self, count: int) -> list[np.ndarray]:
        cap = self._open()
        out = []
        for i in range(count):
            if i:
                time.sleep(self.interval_s)
            ok, frame = cap.read()
            if not ok or frame is None:
                raise CameraError(f"camera {self.index} stopped delivering frames after {len(out)}")
            out.append(frame)
        return out

    def release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "Webcam":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Webcam {self.index} {self.width}x{self.height} {'open' if self._cap else 'closed'}>"


class ShownPhotos:
    """Faces shown one at a time (the demo's customer holds up a photo): `show(path)`, and
    the checkout's `wait(cancel)` gives a one-picture camera for each, in order."""

    def __init__(self):
        self._shown: queue.SimpleQueue = queue.SimpleQueue()

    def show(self, picture) -> None:
        self._shown.put(picture)

    def wait(self, cancel: threading.Event, poll_s: float = 0.05) -> SimulatedCamera | None:
        """The next face shown, or None once `cancel` is set."""
        while not cancel.is_set():
            try:
                return SimulatedCamera([self._shown.get(timeout=poll_s)])
            except queue.Empty:
                continue
        return None


class CameraFaces:
    """A camera at the till: face pay starts when the cashier presses its key with the
    customer in front of it (`trigger`), and the capture runs the head-turn challenge
    (`live`); `new_challenge` makes the challenge (random side by default)."""

    live = True

    def __init__(self, camera: FrameSource, new_challenge=None):
        from .liveness import Challenge

        self.camera = camera
        self.new_challenge = new_challenge or Challenge.new
        self._asked = threading.Event()

    def trigger(self) -> None:
        self._asked.set()

    def wait(self, cancel: threading.Event, poll_s: float = 0.05) -> FrameSource | None:
        """The camera once triggered, or None once `cancel` is set."""
        while not cancel.is_set():
            if self._asked.wait(poll_s):
                self._asked.clear()
                return self.camera
        return None
