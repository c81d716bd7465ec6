"""The shared training and evaluation sources in ../shared/data (DATA.md).

``pad/<source>/{live,spoof}/*`` in the folder format of :mod:`facegate.liveness.data`; NUAA
adds its official train/test lists; eye crops; identity photos; the sources that share images
and are held out together in leave-one-source-out.

    python -m training.datasets [SOURCE ...]    # fill the crop cache
"""

from __future__ import annotations

import os
from pathlib import Path

from facegate.liveness.data import (
    IMAGE_SUFFIXES,
    LIVE,
    SPOOF,
    CropSet,
    Dataset,
    FolderDataset,
    Sample,
    cache_dir,
    crop_set,
    default_data_root,
    natural_key,
)

__all__ = ["LIVE", "SPOOF", "CropSet", "EyeDataset", "FolderDataset", "IdentityDataset",
           "NuaaDataset", "Sample", "cache_dir", "crop_set", "default_data_root", "group_of",
           "pad_dataset", "pad_sources", "source_crops"]

# Sources that share images (DATA.md): held out together in leave-one-source-out.
SOURCE_GROUPS = {
    "pyis_saikan45": "public_replay",
    "hm_apfol": "public_replay",
    "hm_shivam": "public_replay",
    "hm_jtboing": "public_replay",
}


def group_of(source: str) -> str:
    return SOURCE_GROUPS.get(source, source)


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
            files = sorted((self.root / name).glob("*"), key=natural_key)
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


def source_crops(source: str, root: Path | None = None, progress: bool = False) -> CropSet:
    return crop_set(pad_dataset(source, root).samples(), progress=progress)


if __name__ == "__main__":  # python -m training.datasets: fill the crop cache
    import sys
    import time

    for src in sys.argv[1:] or pad_sources():
        t = time.time()
        cs = source_crops(src, progress=True)
        print(f"{src}: {len(cs.samples)} images, {int(cs.found.sum())} faces, "
              f"{int((cs.rotation != 0).sum())} turned, {time.time() - t:.0f}s", flush=True)
