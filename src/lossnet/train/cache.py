"""The teacher-feature cache: a loss network's features of a dataset, computed once.

Every procedure that needs the loss network's features of its *input* images (FP targets,
feature-encoder inputs, PS targets) reads them from here, so the loss network runs once per
dataset instead of once per epoch and procedure. Features are computed in batches under
``torch.no_grad`` on the best device and kept in memory, or, when a directory is used, streamed
batch by batch into ``$LOSSNET_HOME/features/<key>.npy`` (:func:`build_feature_file`: memory
holds one batch, whatever the dataset's size) and memory-mapped from there (pages are read on
access). ``dtype=torch.float16`` halves the file and the memory.

The key hashes the images' bytes, the architecture, the layers, the sigmoid and normalisation
settings and the weights' source and checksum, so a changed setting never reuses stale features.

Under ``torchrun`` the features are computed once, sharded: each rank runs the loss network on its
share of the images and the shares are gathered on every rank; only rank 0 writes the ``.npy``
file, and whether a file exists is rank 0's answer (so every rank takes the same path).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from lossnet.types import PathLike
from lossnet import distributed
from lossnet.utils import (atomic_write, batched, best_device, lossnet_home, module_device,  # noqa: F401 (re-exported)
                           stable_hash)
from lossnet.train.runtime import fits_on_device
from lossnet.zoo.network import LossNetwork
from lossnet.zoo.weights import read_manifest


def images_fingerprint(images: torch.Tensor) -> str:
    """sha256 of a uint8 image tensor's shape and bytes (16 hex digits)."""
    h = hashlib.sha256(str(tuple(images.shape)).encode())
    h.update(images.contiguous().cpu().numpy().data)  # the buffer itself: no copy of the images
    return h.hexdigest()[:16]


def net_identity(net: LossNetwork) -> dict:
    """What identifies a loss network's features: architecture, graph nodes, sigmoid,
    normalisation, weight source and checksum (a hash of the parameters for random weights)."""
    random = net.weights_source is None or net.weights_source.startswith("random")  # also "random(seed=N)"
    weights = read_manifest().get(net.arch, {}).get("sha256") if not random and net.weights_source != "state_dict" else None
    parts = {
        "arch": net.arch,
        "nodes": list(net.nodes),
        "sigmoid": net.sigmoid,
        "normalize": net.normalize,
        "weights": net.weights_source,
        "weights_sha": weights,
    }
    if random:  # random weights: key on the actual parameters
        parts["params"] = net.params_sha256()
    return parts


def cache_key(images: torch.Tensor, net: LossNetwork, dtype: torch.dtype, fingerprint: str | None = None) -> str:
    """Key of (dataset, loss network, layers, options, weights) for the cache; ``fingerprint``:
    :func:`images_fingerprint` of ``images`` when the caller already has it (hashing 200 MB of
    images takes ~0.15 s)."""
    parts = {"images": fingerprint or images_fingerprint(images), **net_identity(net), "dtype": str(dtype)}
    return stable_hash(parts, 24, compact=False)


