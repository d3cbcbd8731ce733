"""The test photos (tests/data/faces), the model loaded once, templates computed once."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

FACES = Path(__file__).resolve().parent.parent / "data" / "faces"
PEOPLE = {"obama.jpg": "obama", "obama2.jpg": "obama", "obama3.jpg": "obama", "biden.jpg": "biden",
          "astronaut.png": "collins"}


@dataclass(frozen=True)
class Photo:
    name: str
    person: str
    image: np.ndarray
    template: np.ndarray
    sample: object


@pytest.fixture(scope="session")
def photos() -> dict[str, Photo]:
    """Every face photo through the real pipeline, once per test session."""
    from acquirer.face.template import face_template

    out = {}
    for name, person in PEOPLE.items():
        image = cv2.imread(str(FACES / name))
        template, sample = face_template(image)
        out[name] = Photo(name, person, image, template, sample)
    return out


@pytest.fixture(scope="session")
def frames(photos):
    """(640x480 frame, its face sample) per photo, the face 200 px wide as at a till."""
    from acquirer.face.template import find_face
    from tests.face.synth import webcam_frame

    out = {}
    for name, p in photos.items():
        frame = webcam_frame(p.image, p.sample.box)
        out[name] = (frame, find_face(frame))
    return out


@pytest.fixture
def hsm(tmp_path):
    from keys.hsm import HSM

    h = HSM.open(tmp_path / "hsm.db", tmp_path / "lmk")
    yield h
    h.close()


class Clock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def pay(tmp_path, hsm, photos, clock):
    """A host's face pay with Obama (two photos), Biden and Collins enrolled."""
    from acquirer.face import FacePay

    p = FacePay(tmp_path / "face.db", hsm, clock=clock)
    t = {n: ph.template for n, ph in photos.items()}
    p.enrol_templates("obama", [t["obama.jpg"], t["obama2.jpg"]], "W-OBAMA", "802413")
    p.enrol_templates("biden", [t["biden.jpg"]], "W-BIDEN", "590217")
    p.enrol_templates("collins", [t["astronaut.png"]], "W-COLLINS", "371946")
    yield p
    p.close()
