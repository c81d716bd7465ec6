"""Liveness datasets in ../shared/data and a cache of their face crops.

``pad/<source>/{live,spoof}/*`` is the folder format; NUAA adds its official train/test lists.
Every image is re-detected and cropped by :mod:`facegate.liveness.detect`, exactly as the
server crops a camera frame, so no model can learn a source's crop size or rotation.
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

# Sources that share images (DATA.md): held out together in leave-one-source-out.
SOURCE_GROUPS = {
    "pyis_saikan45": "public_replay",
    "hm_apfol": "public_replay",
    "hm_shivam": "public_replay",
    "hm_jtboing": "public_replay",
}


def default_data_root() -> Path:
    """``$FACEGATE_DATA`` or the ``shared/data`` folder beside the checkout."""
    env = os.environ.get("FACEGATE_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent
    return here.parent / "shared" / "data"


def cache_dir() -> Path:
    return Path(os.environ.get("FACEGATE_CACHE", Path.home() / ".cache" / "facegate"))


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # LIVE or SPOOF (eyes: 1 open, 0 closed; identities: person index)
    source: str
    clip: str  # person or clip id: internal splits never cut through one
    split: str = ""  # "train"/"test" where the source has an official split


def group_of(source: str) -> str:
    return SOURCE_GROUPS.get(source, source)


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
                key=_natural_key,
            )
            # Crop sets are frames of a few clips in list order: blocks of ten stand in for clips.
            for i, p in enumerate(files):
                out.append(Sample(p, label, self.source, f"{label_name}-{i // 10}"))
        return out


class NuaaDataset(FolderDataset):
    """NUAA Photograph Imposter DB with its official train/test lists; clip = subject."""

    def samples(self) -> list[Sample]:
        split_of: dict[str, str] = {}
        for split in ("train", "test"):
            for label_name in ("live", "spoof"):
                lst = self.root / f"{label_name}_{split}.txt"
                for line in lst.read_text().split():
                    split_of[line.strip()] = split
        out = []
        for s in super().samples():
            rel = s.path.relative_to(self.root).as_posix()
            subject = s.path.parent.name
            out.append(Sample(s.path, s.label, s.source, subject, split_of.get(rel, "")))
        return out


class EyeDataset(Dataset):
    """Eye crops in ``DIR/open/*`` and ``DIR/closed/*``; label 1 = open, 0 = closed."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root else default_data_root() / "eyes" / "pheepa"
        self.source = self.root.name

    def samples(self) -> list[Sample]:
        out = []
        for name, label in (("open", 1), ("closed", 0)):
            files = sorted((self.root / name).glob("*"), key=_natural_key)
            files = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
            out += [Sample(p, label, self.source, f"{name}-{i // 10}") for i, p in enumerate(files)]
        return out


class IdentityDataset(Dataset):
    """Photos of known people: ``DIR/<person>/*`` (one folder per person)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.source = self.root.name

    def samples(self) -> list[Sample]:
        people = sorted(p for p in self.root.iterdir() if p.is_dir())
        return [Sample(f, i, self.source, person.name) for i, person in enumerate(people)
                for f in sorted(person.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]


def pad_sources(root: Path | None = None) -> list[str]:
    pad = (root or default_data_root()) / "pad"
    return sorted(p.name for p in pad.iterdir() if p.is_dir())


def pad_dataset(source: str, root: Path | None = None) -> FolderDataset:
    folder = (root or default_data_root()) / "pad" / source
    cls = NuaaDataset if source == "nuaa" else FolderDataset
    return cls(folder, source)


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


def _natural_key(p: Path) -> tuple:
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
    from facegate.liveness.detect import face_crop, load_image

    path = cache_dir() / f"crops-{_cache_key(samples)}.npz"
    if path.exists():
        z = np.load(path)
        return CropSet(samples, z["crops"], z["found"], z["rotation"])
    if detector is None:
        from facegate.liveness.detect import FaceDetector

        # The cache was built without the serving detector's CLAHE retry (it only rescues
        # frames with no face at all); keeping it off keeps the cached crops reproducible.
        detector = FaceDetector(equalize_retry=False)
    n = len(samples)
    crops = np.zeros((n, CACHE_CROP_SIZE, CACHE_CROP_SIZE, 3), np.uint8)
    found = np.zeros(n, bool)
    rotation = np.zeros(n, np.int8)
    items = enumerate(samples)
    if progress:
        from tqdm import tqdm

        items = tqdm(items, total=n, desc="detecting faces", unit="img")
    for i, s in items:
        faces = detector.detect(load_image(str(s.path)))
        if faces:
            crops[i] = face_crop(faces[0], CACHE_CROP_SIZE)
            found[i] = True
            rotation[i] = faces[0].rotation
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, crops=crops, found=found, rotation=rotation)
    os.replace(tmp, path)
    return CropSet(samples, crops, found, rotation)


def source_crops(source: str, root: Path | None = None, progress: bool = False) -> CropSet:
    return crop_set(pad_dataset(source, root).samples(), progress=progress)


if __name__ == "__main__":  # python -m facegate.liveness.data: fill the crop cache
    import sys
    import time

    for src in sys.argv[1:] or pad_sources():
        t = time.time()
        cs = source_crops(src, progress=True)
        print(f"{src}: {len(cs.samples)} images, {int(cs.found.sum())} faces, "
              f"{int((cs.rotation != 0).sum())} turned, {time.time() - t:.0f}s", flush=True)
