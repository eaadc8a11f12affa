"""What data parallelism (torchrun + DDP, gloo) costs on the CPU, all in ONE run.

Trains the same small convolutional autoencoder task (uint8 64x64 images, MSE) with
``lossnet.train.engine.fit`` three ways on the same data and global batch:

1. one process, ``--threads`` torch threads;
2. one process, ``--threads // 2`` threads (what each rank gets below);
3. ``torchrun --standalone --nproc-per-node 2`` with ``--threads // 2`` threads per rank.

Prints each run's mean training seconds per epoch (the engine's ``train_seconds``; under torchrun
the slowest rank's), the ratios, the final validation loss of each (2 processes must match
1 process) and the wall time of the torchrun job (start-up included).

    python speed/ddp_cpu.py [--images 512] [--batch 64] [--epochs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from lossnet import distributed
from lossnet.train.engine import FitConfig, fit


class ConvAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
                                 nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 3, 4, 2, 1))

    def loss(self, b):
        return ((self.net(b["image"]) - b["image"]) ** 2).mean()


def train(n: int, batch: int, epochs: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    images = torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    r = fit(ConvAE(), {"image": images}, FitConfig(epochs=epochs, batch_size=batch, progress=False, device="cpu"))
    return {"epoch_seconds": r.epoch_seconds, "val": r.history[-1]["val_loss"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:  # a torchrun rank
        res = train(a.images, a.batch, a.epochs, max(1, a.threads // 2))
        if distributed.is_main():
            print(json.dumps(res), flush=True)
        return
    one_full = train(a.images, a.batch, a.epochs, a.threads)
    one_half = train(a.images, a.batch, a.epochs, max(1, a.threads // 2))
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, a.threads // 2)),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        __file__, "--worker", f"--images={a.images}", f"--batch={a.batch}", f"--epochs={a.epochs}",
                        f"--threads={a.threads}"], env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    two = json.loads(p.stdout.strip().splitlines()[-1])
    print(f"{a.images} images 64x64, global batch {a.batch}, {a.epochs} epochs, CPU, {os.cpu_count()} cores")
    print(f"1 process x {a.threads} threads : {one_full['epoch_seconds']:.2f} s/epoch  val {one_full['val']:.6f}")
    print(f"1 process x {max(1, a.threads // 2)} threads : {one_half['epoch_seconds']:.2f} s/epoch  "
          f"val {one_half['val']:.6f}")
    print(f"2 processes x {max(1, a.threads // 2)} threads (torchrun, gloo): {two['epoch_seconds']:.2f} s/epoch  "
          f"val {two['val']:.6f}  (torchrun job wall {wall:.1f} s)")
    print(f"ratio 2 processes / 1 process same total threads: {two['epoch_seconds'] / one_full['epoch_seconds']:.2f}")
    print(f"ratio 2 processes / 1 process at one rank's threads: "
          f"{two['epoch_seconds'] / one_half['epoch_seconds']:.2f}")


if __name__ == "__main__":
    main()
