"""Trained weights and their registry (torchvision-style).

``registry.json`` holds one entry per weight file: sha256, input size, preprocessing,
threshold, metrics and the data they were measured on, and a licence note. Loading verifies
the hash and reads safetensors only: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHTS_DIR = Path(__file__).resolve().parent
REGISTRY_PATH = WEIGHTS_DIR / "registry.json"


class WeightsError(RuntimeError):
    """A weight file is missing, unregistered, or its hash does not match the registry."""


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    file: str | None  # None: an algorithm with parameters in the entry only (no file)
    sha256: str | None
    architecture: str
    input_size: int
    preprocessing: dict[str, Any]
    threshold: float
    metrics: dict[str, Any]
    data: str
    license: str
    extra: dict[str, Any]

    registry_dir: Path = WEIGHTS_DIR

    @property
    def path(self) -> Path:
        if self.file is None:
            raise WeightsError(f"registry entry {self.name!r} has no weights file")
        return self.registry_dir / self.file


def read_registry(path: Path = REGISTRY_PATH) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def entry(name: str, path: Path = REGISTRY_PATH) -> WeightsEntry:
    reg = read_registry(path)
    if name not in reg:
        raise WeightsError(f"no weights named {name!r} in {path}; known: {sorted(reg)}")
    e = dict(reg[name])
    known = {f for f in WeightsEntry.__dataclass_fields__
             if f not in ("name", "extra", "registry_dir")}
    extra = {k: e.pop(k) for k in list(e) if k not in known}
    return WeightsEntry(name=name, extra=extra, registry_dir=Path(path).parent, **e)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(e: WeightsEntry) -> WeightsEntry:
    """``e`` after checking its file exists and its sha256 matches (entries without a file
    pass as they are)."""
    if e.file is None:
        return e
    if not e.path.exists():
        raise WeightsError(f"weights file {e.path} for {e.name!r} is missing")
    digest = sha256_file(e.path)
    if digest != e.sha256:
        raise WeightsError(f"{e.path.name}: sha256 {digest} does not match registry {e.sha256}")
    return e


def verified_entry(name: str, registry: Path = REGISTRY_PATH) -> WeightsEntry:
    """The registry entry of ``name`` after checking its file exists and its sha256 matches."""
    return verify(entry(name, registry))


def load_entry_state(e: WeightsEntry) -> dict[str, Any]:
    """The float32 tensors of entry ``e``'s safetensors file, hash verified."""
    from safetensors.torch import load_file

    tensors = load_file(str(verify(e).path))
    return {k: v.float() for k, v in tensors.items()}


def load_state_dict(name: str, registry: Path = REGISTRY_PATH
                    ) -> tuple[dict[str, Any], WeightsEntry]:
    """The float32 tensors of weights ``name`` and their registry entry, hash verified."""
    e = entry(name, registry)
    return load_entry_state(e), e


def register(name: str, values: dict[str, Any], path: Path = REGISTRY_PATH) -> None:
    """Add or replace one registry entry (used by the training commands)."""
    reg = read_registry(path)
    reg[name] = values
    path.write_text(json.dumps(reg, indent=2, sort_keys=True) + "\n")


def register_with_card(name: str, values: dict[str, Any], out: Path,
                       card: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """Register ``name`` in ``out``/registry.json, then write ``card`` of the stored entry as
    ``out``/cards/<name>.md (the trainers' last step); returns the entry."""
    register(name, values, out / "registry.json")
    e = read_registry(out / "registry.json")[name]
    (out / "cards").mkdir(exist_ok=True)
    (out / "cards" / f"{name}.md").write_text(card(e))
    return e
