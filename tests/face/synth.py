"""Synthetic camera frames made from the test photos.

They imitate what a camera would show; they are not recordings. `turn` moves the middle
of the face (the nose) sideways more than its sides (the eyes), which is what a head
turn does to the 5-point landmarks; it does not rotate a head in 3D, show the far cheek
shrinking, or add sensor noise (docs/face.md, "How realistic the liveness tests are").
"""
from __future__ import annotations

import cv2
import numpy as np

FRAME_W, FRAME_H = 640, 480


def webcam_frame(image: np.ndarray, box, face_px: int = 200) -> np.ndarray:
    """A 640x480 frame with the face of `box` centred and `face_px` wide, as at a till."""
    left, top, right, bottom = box
    s = face_px / (right - left)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    m = np.float32([[s, 0, FRAME_W / 2 - s * cx], [0, s, FRAME_H / 2 - s * cy]])
    return cv2.warpAffine(image, m, (FRAME_W, FRAME_H), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def turn(frame: np.ndarray, sample, amount: float) -> np.ndarray:
    """Shift the face's centre sideways by `amount` x face width (positive: toward image
    right, the customer's left), fading out with a Gaussian around the nose."""
    h, w = frame.shape[:2]
    face_w = sample.box[2] - sample.box[0]
    nose_x, nose_y = sample.landmarks[4]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    g = np.exp(-(((xs - nose_x) / (0.35 * face_w)) ** 2 + ((ys - nose_y) / (0.45 * face_w)) ** 2) / 2)
    return cv2.remap(frame, xs - amount * face_w * g, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def shear(frame: np.ndarray, sample, k: float) -> np.ndarray:
    """A flat picture sheared sideways about the eye line (a printed photo tilted by hand)."""
    eye_y = float(sample.landmarks[:4, 1].mean())
    m = np.float32([[1, k, -k * eye_y], [0, 1, 0]])
    return cv2.warpAffine(frame, m, (frame.shape[1], frame.shape[0]), borderMode=cv2.BORDER_REPLICATE)


def jitter(frame: np.ndarray, dx: float, dy: float, scale: float = 1.0) -> np.ndarray:
    """A hand holding a photo still: a pixel or two of shift and a little scale."""
    m = cv2.getRotationMatrix2D((FRAME_W / 2, FRAME_H / 2), 0.0, scale)
    m[:, 2] += (dx, dy)
    return cv2.warpAffine(frame, m, (frame.shape[1], frame.shape[0]), borderMode=cv2.BORDER_REPLICATE)


def darken(image: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(image.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def blur(image: np.ndarray, box, share_of_face: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), share_of_face * (box[2] - box[0]))