@torch.no_grad()
def compute_features(images: torch.Tensor, net: LossNetwork, *, batch_size: int = 256, device=None,
                     dtype: torch.dtype = torch.float32, progress: bool = True,
                     keep_on_device: bool = False) -> torch.Tensor:
    """The single-layer features of ``net`` for uint8 images (N, 3, H, W) as (N, C, H', W') ``dtype``,
    on the CPU; with ``keep_on_device``, on the CUDA device that computed them when they take at
    most :data:`~lossnet.train.runtime.DATA_ON_DEVICE_FRACTION` of its free memory (training then
    reads them there: no copy to the host and back).

    Under ``torchrun`` every rank calls it with the same images; each computes its share and
    receives the whole (:func:`lossnet.distributed.all_gather_rows`), on the CPU.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    if len(net.nodes) != 1:
        raise ValueError(f"the feature cache holds one layer; the loss network returns {len(net.nodes)}")
    if distributed.world_size() > 1 and len(images) >= distributed.world_size():
        part = _compute(distributed.shard(images), net, batch_size, device, dtype, progress and distributed.is_main())
        return distributed.all_gather_rows(part, len(images))
    return _compute(images, net, batch_size, device, dtype, progress, keep_on_device)


def _compute(images: torch.Tensor, net: LossNetwork, batch_size: int, device, dtype: torch.dtype,
             progress: bool, keep_on_device: bool = False) -> torch.Tensor:
    device = best_device(device)
    net = net.to(device)
    try:
        keep = keep_on_device and device.type == "cuda" and fits_on_device(
            len(images) * torch.Size(feature_shape(net, tuple(images.shape[-2:]))).numel() * dtype.itemsize, device)
        return batched(lambda x: net(x)[0], images, batch_size, device, dtype=dtype,
                       progress=f"features {net.arch}:{net.layer_refs[0]}" if progress else None,
                       out_device=device if keep else "cpu")
    finally:
        net.to("cpu")


def feature_shape(net: LossNetwork, size: int | tuple[int, int]) -> tuple[int, ...]:
    """The (C, H, W) of ``net``'s single-layer features of ``size`` x ``size`` images, from shapes
    alone (``FakeTensorMode``: no convolution runs, no data are read)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    h, w = (size, size) if isinstance(size, int) else size
    with FakeTensorMode(allow_non_fake_inputs=True):
        out = net.extract(torch.empty(1, 3, h, w, device=module_device(net)))
    return tuple(int(d) for d in out[0].shape[1:])


def target_features(images: torch.Tensor, net: LossNetwork, *, max_gb: float, batch_size: int = 64,
                    device=None) -> torch.Tensor | None:
    """float32 features of fixed training targets (uint8 (N, 3, H, W)), computed once, when they
    fit in ``max_gb``; ``None`` otherwise (the caller then runs ``net`` on every batch).

    Training with a feature loss against fixed targets (super-resolution patches, segmentation
    masks) otherwise runs the loss network on the same targets in every epoch.
    """
    with torch.no_grad():
        probe = net(images[:1].to(module_device(net)).float().div(255))[0]
    if len(images) * probe[0].numel() * 4 / 1e9 > max_gb:
        return None
    return compute_features(images, net, batch_size=batch_size, device=device, progress=False)


