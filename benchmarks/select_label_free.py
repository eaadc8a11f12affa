"""Does the label-free `lossnet select` ranking agree with the labelled one where labels are known?

For each kind of images, the same candidates (every offline (architecture, layer) + the pixel
baseline) are ranked twice on the same images with the same seed: by `select` (held-out probe
accuracy on the labels) and by `select_label_free` (retrieval of augmented views, no labels).
Prints both scores per candidate and Spearman's rho between the two rankings (scipy), over all
candidates and over the loss networks alone (baseline excluded).

* ``lunarlander``: frames of random-policy LunarLander rollouts (lossnet.data.lunarlander);
  labels = the lander's binned position (x tertile x y above/below the median: 6 classes).
* ``sr``: random 64x64 crops of the SR photographs in $LOSSNET_SHARED/data/sr; labels = the
  source image's id.

    python benchmarks/select_label_free.py [--kind lunarlander|sr|both] [--images 360] [--epochs 3]
                                           [--probe-epochs 40] [--threads 1] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

from lossnet.experiments.select import default_candidates, select, select_label_free


def lunarlander_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from lossnet.data.lunarlander import generate_run

    steps, every = 90, 3
    rollouts = max(1, -(-3 * n // (2 * (steps // every))))  # some frames are off-screen
    run = generate_run(rollouts, seed, steps=steps, size=64, workers=1, progress=False)
    keep = torch.from_numpy(run["onscreen"]).clone()
    keep[torch.arange(len(keep)) % every != 0] = False
    imgs = torch.from_numpy(run["images"]).permute(0, 3, 1, 2)[keep][:n].contiguous()
    pos = torch.from_numpy(run["positions"])[keep][:n]
    xb = torch.bucketize(pos[:, 0].contiguous(), pos[:, 0].quantile(torch.tensor([1 / 3, 2 / 3])))
    yb = (pos[:, 1] > pos[:, 1].median()).long()
    return imgs, xb * 2 + yb


def sr_crops(n: int, seed: int, n_sources: int = 8, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    from lossnet.data.sr import image_files, read_image

    root = Path(os.environ.get("LOSSNET_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data" / "sr"
    files = sorted(image_files(root / "CBSD68"))
    g = torch.Generator().manual_seed(seed)
    files = [files[i] for i in torch.randperm(len(files), generator=g)[:n_sources].tolist()]
    per = -(-n // n_sources)
    imgs, labels = [], []
    for k, f in enumerate(files):
        im = read_image(f)
        for _ in range(per):
            t = int(torch.randint(im.shape[-2] - size + 1, (1,), generator=g))
            l = int(torch.randint(im.shape[-1] - size + 1, (1,), generator=g))
            imgs.append(im[:, t:t + size, l:l + size])
            labels.append(k)
    return torch.stack(imgs)[:n].contiguous(), torch.tensor(labels)[:n]


def compare(kind: str, images: torch.Tensor, labels: torch.Tensor, args) -> dict:
    cands = default_candidates("imagenet")
    common = dict(candidates=cands, max_images=None, epochs=args.epochs, seed=args.seed)
    t0 = time.perf_counter()
    lab = select(images, labels, probe_epochs=args.probe_epochs, **common)
    t1 = time.perf_counter()
    free = select_label_free(images, **common)
    t2 = time.perf_counter()
    a = {r.name: r.score for r in lab.results if r.status == "ok"}
    b = {r.name: r.score for r in free.results if r.status == "ok"}
    names = [k for k in a if k in b]
    print(f"\n== {kind}: {len(images)} images, {int(labels.max()) + 1} classes; labelled {t1 - t0:.0f} s, "
          f"label-free {t2 - t1:.0f} s")
    print(f"{'candidate':<24}{'accuracy':>10}{'MRR':>8}{'top1':>7}")
    top1 = {r.name: r.top1 for r in free.results if r.status == "ok"}
    for k in sorted(names, key=lambda k: -a[k]):
        print(f"{k:<24}{a[k]:>10.3f}{b[k]:>8.3f}{top1[k]:>7.3f}")
    rho_all = spearmanr([a[k] for k in names], [b[k] for k in names])
    nets = [k for k in names if k != "(pixels)"]
    rho_nets = spearmanr([a[k] for k in nets], [b[k] for k in nets])
    print(f"{kind}: Spearman rho (label-free vs labelled) = {rho_all.statistic:.3f} (p = {rho_all.pvalue:.3g}) over "
          f"{len(names)} candidates; {rho_nets.statistic:.3f} (p = {rho_nets.pvalue:.3g}) over the {len(nets)} "
          f"loss networks; recommended: labelled {lab.recommended}, label-free {free.recommended}")
    return {"rho": rho_all.statistic, "rho_nets": rho_nets.statistic}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="both", choices=["lunarlander", "sr", "both"])
    ap.add_argument("--images", type=int, default=360)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--probe-epochs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {}
    if args.kind in ("lunarlander", "both"):
        out["lunarlander"] = compare("lunarlander", *lunarlander_images(args.images, args.seed), args)
    if args.kind in ("sr", "both"):
        out["sr"] = compare("sr", *sr_crops(args.images, args.seed), args)
    print("\n" + "; ".join(f"{k}: rho {v['rho']:.3f} (nets only {v['rho_nets']:.3f})" for k, v in out.items()))


if __name__ == "__main__":
    main()
