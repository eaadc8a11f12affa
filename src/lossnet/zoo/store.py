"""The checksum-verified weights store: ``$LOSSNET_HOME/weights/{key}.safetensors`` + ``manifest.json``.

Every stored file has a manifest entry with its file name, sha256 and size in bytes; each load
reads at most that many bytes of a regular file and checks the sha256 of what it parses
(:func:`lossnet.zoo.files.read_weights_file`), so a corrupted, truncated or swapped file, or a
symlink to a device, is refused with one line saying what to do.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from lossnet.errors import ZooError
from lossnet.utils import atomic_write, lossnet_home

from .files import read_regular_file, read_weights_file

__all__ = ["load_stored", "manifest_path", "read_manifest", "store", "stored_path", "weights_dir"]


def weights_dir() -> Path:
    """``$LOSSNET_HOME/weights`` (default ``~/.cache/lossnet/weights``)."""
    return lossnet_home() / "weights"


def manifest_path() -> Path:
    return weights_dir() / "manifest.json"


def _refetch(key: str) -> str:
    arch = key.removeprefix("lpips_")
    return f"delete it and run `lossnet weights fetch {arch} --force`"


def read_manifest() -> dict:
    """``{key: {"file", "sha256", "size", "source", ...}}``; ``{}`` before anything was stored."""
    p = manifest_path()
    if not p.exists():
        return {}
    fix = "delete it and run `lossnet weights fetch ARCH --force` to rebuild it"
    try:
        manifest = json.loads(read_regular_file(p, fix=fix).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ZooError(f"the weights manifest {p} is corrupt ({e}); {fix}") from None
    if not isinstance(manifest, dict) or not all(isinstance(v, dict) and isinstance(v.get("file"), str)
                                                 and isinstance(v.get("sha256"), str) for v in manifest.values()):
        raise ZooError(f"the weights manifest {p} is not a JSON object of entries with file and sha256; {fix}")
    return manifest


def store(key: str, tensors: dict[str, torch.Tensor], **info) -> Path:
    """Save ``tensors`` as ``$LOSSNET_HOME/weights/{key}.safetensors`` and record its sha256 and size.

    Written atomically (:func:`lossnet.utils.atomic_write`); the manifest is updated after.
    Callers validate ``tensors`` first (:func:`lossnet.zoo.validate.validate_state_dict`).
    """
    from safetensors.torch import save

    d = weights_dir()
    d.mkdir(parents=True, exist_ok=True)
    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata={"key": key})
    path = atomic_write(d / f"{key}.safetensors", data)  # readers see the old file or the new one
    manifest = read_manifest()
    manifest[key] = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                     "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
    atomic_write(manifest_path(), json.dumps(manifest, indent=2, sort_keys=True))
    return path


def stored_path(key: str) -> Path | None:
    """The stored file of ``key`` if the manifest has it and it exists (any file type), else None."""
    entry = read_manifest().get(key)
    if entry is None:
        return None
    path = weights_dir() / entry["file"]
    return path if path.exists() or path.is_symlink() else None


def load_stored(key: str) -> dict[str, torch.Tensor] | None:
    """Load ``key`` from the store after checking its size and sha256; None if it was never stored.

    Raises :class:`~lossnet.errors.ChecksumError` when the file does not match the manifest and
    :class:`~lossnet.errors.InvalidWeightsError` when it is not a regular file or not readable.
    """
    entry = read_manifest().get(key)
    path = stored_path(key)
    if path is None:
        return None
    return read_weights_file(path, fmt="safetensors", size=entry.get("size"), sha256=entry["sha256"],
                             fix=f"the stored file is corrupted or was replaced: {_refetch(key)}")
