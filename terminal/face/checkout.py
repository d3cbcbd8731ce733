"""Face pay at the terminal: capture (with the liveness challenge), the template, and the
two private fields of the face sale request.

The template is computed here, on the terminal, and only its sealed form leaves
(docs/face.md, "Where the template is computed"): the photo never crosses the network,
544 bytes fit field 59 where a picture would not, and the host keeps its CPU for the
1:N search.

    challenge = Challenge.new()                  # show challenge.prompt to the customer
    capture = capture_face(Webcam(), challenge)  # or FaceCaptureError with a reason to show
    f59 = {PrivateTag.FACE_TEMPLATE: face_template_field(capture, secure_keys.seal)}
    # host answers 1A, DF13=PASSCODE: the scrambled keypad collects the passcode
    f59[PrivateTag.PASSCODE_BLOCK] = passcode_block(secure_keys.pin_block, passcode, stan)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from acquirer.face.template import FaceQualityError, face_template
from acquirer.face.wire import passcode_pan, seal_template
from acquirer.protocol import PrivateTag
from .capture import FrameSource
from .liveness import Challenge, check_liveness

DEFAULT_FRAMES = 15  # 1.5 s at the webcam's 10 frames/s: time to turn the head and come back


class FaceCaptureError(RuntimeError):
    """No usable face: `reason` is a stable code, str() the text for the cashier's screen."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, repr=False)
class FaceCapture:
    template: np.ndarray  # biometric data: sealed at once, never stored or logged
    liveness: bool
    detail: str

    def __repr__(self) -> str:
        return f"<FaceCapture liveness={self.liveness} {self.detail}>"


def capture_face(source: FrameSource, challenge: Challenge | None, *, frames: int = DEFAULT_FRAMES,
                 mirrored: bool = False) -> FaceCapture:
    """One template from `source`; with a challenge, only if the head turn passes.

    Without a challenge (an image file, a demo) the template goes out flagged as not
    liveness-checked, and a host that requires liveness refuses it."""
    if challenge is None:
        try:
            template, sample = face_template(source.frames(1)[0])
        except FaceQualityError as exc:
            raise FaceCaptureError(exc.reason, str(exc)) from None
        return FaceCapture(template, False, f"single picture, face {sample.size} px, no liveness check")
    result = check_liveness(source.frames(frames), challenge, mirrored=mirrored)
    if not result.passed or result.template is None:
        raise FaceCaptureError("liveness", result.reason)
    return FaceCapture(result.template, True, result.reason)


def face_template_field(capture: FaceCapture, encrypt: Callable[[bytes], bytes]) -> bytes:
    """59/DF02: the template sealed by the secure world's TDK (`SecureKeys.seal`)."""
    return seal_template(capture.template, capture.liveness, encrypt)


def passcode_block(pin_block: Callable[[str, str], bytes], passcode: str, stan: str) -> bytes:
    """59/DF0C: the passcode as an SM4 PIN block under the TPK (`SecureKeys.pin_block`),
    its PAN field made from this request's STAN."""
    return pin_block(passcode, passcode_pan(stan))


def face_private_fields(template_field: bytes, passcode_field: bytes | None = None) -> dict[PrivateTag, bytes]:
    """The field-59 items of a face sale (for `acquirer.protocol.private_fields`)."""
    items = {PrivateTag.FACE_TEMPLATE: template_field}
    if passcode_field is not None:
        items[PrivateTag.PASSCODE_BLOCK] = passcode_field
    return items