class FeatureCache:
    """Loss-network features of datasets, computed once and reused.

    Args:
        directory: where to keep features as memory-mapped ``.npy`` files; ``None`` keeps them in
            memory for the life of this object only. Default: ``$LOSSNET_HOME/features``.
        dtype: storage dtype (float16 halves memory; features are upcast per batch).
    """

    def __init__(self, directory: PathLike | None = "default", dtype: torch.dtype = torch.float32,
                 batch_size: int = 256, device=None, progress: bool = True) -> None:
        if directory == "default":
            directory = lossnet_home() / "features"
        self.directory = Path(directory) if directory is not None else None
        self.dtype, self.batch_size, self.device, self.progress = dtype, batch_size, device, progress
        self._memory: dict[str, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    def get(self, images: torch.Tensor, net: LossNetwork, *, fingerprint: str | None = None) -> torch.Tensor:
        """Features (N, C, H, W) of ``images`` (uint8 N x 3 x H x W) under ``net``; computed on a miss.
        ``fingerprint``: :func:`images_fingerprint` of ``images`` when the caller already has it."""
        key = cache_key(images, net, self.dtype, fingerprint)
        if key in self._memory:
            self.hits += 1
            return self._memory[key]
        if self.directory is not None:
            path = self.directory / f"{key}.npy"
            if distributed.broadcast_object(path.exists()):  # rank 0's answer: every rank takes one path
                self.hits += 1
                feats = _open_memmap(path)
                self._memory[key] = feats
                return feats
        self.misses += 1
        if self.directory is not None and distributed.world_size() == 1:  # streamed to disk, read memory-mapped
            path = self.directory / f"{key}.npy"
            shape = build_feature_file(images, net, path, batch_size=self.batch_size, device=self.device,
                                       dtype=self.dtype, progress=self.progress)
            self._write_meta(key, net, shape, len(images))
            feats = _open_memmap(path)
        else:
            feats = compute_features(images, net, batch_size=self.batch_size, device=self.device, dtype=self.dtype,
                                     progress=self.progress)
            if self.directory is not None and distributed.is_main():  # one writer
                self.directory.mkdir(parents=True, exist_ok=True)
                atomic_write(self.directory / f"{key}.npy", lambda t: _save_npy(t, feats.numpy()))
                self._write_meta(key, net, tuple(feats.shape), len(images))
        self._memory[key] = feats
        return feats

    def _write_meta(self, key: str, net: LossNetwork, shape: tuple, n: int) -> None:
        atomic_write(self.directory / f"{key}.json", json.dumps(
            {"arch": net.arch, "nodes": net.nodes, "sigmoid": net.sigmoid, "shape": list(shape),
             "n_images": n, "dtype": str(self.dtype)}))


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append ".npy" to a temporary name
        np.save(f, array)


def _open_memmap(path: Path) -> torch.Tensor:
    """A read-only memory map of a ``.npy`` file as a tensor (pages are read on access)."""
    with warnings.catch_warnings():  # read-only memory map: features are never written to
        warnings.filterwarnings("ignore", message=".*not writable.*")
        return torch.from_numpy(np.load(path, mmap_mode="r"))


@torch.no_grad()
def build_feature_file(images: torch.Tensor, net: LossNetwork, path: PathLike, *, batch_size: int = 256,
                       device=None, dtype: torch.dtype = torch.float32, progress: bool = False) -> tuple[int, ...]:
    """Write ``net``'s single-layer features of uint8 ``images`` (N, 3, H, W) to the ``.npy`` file
    ``path``, streamed: each batch is computed and appended, so memory holds one batch of features
    whatever N is (never the whole (N, C, H', W') tensor). ``dtype``: float32 or float16 (half the
    file; upcast when read). Written to a temporary file and renamed, so ``path`` is complete or
    absent. Returns the array's shape."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    if len(net.nodes) != 1:
        raise ValueError(f"the feature cache holds one layer; the loss network returns {len(net.nodes)}")
    if dtype not in (torch.float32, torch.float16):
        raise ValueError(f"feature files are float32 or float16, got {dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    device = best_device(device)
    net = net.to(device)
    shape = (len(images), *feature_shape(net, tuple(images.shape[-2:])))
    np_dtype = np.float16 if dtype == torch.float16 else np.float32

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np_dtype)), "fortran_order": False, "shape": shape})
            for i in tqdm(range(0, len(images), batch_size), desc=f"features {net.arch}:{net.layer_refs[0]}",
                          disable=not progress, leave=False):
                x = images[i:i + batch_size].to(device).float().div_(255)
                f.write(net(x)[0].to("cpu", dtype).contiguous().numpy().tobytes())

    try:
        atomic_write(path, write)
    finally:
        net.to("cpu")
    return shape


def with_target_features(data: dict[str, torch.Tensor], key: str, loss_net, cfg) -> dict[str, torch.Tensor]:
    """``data`` plus ``feat``: ``loss_net``'s features of the fixed targets ``data[key]`` (uint8,
    1 or 3 channels), computed once when they fit in ``cfg.feature_cache_gb``; ``data`` unchanged
    without a loss network or when they do not fit (then they are computed on every batch). ``cfg``:
    a config or its typed schema (:func:`lossnet.config.typed`)."""
    max_gb = float(getattr(cfg, "feature_cache_gb", None) or 0)
    if loss_net is None or not max_gb:
        return data
    targets = data[key].expand(-1, 3, -1, -1) if data[key].shape[1] == 1 else data[key]
    feat = target_features(targets, loss_net.requires_grad_(False).eval(), max_gb=max_gb,
                           device=getattr(cfg, "device", None) or None)
    return data if feat is None else {**data, "feat": feat}
