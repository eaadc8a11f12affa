"""Time and peak memory against N, fitted and extrapolated to the paper-scale datasets.

Each point runs in a fresh process (so its peak memory is its own) on N random 64 px uint8 images:

* ``build``: the teacher-feature cache's build (AlexNet relu2 + sigmoid, the papers' loss network)
  into a directory: streamed batch by batch to a ``.npy`` file (float32, and float16 with --fp16);
* ``read``: one pass over the memory-mapped features in batches of 512 (as an epoch reads them);
* ``I-F-FP`` / ``I-I-PS``: one epoch of ``train_encoder`` (batch 128, features from the directory
  cache, built before the timing), what ``lossnet pretrain`` runs after reading the images;
* ``probes``: one epoch of paper B's 7-MLP probe grid on N 64-d embeddings.

Memory: peak RSS (``ru_maxrss``) and peak anonymous RSS (``RssAnon`` sampled every 20 ms): the
memory that must fit; memory-mapped feature pages count in RSS but not in RssAnon (the kernel
drops them under pressure). The fitted memory is the anonymous growth during the timed work
(peak minus the level before it: libraries and the images excluded); the images themselves are
held in RAM as uint8 (N x 12 KB at 64 px) and are listed beside it. Points below one feature
batch (256 images) do not show the batch's size: fit on N >> 256.

Each quantity is fitted as a + b N (least squares over the points) and extrapolated to
LunarLander (210,000 frames, 64 px), STL-10 unlabeled (100,000 at 96 px) and SVHN extra
(531,131 at 32 px); for 96 and 32 px the per-image cost is scaled by the pixel count (an
approximation: ESTIMATES, not measurements), feature-file sizes are exact (shapes of the layer).

    python speed/scaling_curve.py --n 2000 8000 32000 --fp16      # the issue's points
    python speed/scaling_curve.py --quick                         # seconds: checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

DATASETS = {"LunarLander (paper B)": (210_000, 64), "STL-10 unlabeled": (100_000, 96), "SVHN extra": (531_131, 32)}
MODES = ["build", "read", "I-F-FP", "I-I-PS", "probes"]


def _anon_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def child(mode: str, n: int, fp16: bool, tmp: str) -> None:
    import torch

    from lossnet.train.cache import FeatureCache
    from lossnet.zoo import LossNetwork

    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _anon_kb())
            time.sleep(0.02)

    images = torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    net = LossNetwork("paper")
    dtype = torch.float16 if fp16 else torch.float32
    cache = FeatureCache(directory=tmp, dtype=dtype, progress=False)
    if mode != "build" and mode != "probes":
        cache.get(images, net)  # built before the timing
        cache = FeatureCache(directory=tmp, dtype=dtype, progress=False)  # a fresh reader: memory-mapped
    extra = {}
    base_anon = _anon_kb()
    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    if mode == "build":
        cache.get(images, net)
    elif mode == "read":
        feats = cache.get(images, net)
        for i in range(0, n, 512):
            feats[i:i + 512].float().sum()
    elif mode in ("I-F-FP", "I-I-PS"):
        from lossnet.train.engine import FitConfig
        from lossnet.train.procedures import EncoderConfig, train_encoder

        fc = FitConfig(epochs=1, batch_size=128, progress=False, device="cpu", logger="none")
        enc = train_encoder(images, EncoderConfig(procedure=mode, z=64), fc, loss_net=net, cache=cache)
        extra["val_loss"] = enc.result.best_val
    else:
        from lossnet.eval.probes import fit_probe_grid

        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(n, 64, generator=g), torch.rand(n, 2, generator=g) * 64
        fit_probe_grid(x, y, x[:256], y[:256], task="regression", grid="paper_b", epochs=1, batch_size=512,
                       device="cpu", progress=False)
    seconds = time.perf_counter() - t0
    stop.set()
    peak[0] = max(peak[0], _anon_kb())
    print(json.dumps({"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "anon_mb": peak[0] / 1024, "anon_before_mb": base_anon / 1024,
                      "images_mb": images.numel() / 2**20, **extra}))


def fit_line(xs, ys) -> tuple[float, float]:
    """Least-squares (a, b) of y = a + b x."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
    return my - b * mx, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, nargs="+", default=[2000, 8000, 32000])
    ap.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    ap.add_argument("--fp16", action="store_true", help="also float16 feature files (size, time, I-F-FP val loss)")
    ap.add_argument("--quick", action="store_true", help="N = 128 256 512, build/read/probes only")
    args = ap.parse_args()
    if args.child:
        mode, n, fp16, tmp = args.child
        return child(mode, int(n), fp16 == "1", tmp)
    if args.quick:
        args.n, args.modes = [128, 256, 512], ["build", "read", "probes"]
    import torch

    from lossnet.train.cache import feature_shape
    from lossnet.zoo import LossNetwork

    print(f"CPU, {torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}; N = {args.n}")
    variants = [(m, False) for m in args.modes] + ([(m, True) for m in ("build", "read", "I-F-FP")
                                                   if m in args.modes] if args.fp16 else [])
    points = {}
    for mode, fp16 in variants:
        name = f"{mode}{' fp16' if fp16 else ''}"
        for n in args.n:
            with tempfile.TemporaryDirectory() as tmp:
                p = subprocess.run([sys.executable, __file__, "--child", mode, str(n), "1" if fp16 else "0", tmp],
                                   capture_output=True, text=True)
            if p.returncode:
                print(f"  {name} N={n}: FAILED\n{p.stderr[-1500:]}")
                break
            r = json.loads(p.stdout.strip().splitlines()[-1])
            points.setdefault(name, []).append((n, r))
            print(f"  {name:<12} N={n:>7}: {r['seconds']:8.2f} s, peak RSS {r['rss_mb']:7.0f} MB, peak anon "
                  f"{r['anon_mb']:7.0f} MB (images {r['images_mb']:.0f} MB; growth during the work "
                  f"{r['anon_mb'] - r['anon_before_mb']:.0f} MB)" + (f", val loss {r['val_loss']:.5f}" if "val_loss" in r
                                                                else ""), flush=True)
    net = LossNetwork("paper")
    print("\nFitted a + b N and EXTRAPOLATED (other image sizes: per-image cost x pixel ratio):")
    for name, pts in points.items():
        xs = [n for n, _ in pts]
        ta, tb = fit_line(xs, [r["seconds"] for _, r in pts])
        ma, mb = fit_line(xs, [r["anon_mb"] - r["anon_before_mb"] for _, r in pts])
        print(f"  {name:<12} time {ta:.2f} s + {tb * 1e3:.3f} ms/image; anonymous memory growth during the work "
              f"{ma:.0f} MB + {mb * 1e3:.3f} MB per 1000 images")
        for ds, (n, size) in DATASETS.items():
            k = (size / 64) ** 2
            print(f"      {ds:<24} N={n:>7,} at {size} px: {max(0.0, ta + tb * n * k) / 3600:7.2f} h per pass, "
                  f"memory growth {max(0.0, ma + mb * n * k):8.0f} MB + images {n * 3 * size * size / 2**20:7.0f} MB")
    if "I-F-FP" in points and "I-F-FP fp16" in points:
        for (n, a), (_, b) in zip(points["I-F-FP"], points["I-F-FP fp16"]):
            print(f"  float16 features, I-F-FP after 1 epoch at N={n}: val loss {b['val_loss']:.5f} vs float32 "
                  f"{a['val_loss']:.5f} ({b['val_loss'] / a['val_loss'] - 1:+.2%})")
    print("\nFeature files (AlexNet relu2, exact shapes):")
    for ds, (n, size) in DATASETS.items():
        c = 1
        for d in feature_shape(net, size):
            c *= d
        print(f"  {ds:<24} {n:>7,} x {c:,} floats: {n * c * 4 / 1e9:6.1f} GB float32, {n * c * 2 / 1e9:6.1f} GB float16")


if __name__ == "__main__":
    main()
