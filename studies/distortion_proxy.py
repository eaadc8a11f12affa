"""Benchmark-1 distortion proxy for every offline-available loss network x E/S/M/L.

A *proxy*, not BAPPS: 64x64 patches of the real SR-set images (shared/data/sr) with synthetic
distortions of known strength (lossnet.eval.similarity.PROXY_DISTORTIONS); the known answer is
"the weaker distortion is closer". Prints the 2AFC score per distortion, its mean, the harder
cross-distortion 2AFC ("cross": weakest of one distortion vs strongest of another), the JND-style
mAP mean and its pooled version, for each loss network (Eq. 1, uniform weights) and for two
baselines: pixel L2 (MSE) and 1 - SSIM (torchmetrics). With --json FILE also writes all rows.

    python studies/distortion_proxy.py [--root ../shared/data/sr] [--n-patches 64] [--seeds 0 1 2]
                                          [--archs alexnet vgg16] [--threads 1] [--json out.json] [--markdown]

With several seeds (patches, crops and triplets drawn anew) every score is printed as mean ± std
over the seeds (uncorrected std); ``--markdown`` ends the output with the docs' table
(docs/similarity.md, ``make results TABLES=distortion_proxy``).
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
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--archs", nargs="*", help="default: every architecture with weights available")
    ap.add_argument("--layers", default="".join(LAYER_KEYS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--json")
    ap.add_argument("--markdown", action="store_true", help="end with the markdown table of docs/similarity.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    archs = args.archs or [a for a in list_archs() if status(a).available]
    cells = [("pixel L2", "-", pixel_l2_distance), ("1-SSIM", "-", ssim_distance)]
    cells += [(a, layer, None) for a in archs for layer in args.layers]
    nets = {}  # one loss network per cell, shared by the seeds
    results = [{"name": n, "layer": layer, "seconds": 0.0, "rows": []} for n, layer, _ in cells]
    for seed in args.seeds:
        t0 = time.perf_counter()
        ps = make_proxy_set(args.root, n_patches=args.n_patches, seed=seed)
        print(f"proxy set: {args.n_patches} patches from {args.root} (seed {seed}), "
              f"{len(PROXY_DISTORTIONS)} distortions x 5 levels, built in {time.perf_counter() - t0:.1f}s; "
              f"loss networks: {', '.join(archs)}; {torch.get_num_threads()} thread(s)", flush=True)
        for (name, layer, fn), res in zip(cells, results):
            t = time.perf_counter()
            if fn is None:
                fn = nets.setdefault((name, layer), FeatureDistance(LossNetwork(name, layers=[layer])))
            res["rows"] += [{**row, "seed": seed} for row in score_proxy_set(fn, ps, batch_size=args.batch, seed=seed)]
            res["seconds"] += time.perf_counter() - t

    def scores(r: dict, task: str) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for row in r["rows"]:
            if row["task"] == task:
                out.setdefault(row["category"], []).append(row["score"])
        return out

    def fmt(values: list[float], width: int = 9) -> str:
        mean = sum(values) / len(values)
        if len(values) == 1:
            return f"{mean:>{width}.3f}"
        std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        return f"{f'{mean:.3f}±{std:.3f}':>{width + 6}}"

    dists = list(PROXY_DISTORTIONS)
    w = 9 if len(args.seeds) == 1 else 15
    head = f"{'distance':<20}{'layer':<6}" + "".join(f"{d[:8]:>{w}}" for d in dists)
    spread = "" if len(args.seeds) == 1 else f", mean ± std over seeds {', '.join(map(str, args.seeds))}"
    print(f"\n2AFC (fraction of (x, weaker, stronger) triplets ordered correctly{spread})")
    print(head + f"{'mean':>{w}}{'cross':>{w}}")
    for r in results:
        s = scores(r, "2afc")
        print(f"{r['name']:<20}{r['layer']:<6}" + "".join(fmt(s[k]) for k in [*dists, "mean", "cross"]))
    print(f"\nJND-style mAP ((x, weakest) = same, (x, strongest) = different{spread})")
    print(head + f"{'mean':>{w}}{'pooled':>{w}}{'sec':>7}")
    for r in results:
        s = scores(r, "jnd")
        print(f"{r['name']:<20}{r['layer']:<6}" + "".join(fmt(s[k]) for k in [*dists, "mean", "pooled"])
              + f"{r['seconds']:>7.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n_patches": args.n_patches, "seeds": args.seeds, "root": args.root, "results": results}, f,
                      indent=1)
    if args.markdown:
        cols = [("2afc", "mean"), ("2afc", "shift"), ("2afc", "cross"), ("jnd", "mean"), ("jnd", "shift"),
                ("jnd", "pooled")]
        print("\n| distance | layer | 2AFC mean | 2AFC shift | 2AFC cross | JND mean | JND shift | JND pooled |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in results:
            s = {task: scores(r, task) for task in ("2afc", "jnd")}
            name = "1 - SSIM" if r["name"] == "1-SSIM" else r["name"]
            print(f"| {name} | {r['layer']} | " + " | ".join(fmt(s[t][c], 0).strip() for t, c in cols) + " |")
        print(f"\n{args.n_patches} patches per seed, seeds {', '.join(map(str, args.seeds))} "
              f"(mean ± std over seeds, uncorrected std); {torch.get_num_threads()} thread(s), "
              f"{sum(r['seconds'] for r in results) / 60:.1f} min of scoring.")


if __name__ == "__main__":
    main()
