"""The face pipeline on real photos: matching, the quality gates, the model files."""
from __future__ import annotations

import itertools
import shutil

import cv2
import numpy as np
import pytest

from acquirer.face import MATCH_THRESHOLD, MIN_MARGIN, models
from acquirer.face.template import FaceQualityError, distance, face_template, find_face
from tests.face.conftest import FACES
from tests.face.synth import blur, darken


def test_a_template_is_128_float32_numbers(photos):
    t = photos["obama.jpg"].template
    assert t.dtype == np.float32 and t.shape == (128,) and np.isfinite(t).all()


def test_the_same_person_matches_across_different_photos(photos):
    obama = [p.template for p in photos.values() if p.person == "obama"]
    for a, b in itertools.combinations(obama, 2):
        assert distance(a, b) < MATCH_THRESHOLD


def test_different_people_do_not_match(photos):
    for a, b in itertools.combinations(photos.values(), 2):
        if a.person != b.person:
            assert distance(a.template, b.template) > MATCH_THRESHOLD + MIN_MARGIN, (a.name, b.name)


def test_an_image_without_a_face_is_rejected_with_a_clear_message():
    with pytest.raises(FaceQualityError, match="no face found") as exc:
        face_template(FACES / "coffee.png")
    assert exc.value.reason == "no_face"


def test_a_too_dark_image_is_rejected(photos):
    with pytest.raises(FaceQualityError, match="too dark") as exc:
        find_face(darken(photos["obama.jpg"].image, 0.15))
    assert exc.value.reason == "too_dark"


def test_a_too_blurred_image_is_rejected(photos):
    p = photos["obama.jpg"]
    with pytest.raises(FaceQualityError, match="too blurred") as exc:
        find_face(blur(p.image, p.sample.box, 0.03))
    assert exc.value.reason == "too_blurred"


def test_a_slightly_dim_or_soft_image_still_passes(photos):
    p = photos["obama2.jpg"]
    find_face(darken(p.image, 0.45))
    find_face(blur(p.image, p.sample.box, 0.005))


def test_a_washed_out_image_is_rejected(photos):
    with pytest.raises(FaceQualityError, match="too bright"):
        find_face(cv2.convertScaleAbs(photos["obama.jpg"].image, alpha=1.0, beta=120))


def test_a_face_too_far_from_the_camera_is_told_to_come_closer(photos):
    p = photos["obama.jpg"]
    scale = 55 / p.sample.size  # a ~55 px face: found only by the upsampled pass
    small = cv2.resize(p.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    with pytest.raises(FaceQualityError, match="too small .* come closer") as exc:
        find_face(small)
    assert exc.value.reason == "too_small"


def test_two_faces_in_the_picture_are_rejected(photos):
    a, b = photos["obama.jpg"].image, photos["biden.jpg"].image
    b = cv2.resize(b, (b.shape[1] * a.shape[0] // b.shape[0], a.shape[0]))
    with pytest.raises(FaceQualityError, match="2 faces found") as exc:
        find_face(np.hstack([a, b]))
    assert exc.value.reason == "several_faces"


def test_an_unreadable_file_names_the_problem(tmp_path):
    bad = tmp_path / "not-a-photo.jpg"
    bad.write_bytes(b"hello")
    with pytest.raises(FaceQualityError, match="not a JPEG"):
        find_face(bad)
    with pytest.raises(FaceQualityError, match="no file"):
        find_face(tmp_path / "missing.jpg")


def test_the_installed_model_files_match_their_pinned_hashes():
    for name in models.PINNED:
        assert models.verified_path(name).is_file()


def test_an_altered_model_file_is_refused_before_loading(tmp_path):
    name = "shape_predictor_5_face_landmarks.dat"
    copy = tmp_path / name
    shutil.copyfile(models.models_dir() / name, copy)
    with copy.open("r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(models.FaceModelError, match="altered"):
        models.verified_path(name, tmp_path)
    with pytest.raises(models.FaceModelError, match="missing"):
        models.verified_path("dlib_face_recognition_resnet_model_v1.dat", tmp_path)
    with pytest.raises(models.FaceModelError, match="altered|missing"):
        models.load(str(tmp_path))


def test_a_sample_never_prints_its_pixels(photos):
    text = repr(photos["obama.jpg"].sample)
    assert "box=" in text and "array" not in text and len(text) < 200
