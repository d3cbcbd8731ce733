"""From an image to a face template: detect, quality gates, 5-point landmarks, embedding.

This module is the face half of the wire contract: the terminal computes the template it
sends in 59/DF02 with it, and the host computes enrolment templates with it, so both
sides run the same model, the same alignment and the same gates (docs/face.md).

Steps, each with its reason:
- HOG detection on grey, without upsampling (22 ms at 640x480; upsampling once costs
  ~4x). Only when nothing is found, one upsampled pass looks for 40-80 px faces, so a
  customer standing too far away is told "come closer" instead of "no face".
  Photos longer than 1024 px are detected on a reduced copy; landmarks and the
  embedding use the full image.
- Gates, in this order so that each image gets the message of its real problem:
  exactly one face, face size, light, sharpness.
- 5-point landmarks, a 150x150 aligned chip (padding 0.25, as the ResNet was trained),
  the ResNet's 128-d template as float32. No jitter: 10 jitters cost 10x for nothing
  the threshold needs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import dlib
import numpy as np

from . import models

TEMPLATE_DIM = 128
DETECT_MAX_SIDE = 1024
# dlib's HOG window is 80x80: 80 px is the smallest face found without upsampling, and
# the false accepts seen at threshold 0.6 were all on ~50 px faces (docs/face.md).
MIN_FACE_PX = 80
# Mean grey level of the face box (0-255). Darkened photos still matched at 22-34, but
# scaling adds no sensor noise: a real dark frame is worse, so keep a margin.
MIN_LUMINANCE = 40.0
MAX_LUMINANCE = 225.0  # washed out by flash or backlight: the face has no texture left
# var(Laplacian) / var(grey) of the face box resized to 64x64: independent of face size
# and of brightness. Sharp photos and webcam-like frames measured 0.26-0.93, a 9-px motion
# blur 0.10-0.39, a Gaussian blur of 3% of the face width (templates 0.44-0.49 from the
# sharp ones) 0.014-0.028.
MIN_SHARPNESS = 0.05
SHARPNESS_SIDE = 64
CHIP_SIZE, CHIP_PADDING = 150, 0.25


class FaceQualityError(ValueError):
    """The image cannot give a usable template; `reason` is a stable code, str() a message."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, repr=False)
class FaceSample:
    """One face found in one image, with the measures the gates used."""

    box: tuple[int, int, int, int]  # left, top, right, bottom, in the image's pixels
    landmarks: np.ndarray  # (5, 2) float32: eye corners (2 per eye), then the base of the nose
    luminance: float
    sharpness: float
    upsampled: bool  # found only by the second, upsampled detector pass
    chip: np.ndarray  # 150x150 RGB, aligned on the landmarks

    @property
    def size(self) -> int:
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1])

    def __repr__(self) -> str:  # never print pixels: a chip is a face
        return (f"<FaceSample box={self.box} size={self.size} luminance={self.luminance:.0f} "
                f"sharpness={self.sharpness:.3f}>")


