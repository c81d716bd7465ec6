"""Labelled image folders and a cache of their face crops: what ``facegate eval`` and
``facegate calibrate`` read.

``DIR/live/*`` and ``DIR/spoof/*`` is the folder format. Every image is re-detected and
cropped by :mod:`facegate.liveness.detect`, exactly as the server crops a camera frame, so no
model can learn a source's crop size or rotation. The shared training sources (NUAA's lists,
eye crops, identities, leave-one-out groups) are ``training/datasets.py``'s.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LIVE, SPOOF = 1, 0
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
# Crops are cached at this size; models resize down from it.
CACHE_CROP_SIZE = 112


def default_data_root() -> Path:
    """``$FACEGATE_DATA``, else the ``shared/data`` folder beside a source checkout (where the
    tests, benchmarks and trainers find DATA.md's sources)."""
    env = os.environ.get("FACEGATE_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def cache_dir() -> Path:
    return Path(os.environ.get("FACEGATE_CACHE", Path.home() / ".cache" / "facegate"))


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # LIVE or SPOOF (eyes: 1 open, 0 closed; identities: person index)
    source: str
    clip: str  # person or clip id: internal splits never cut through one
    split: str = ""  # "train"/"test" where the source has an official split


class Dataset(ABC):
    """A source of labelled samples. Subclasses know one folder layout each."""

    root: Path
    source: str

    @abstractmethod
    def samples(self) -> list[Sample]: ...


class FolderDataset(Dataset):
    """The generic format: ``DIR/live/*`` and ``DIR/spoof/*`` images."""

    def __init__(self, root: str | os.PathLike[str], source: str | None = None) -> None:
        self.root = Path(root)
        self.source = source or self.root.name

    def samples(self) -> list[Sample]:
        out: list[Sample] = []
        for label_name, label in (("live", LIVE), ("spoof", SPOOF)):
            folder = self.root / label_name
            if not folder.is_dir():
                continue
            files = sorted(
                (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES),
                key=natural_key,
            )
            # Crop sets are frames of a few clips in list order: blocks of ten stand in for clips.
            for i, p in enumerate(files):
                out.append(Sample(p, label, self.source, f"{label_name}-{i // 10}"))
        return out


@dataclass(frozen=True)
class CropSet:
    """Face crops of a list of samples. ``found[i]`` is False where no face was detected."""

    samples: list[Sample]
    crops: np.ndarray  # (N, CACHE_CROP_SIZE, CACHE_CROP_SIZE, 3) uint8 RGB, zeros where not found
    found: np.ndarray  # (N,) bool
    rotation: np.ndarray  # (N,) int8 quarter-turns used

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)


def natural_key(p: Path) -> tuple:
    """Sort key: numeric file names in number order, before the others."""
    stem = p.stem
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def _cache_key(samples: list[Sample]) -> str:
    h = hashlib.sha256()
    for s in samples:
        st = s.path.stat()
        h.update(f"{s.path.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(f"crop{CACHE_CROP_SIZE}-v1".encode())
    return h.hexdigest()[:16]


def crop_set(samples: list[Sample], detector=None, progress: bool = False) -> CropSet:
    """Detect and crop every sample, reading and writing an .npz cache keyed by the files."""
    from facegate.liveness.detect import face_crop

    path = cache_dir() / f"crops-{_cache_key(samples)}.npz"
    if path.exists():
        z = np.load(path)
        return CropSet(samples, z["crops"], z["found"], z["rotation"])
    n = len(samples)
    crops = np.zeros((n, CACHE_CROP_SIZE, CACHE_CROP_SIZE, 3), np.uint8)
    found = np.zeros(n, bool)
    rotation = np.zeros(n, np.int8)
    for i, face in _largest_faces(samples, detector, progress):
        crops[i] = face_crop(face, CACHE_CROP_SIZE)
        found[i] = True
        rotation[i] = face.rotation
    _save(path, crops=crops, found=found, rotation=rotation)
    return CropSet(samples, crops, found, rotation)


def _largest_faces(samples: list[Sample], detector=None, progress: bool = False):
    """(index, largest face) of every sample with a face, detected as the crop cache is."""
    from facegate.liveness.detect import load_image

    if detector is None:
        from facegate.liveness.detect import FaceDetector

        # The cache was built without the serving detector's CLAHE retry (it only rescues
        # frames with no face at all); keeping it off keeps the cached crops reproducible.
        detector = FaceDetector(equalize_retry=False)
    items = enumerate(samples)
    if progress:
        from tqdm import tqdm

        items = tqdm(items, total=len(samples), desc="detecting faces", unit="img")
    for i, s in items:
        faces = detector.detect(load_image(str(s.path)))
        if faces:
            yield i, faces[0]


def detections(samples: list[Sample], detector=None, progress: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes (N, 4) in the upright frame, rotation (N,), found (N,)) of every sample's
    largest face, detected as :func:`crop_set` detects it; cached beside the crops."""

    path = cache_dir() / f"boxes-{_cache_key(samples)}.npz"
    if path.exists():
        z = np.load(path)
        return z["boxes"], z["rotation"], z["found"]
    n = len(samples)
    boxes, rotation, found = np.zeros((n, 4)), np.zeros(n, np.int8), np.zeros(n, bool)
    for i, face in _largest_faces(samples, detector, progress):
        boxes[i], rotation[i], found[i] = face.box, face.rotation, True
    _save(path, boxes=boxes, rotation=rotation, found=found)
    return boxes, rotation, found


def context_crops(samples: list[Sample], check, progress: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(crops, found): ``check.crop`` of each sample's face on its full image, for checks
    that look beyond the tight face crop (a context scale); cached per crop kind."""
    from facegate.liveness.detect import load_image
    from facegate.liveness.types import Face

    tag = f"{check.kind}-{check.crop_scale:g}-{check.input_size}"
    path = cache_dir() / f"context-{_cache_key(samples)}-{tag}.npz"
    if path.exists():
        z = np.load(path)
        return z["crops"], z["found"]
    boxes, rotation, found = detections(samples, progress=progress)
    size = check.input_size
    crops = np.zeros((len(samples), size, size, 3), np.uint8)
    for i in np.flatnonzero(found):
        image = load_image(str(samples[i].path))
        k = int(rotation[i])
        upright = np.ascontiguousarray(np.rot90(image, k)) if k else image
        face = Face(box=tuple(float(v) for v in boxes[i]), landmarks=np.zeros((5, 2)),
                    detection_score=1.0, frame=upright, rotation=k)
        crops[i] = check.crop(face)
    _save(path, crops=crops, found=found)
    return crops, found


def _save(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
