"""Wall-time ESTIMATE of ``lossnet run paper_b scale=paper`` (LunarLander) from measured fractions.

Measures, on whatever device is present, a small fraction of every stage of the paper-scale run
with the real code paths, then scales each to the paper's sizes (configs/paper_b.yaml):

* collection: :func:`lossnet.data.lunarlander.generate_run` of a few 150-step rollouts with
  ``--workers`` processes -> frames/s; the paper renders 3 x 700 x 150 = 315,000 frames;
* teacher features (AlexNet 2nd ReLU + sigmoid) of the images -> images/s; computed once per run
  for the ~294,000 kept frames;
* the second of two encoder epochs of each procedure at batch 512 (:func:`train_encoder`, the one
  engine, the cached features) -> images/s of the training and the validation pass; the paper
  trains 6 procedures x 3 z x 4 repeats = 72 cells x 50 epochs on 84,000 + 21,000 frames;
* the paper-B probe grid (7 MLPs, batch 512): a fit of 1 epoch and one of ``1 + --probe-epochs``
  epochs -> the set-up paid once per grid (splits, probes, test predictions) and the cost of each
  further epoch; 72 cells x 500 epochs on ~75,200 + 18,800 embeddings (run 2 with the measured
  10.45 % of off-screen frames removed, docs/experiments.md);
* the Simple CNN baseline (4 cells x 50 epochs on the probe part), second of two epochs.

Every stage is warmed up first (one untimed call on other data, or the first epoch left out), so
first-call costs (thread pools, CUDA context, cuBLAS/cuDNN handles and autotuning) are not scaled
up with the run: they are paid once per process, not per epoch.

The printed totals are ESTIMATES (linear in frames and epochs) from the measured fractions, not
measurements of a paper-scale run; on a shared CPU they scale with the load. Embedding the probe
and test parts (one forward pass per frame and cell) is counted at the validation-pass rate.

    python speed/paper_scale_estimate.py [--frames 640] [--rollouts 4] [--workers 2] [--probe-n 8192]
                                         [--probe-epochs 4]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import torch

from lossnet.data.lunarlander import generate_run
from lossnet.eval.probes import fit_probe_grid
from lossnet.models.simple_cnn import SimpleCNN, SimpleCNNTask
from lossnet.train.cache import FeatureCache
from lossnet.train.engine import FitConfig, fit
from lossnet.train.procedures import PROCEDURES, EncoderConfig, train_encoder
from lossnet.zoo import LossNetwork

# configs/paper_b.yaml at scale=paper (LunarLander, layout paper_b)
ROLLOUTS, STEPS = (700, 700, 700), 150
ENC_FRAMES = ROLLOUTS[0] * STEPS  # run 1: all kept
KEPT = 1 - 0.1045  # runs 2 and 3: 10.45 % off-screen frames removed at scale=paper (docs/experiments.md)
PROBE_FRAMES = int(ROLLOUTS[1] * STEPS * KEPT)
TEST_FRAMES = int(ROLLOUTS[2] * STEPS * KEPT)
CELLS = 6 * 3 * 4  # procedures x z x repeats
EPOCHS, PROBE_EPOCHS, BATCH, PROBES = 50, 500, 512, 7


def hours(s: float) -> str:
    return f"{s / 3600:8.1f} h"


def main() -> None:
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=640, help="images for the encoder/feature measurements")
    ap.add_argument("--rollouts", type=int, default=4, help="150-step rollouts rendered for the collection rate")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="rendering processes")
    ap.add_argument("--probe-n", type=int, default=8192, help="embeddings for the probe-grid measurement")
    ap.add_argument("--probe-epochs", type=int, default=4,
                    help="further probe epochs timed after the first (their mean is the per-epoch cost)")
    ap.add_argument("--precision", default="32", choices=["32", "bf16", "16-mixed"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    dev = args.device
    print(f"device {dev} ({torch.get_num_threads()} torch threads), precision {args.precision}; "
          "MEASURED fractions -> ESTIMATED paper-scale wall time")

    t0 = time.perf_counter()
    run = generate_run(args.rollouts, seed=0, steps=STEPS, size=64, workers=args.workers, progress=False)
    coll_fps = len(run["images"]) / (time.perf_counter() - t0)  # includes the pool start-up
    coll_s = sum(ROLLOUTS) * STEPS / coll_fps
    print(f"collection   measured {len(run['images'])} frames, {args.workers} workers: {coll_fps:7.1f} frames/s"
          f"  -> 315,000 frames: {hours(coll_s)}")

    imgs = torch.from_numpy(run["images"]).permute(0, 3, 1, 2).contiguous()
    reps = -(-args.frames // len(imgs))
    images = imgs.repeat(reps, 1, 1, 1)[:args.frames]
    net = LossNetwork("paper")
    cache = FeatureCache(directory=None, progress=False, device=dev)
    cache.get(images[: min(len(images), 64)].flip(0), net)  # warm-up: other images, another cache key
    t0 = time.perf_counter()
    cache.get(images, net)
    feat_ips = len(images) / (time.perf_counter() - t0)
    feat_s = (ENC_FRAMES + PROBE_FRAMES + TEST_FRAMES) / feat_ips
    print(f"features     measured {len(images)} images: {feat_ips:7.1f} images/s  -> "
          f"{ENC_FRAMES + PROBE_FRAMES + TEST_FRAMES:,} frames once: {hours(feat_s)}")

    enc_total = 0.0
    n_val = max(1, round(len(images) * 0.2))
    n_train = len(images) - n_val
    fc = FitConfig(epochs=2, batch_size=BATCH, progress=False, device=dev, precision=args.precision, logger="none")
    for p in PROCEDURES:
        tr = train_encoder(images, EncoderConfig(procedure=p, z=64), fc, loss_net=net, cache=cache)
        h = tr.result.history[1]  # the second epoch: the first pays the first-call costs
        tr_ips, val_ips = n_train / h["train_seconds"], n_val / h["val_seconds"]
        epoch = ENC_FRAMES * 0.8 / tr_ips + ENC_FRAMES * 0.2 / val_ips
        embed = (PROBE_FRAMES + TEST_FRAMES) / val_ips
        cell = EPOCHS * epoch + embed
        enc_total += cell * CELLS / len(PROCEDURES)
        print(f"encoder {p:<6} measured epoch 2 of {n_train}+{n_val}: train {tr_ips:6.1f} images/s, val "
              f"{val_ips:6.1f}  -> paper epoch {epoch / 60:6.1f} min, cell (50 epochs + embed) {hours(cell)}")
    print(f"encoders     72 cells (6 procedures x z 64/128/256 x 4 repeats; z=64 rates): {hours(enc_total)}")

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(args.probe_n, 64, generator=g), torch.rand(args.probe_n, 2, generator=g) * 64

    def probe_fit(n: int, epochs: int) -> float:
        t0 = time.perf_counter()
        fit_probe_grid(x[:n], y[:n], x[:256], y[:256], task="regression", grid="paper_b", epochs=epochs,
                       batch_size=BATCH, device=dev, progress=False)
        return time.perf_counter() - t0

    probe_fit(min(args.probe_n, 1024), 1)  # warm-up
    one = probe_fit(args.probe_n, 1)
    more = probe_fit(args.probe_n, 1 + args.probe_epochs)
    per_epoch = max(more - one, 0.0) / args.probe_epochs  # train + validation of all 7 probes
    fixed = max(one - per_epoch, 0.0)  # set-up, test predictions, exports: once per grid
    probe_sps = args.probe_n / per_epoch if per_epoch > 0 else float("inf")
    probe_cell = fixed + PROBE_EPOCHS * PROBE_FRAMES / probe_sps
    print(f"probes       measured the 7-MLP grid on {args.probe_n}: {probe_sps:7.0f} samples/s per epoch "
          f"(mean of {args.probe_epochs} epochs after the first), {fixed:.2f} s set-up per grid  -> "
          f"per cell (500 epochs on {PROBE_FRAMES:,}): {hours(probe_cell)}, 72 cells: {hours(CELLS * probe_cell)}")

    torch.manual_seed(0)
    task = SimpleCNNTask(SimpleCNN(2, z=64, size=64, hidden=256), "regression", torch.zeros(2), torch.ones(2))
    res = fit(task, {"image": images, "target": torch.randn(len(images), 2)}, fc)
    h = res.history[1]
    base_epoch = PROBE_FRAMES * 0.8 / (n_train / h["train_seconds"]) + PROBE_FRAMES * 0.2 / (n_val / h["val_seconds"])
    base_s = 4 * EPOCHS * base_epoch
    print(f"baseline     Simple CNN measured {n_train / h['train_seconds']:6.1f} images/s  -> 4 cells x 50 epochs: "
          f"{hours(base_s)}")
    total = coll_s + feat_s + enc_total + CELLS * probe_cell + base_s
    print(f"ESTIMATED total of `lossnet run paper_b scale=paper` on this device: {hours(total)} "
          f"({total / 86400:.1f} days), from the measured fractions above")


if __name__ == "__main__":
    main()