def load_image(source: str | os.PathLike | bytes | np.ndarray) -> np.ndarray:
    """A BGR uint8 image (OpenCV's order) from a path, encoded bytes or an array."""
    if isinstance(source, np.ndarray):
        image = source
    elif isinstance(source, (bytes, bytearray, memoryview)):
        image = cv2.imdecode(np.frombuffer(source, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise FaceQualityError("unreadable", "image unreadable: the bytes are not a JPEG, PNG or BMP image")
    else:
        path = Path(source)
        if not path.is_file():
            raise FaceQualityError("unreadable", f"image unreadable: no file {path}")
        image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise FaceQualityError("unreadable", f"image unreadable: {path} is not a JPEG, PNG or BMP image")
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or min(image.shape[:2]) < 16:
        raise FaceQualityError("unreadable", f"image unreadable: expected an 8-bit picture, got {image.dtype} "
                                             f"{image.shape}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _detect(grey: np.ndarray) -> tuple[list[tuple[int, int, int, int]], bool]:
    detector = models.load().detector
    scale = min(1.0, DETECT_MAX_SIDE / max(grey.shape))
    small = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else grey
    upsampled = False
    rects = detector(small, 0)
    if len(rects) == 0:
        rects, upsampled = detector(small, 1), True
    h, w = grey.shape
    boxes = [(max(0, round(r.left() / scale)), max(0, round(r.top() / scale)),
              min(w, round(r.right() / scale)), min(h, round(r.bottom() / scale))) for r in rects]
    return boxes, upsampled


def sharpness(grey_box: np.ndarray) -> float:
    """Variance of the Laplacian over the variance of the grey levels, at 64x64."""
    small = cv2.resize(grey_box, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=cv2.INTER_AREA).astype(np.float64)
    spread = small.var()
    return 0.0 if spread < 1e-6 else float(cv2.Laplacian(small, cv2.CV_64F).var() / spread)


def find_face(source, *, check_quality: bool = True) -> FaceSample:
    """The one face of `source`, or FaceQualityError naming what is wrong.

    `check_quality=False` keeps the face-count and size gates but skips light and
    sharpness: liveness uses it for the frames taken while the head is turning."""
    image = load_image(source)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    boxes, upsampled = _detect(grey)
    if not boxes:
        raise FaceQualityError("no_face", "no face found: look at the camera with the face uncovered and in the frame")
    if len(boxes) > 1:
        raise FaceQualityError("several_faces", f"{len(boxes)} faces found: only the paying customer may be in "
                                                "front of the camera")
    left, top, right, bottom = boxes[0]
    size = min(right - left, bottom - top)
    if size < MIN_FACE_PX:
        raise FaceQualityError("too_small", f"face too small ({size} px, at least {MIN_FACE_PX}): come closer "
                                            "to the camera")
    face_grey = grey[top:bottom, left:right]
    luminance, sharp = float(face_grey.mean()), sharpness(face_grey)
    if check_quality:
        require_quality(luminance, sharp)
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    shape = models.load().landmarks(rgb, dlib.rectangle(left, top, right, bottom))
    points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
    chip = dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
    return FaceSample((left, top, right, bottom), points, luminance, sharp, upsampled, chip)


def require_quality(luminance: float, sharp: float) -> None:
    """The light and sharpness gates (dark is checked first: darkness also lowers contrast)."""
    if luminance < MIN_LUMINANCE:
        raise FaceQualityError("too_dark", f"too dark (face brightness {luminance:.0f} of 255, at least "
                                           f"{MIN_LUMINANCE:.0f}): add light in front of the customer")
    if luminance > MAX_LUMINANCE:
        raise FaceQualityError("too_bright", f"too bright (face brightness {luminance:.0f} of 255, at most "
                                             f"{MAX_LUMINANCE:.0f}): avoid flash and light behind the customer")
    if sharp < MIN_SHARPNESS:
        raise FaceQualityError("too_blurred", f"too blurred (sharpness {sharp:.3f}, at least {MIN_SHARPNESS}): "
                                              "hold still and wipe the lens")


def embed(sample: FaceSample) -> np.ndarray:
    """The 128-d template (float32) of an aligned face."""
    loaded = models.load()
    with loaded.lock:
        vector = loaded.recogniser.compute_face_descriptor(sample.chip)
    out = np.asarray(vector, dtype=np.float32)
    if out.shape != (TEMPLATE_DIM,) or not np.isfinite(out).all():
        raise FaceQualityError("unreadable", "the face model returned no usable template")
    return out


def face_template(source, *, check_quality: bool = True) -> tuple[np.ndarray, FaceSample]:
    """Detect, check and embed in one call: (template, sample)."""
    sample = find_face(source, check_quality=check_quality)
    return embed(sample), sample


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """dlib's measure: the Euclidean (L2) distance between two templates."""
    return float(np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32)))
