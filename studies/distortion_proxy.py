"""Benchmark-1 distortion proxy for every offline-available loss network x E/S/M/L.

A *proxy*, not BAPPS: 64x64 patches of the real SR-set images (shared/data/sr) with synthetic
distortions of known strength (lossnet.eval.similarity.PROXY_DISTORTIONS); the known answer is
"the weaker distortion is closer". Prints the 2AFC score per distortion, its mean, the harder
cross-distortion 2AFC ("cross": weakest of one distortion vs strongest of another), the JND-style
mAP mean and its pooled version, for each loss network (Eq. 1, uniform weights) and for two
baselines: pixel L2 (MSE) and 1 - SSIM (torchmetrics). With --json FILE also writes all rows.

    python studies/distortion_proxy.py [--root ../shared/data/sr] [--n-patches 64] [--seed 0]
                                          [--archs alexnet vgg16] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import torch

from lossnet.eval.similarity import (
    FeatureDistance, PROXY_DISTORTIONS, make_proxy_set, pixel_l2_distance, score_proxy_set, ssim_distance,
)
from lossnet.zoo import LossNetwork, list_archs, status
from lossnet.zoo.layers import LAYER_KEYS

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = Path(os.environ.get("LOSSNET_SHARED", REPO.parent / "shared"))
    ap.add_argument("--root", default=str(shared / "data" / "sr"))
    ap.add_argument("--n-patches", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--archs", nargs="*", help="default: every architecture with weights available")
    ap.add_argument("--layers", default="".join(LAYER_KEYS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    ps = make_proxy_set(args.root, n_patches=args.n_patches, seed=args.seed)
    archs = args.archs or [a for a in list_archs() if status(a).available]
    print(f"proxy set: {args.n_patches} patches from {args.root} (seed {args.seed}), "
          f"{len(PROXY_DISTORTIONS)} distortions x 5 levels, built in {time.perf_counter() - t0:.1f}s; "
          f"loss networks: {', '.join(archs)}; {torch.get_num_threads()} thread(s)")

    cells = [("pixel L2", "-", pixel_l2_distance), ("1-SSIM", "-", ssim_distance)]
    cells += [(a, layer, None) for a in archs for layer in args.layers]
    results = []
    for name, layer, fn in cells:
        t = time.perf_counter()
        if fn is None:
            fn = FeatureDistance(LossNetwork(name, layers=[layer]))
        rows = score_proxy_set(fn, ps, batch_size=args.batch, seed=args.seed)
        results.append({"name": name, "layer": layer, "seconds": time.perf_counter() - t, "rows": rows})

    dists = list(PROXY_DISTORTIONS)
    head = f"{'distance':<20}{'layer':<6}" + "".join(f"{d[:8]:>9}" for d in dists)
    print("\n2AFC (fraction of (x, weaker, stronger) triplets ordered correctly)")
    print(head + f"{'mean':>8}{'cross':>8}")
    for r in results:
        s = {row["category"]: row["score"] for row in r["rows"] if row["task"] == "2afc"}
        print(f"{r['name']:<20}{r['layer']:<6}" + "".join(f"{s[d]:>9.3f}" for d in dists)
              + f"{s['mean']:>8.3f}{s['cross']:>8.3f}")
    print("\nJND-style mAP ((x, weakest) = same, (x, strongest) = different)")
    print(head + f"{'mean':>8}{'pooled':>8}{'sec':>7}")
    for r in results:
        s = {row["category"]: row["score"] for row in r["rows"] if row["task"] == "jnd"}
        print(f"{r['name']:<20}{r['layer']:<6}" + "".join(f"{s[d]:>9.3f}" for d in dists)
              + f"{s['mean']:>8.3f}{s['pooled']:>8.3f}{r['seconds']:>7.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n_patches": args.n_patches, "seed": args.seed, "root": args.root, "results": results}, f,
                      indent=1)


if __name__ == "__main__":
    main()
