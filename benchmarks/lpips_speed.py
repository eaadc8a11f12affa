"""LPIPS speed: lossnet's PerceptualDistance vs the `lpips` package vs torchmetrics, in one process.

All three use the same ImageNet trunk (lossnet's offline AlexNet / VGG-16 weights are copied into
the peers, which would otherwise download torchvision's) and LPIPS v0.1's linear layers, so the
values must agree (max |difference| printed). Times: forward (no grad) and forward + backward
(gradient w.r.t. one input, as in training), median and min of --repeats runs, and the ratios
peer / lossnet (> 1: lossnet is faster). Machines are noisy: compare the ratios of one run.

    python benchmarks/lpips_speed.py --arch alexnet --batch 16 --size 256 --repeats 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import torch


def _trunk_state(arch: str) -> dict:
    from lossnet.zoo import weights as W

    sd, _ = W.load_state_dict(arch)
    return {k.replace("features.", ""): v for k, v in sd.items() if k.startswith("features.")}


def _copy_trunk(slices, tv: dict) -> None:
    for s in slices:
        for name, mod in s.named_children():
            if isinstance(mod, torch.nn.Conv2d):
                mod.weight.data.copy_(tv[f"{name}.weight"])
                mod.bias.data.copy_(tv[f"{name}.bias"])


def build(arch: str):
    import lpips
    import torchmetrics.functional.image.lpips as tml
    import torchvision
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    from lossnet.losses import PerceptualDistance

    tv = _trunk_state(arch)
    lp_name = {"alexnet": "alex", "vgg16": "vgg"}[arch]
    ours = PerceptualDistance(arch, lpips_weights=True).eval()
    theirs = lpips.LPIPS(pretrained=True, net=lp_name, pnet_rand=True, verbose=False).eval()
    _copy_trunk([theirs.net.slice1, theirs.net.slice2, theirs.net.slice3, theirs.net.slice4, theirs.net.slice5], tv)

    def offline_features(net: str, pretrained: bool = False):
        m = getattr(torchvision.models, net)(weights=None).features
        m.load_state_dict(tv)
        return m

    with mock.patch.object(tml, "_get_tv_model_features", offline_features):
        tm = LearnedPerceptualImagePatchSimilarity(net_type=lp_name, reduction="none", normalize=True).eval()
    for p in (*theirs.parameters(), *tm.parameters()):
        p.requires_grad_(False)
    return {
        "lossnet": lambda a, b: ours(a, b),
        "lpips": lambda a, b: theirs(a * 2 - 1, b * 2 - 1).flatten(),
        "torchmetrics": lambda a, b: tm.net(a, b, normalize=True).flatten(),
    }


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", nargs="+", default=["alexnet", "vgg16"], choices=["alexnet", "vgg16"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"batch {args.batch}x3x{args.size}x{args.size}, {args.repeats} repeats")
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(args.batch, 3, args.size, args.size, generator=g).to(device)
    x1 = torch.rand(args.batch, 3, args.size, args.size, generator=g).to(device)
    for arch in args.arch:
        impls = build(arch)
        with torch.no_grad():
            vals = {k: f(x0, x1).float().cpu() for k, f in impls.items()}
        diffs = {k: float((vals[k] - vals["lossnet"]).abs().max()) for k in vals if k != "lossnet"}
        res = {}
        for name, f in impls.items():
            def fwd():
                with torch.no_grad():
                    f(x0, x1)

            def fwd_bwd():
                a = x0.clone().requires_grad_(True)
                f(a, x1).sum().backward()

            fwd(), fwd_bwd()  # warm-up
            res[name] = {"forward": timed(fwd, args.repeats), "forward+backward": timed(fwd_bwd, args.repeats)}
        print(f"\n{arch}: max |value difference| vs lossnet: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
        print(f"{'':14}{'forward median/min (s)':>26}{'fwd+bwd median/min (s)':>26}")
        for name, r in res.items():
            cols = [f"{statistics.median(r[m]):.3f} / {min(r[m]):.3f}" for m in ("forward", "forward+backward")]
            print(f"{name:<14}{cols[0]:>26}{cols[1]:>26}")
        for peer in ("lpips", "torchmetrics"):
            ratios = [min(res[peer][m]) / min(res["lossnet"][m]) for m in ("forward", "forward+backward")]
            print(f"ratio {peer} / lossnet (min): forward {ratios[0]:.2f}x, forward+backward {ratios[1]:.2f}x")


if __name__ == "__main__":
    main()
