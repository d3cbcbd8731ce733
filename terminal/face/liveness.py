"""Offline liveness: a random head-turn challenge checked over a short frame sequence.

The terminal asks for a turn to the customer's left or right, chosen at random when the
payment starts. On every frame, the 5-point landmarks give the position of the base of
the nose along the line between the two eye centres (0.5 when it sits midway). Turning
the head moves the nose, which stands in front of the eyes, across that line: about
0.48 x tan(yaw), so the 0.10 threshold is a turn of roughly 12 degrees. The check passes
when, against the first frame, the nose moved at least that far in the requested
direction, the face stayed one continuous track, and the templates of the first, the
most-turned and the last frame are the same person.

What it stops and what it does not (docs/face.md): a printed photo or a screen held
still, and a video turning the wrong way, are refused. A photo turned, tilted or bent by
hand, and a replayed video that happens to turn the right way, may pass; masks and
deepfakes are not detected. It is a cheap hurdle, not anti-spoofing.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import numpy as np

from acquirer.face.template import FaceQualityError, FaceSample, distance, embed, find_face, require_quality

TURN_THRESHOLD = 0.10  # movement of the nose along the eye line, as a share of the eye distance
IDENTITY_THRESHOLD = 0.5  # the payment match threshold: the same person from frame to frame
MIN_OVERLAP = 0.3  # intersection over union of consecutive face boxes: no cut to another face
MIN_FRAMES = 4
CHALLENGE_TTL_S = 30.0
DIRECTIONS = ("left", "right")


@dataclass(frozen=True)
class Challenge:
    direction: str  # the customer's own left or right
    issued_at: float = field(default_factory=time.monotonic)

    @classmethod
    def new(cls) -> "Challenge":
        return cls(secrets.choice(DIRECTIONS))  # unpredictable, so a pre-recorded turn fails half the time

    @property
    def prompt(self) -> str:
        return f"Please look at the camera, then slowly turn your head to your {self.direction}"


@dataclass(frozen=True, repr=False)
class LivenessResult:
    passed: bool
    reason: str
    movement: float  # toward the requested side (negative: the other way)
    frames_used: int
    template: np.ndarray | None = None  # of the first frame, the one checked by every quality gate
    sample: FaceSample | None = None

    def __repr__(self) -> str:
        return (f"<LivenessResult passed={self.passed} movement={self.movement:+.3f} frames={self.frames_used} "
                f"reason={self.reason!r}>")


def nose_position(landmarks: np.ndarray) -> float:
    """Where the base of the nose projects on the line from the image-left eye centre (0)
    to the image-right eye centre (1). Rotation in the image plane does not change it."""
    right_eye, left_eye, nose = landmarks[0:2].mean(axis=0), landmarks[2:4].mean(axis=0), landmarks[4]
    axis = right_eye - left_eye
    return float((nose - left_eye) @ axis / max(float(axis @ axis), 1e-6))


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def _fail(reason: str, movement: float = 0.0, used: int = 0) -> LivenessResult:
    return LivenessResult(False, reason, movement, used)


def check_liveness(frames, challenge: Challenge, *, mirrored: bool = False, now: float | None = None,
                   threshold: float = TURN_THRESHOLD) -> LivenessResult:
    """Judge a frame sequence against `challenge`.

    `mirrored`: the frames are mirror images (a selfie preview fed back). In a camera's
    own image, a turn to the customer's left moves the nose to the image's right."""
    if (now if now is not None else time.monotonic()) - challenge.issued_at > CHALLENGE_TTL_S:
        return _fail("the head-turn challenge expired: start again")
    samples: list[FaceSample] = []
    for frame in frames:
        try:
            samples.append(find_face(frame, check_quality=False))  # motion blur while turning is expected
        except FaceQualityError as exc:
            if exc.reason in ("several_faces", "unreadable"):
                return _fail(str(exc), used=len(samples))
            # a frame may lose the face mid-turn (the detector sees up to ~40 degrees): skip it
    if len(samples) < MIN_FRAMES:
        return _fail(f"the face was seen in {len(samples)} frames, at least {MIN_FRAMES} needed: look at the "
                     "camera and turn slowly", used=len(samples))
    first = samples[0]
    try:
        require_quality(first.luminance, first.sharpness)  # the first frame is the one paid with
    except FaceQualityError as exc:
        return _fail(str(exc), used=len(samples))
    for i in range(1, len(samples)):
        if _overlap(samples[i - 1].box, samples[i].box) < MIN_OVERLAP:
            return _fail("the face jumped between frames: keep one face in view", used=len(samples))
    sign = 1.0 if challenge.direction == "left" else -1.0
    if mirrored:
        sign = -sign
    start = nose_position(first.landmarks)
    moves = np.array([sign * (nose_position(s.landmarks) - start) for s in samples])
    peak = int(np.argmax(moves))
    toward, away = float(moves[peak]), float(-moves.min())
    if toward < threshold:
        if away >= threshold:
            return _fail(f"the head turned to the {'right' if challenge.direction == 'left' else 'left'}, "
                         f"not to the {challenge.direction}", -away, len(samples))
        return _fail(f"no head turn seen (moved {toward:.2f}, at least {threshold:.2f} needed): turn your head "
                     f"to your {challenge.direction}", toward, len(samples))
    reference = embed(first)
    checks = {peak: "most turned", len(samples) - 1: "last"}  # one entry when the last frame is the peak
    for index, label in checks.items():
        d = distance(reference, embed(samples[index]))
        if d > IDENTITY_THRESHOLD:
            return _fail(f"the face changed during the check ({label} frame {d:.2f} from the first)",
                         toward, len(samples))
    return LivenessResult(True, f"turned {challenge.direction} ({toward:.2f})", toward, len(samples), reference, first)
