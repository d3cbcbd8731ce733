"""Face pay at the host: enrolment store, 1:N matcher, passcode step-up, lockout.

`template` (detection, quality gates, embedding) and `wire` (the DF02 layout) are
shared with the terminal: they define what a template is. Importing this package
loads neither dlib nor OpenCV; only enrolment from photos does.
"""
from .service import (Candidate, Enrolment, FaceDecline, FaceEnrolError, FacePay, FacePayment, MATCH_THRESHOLD,
                      MAX_PASSCODE_FAILURES, MIN_MARGIN)
from .store import FaceStoreError
from .wire import FaceWireError, passcode_pan

__all__ = ["Candidate", "Enrolment", "FaceDecline", "FaceEnrolError", "FacePay", "FacePayment", "FaceStoreError",
           "FaceWireError", "MATCH_THRESHOLD", "MAX_PASSCODE_FAILURES", "MIN_MARGIN", "passcode_pan"]
