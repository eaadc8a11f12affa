"""Training throughput (images/s) of the six pretraining procedures and of the encoder alone.

Everything runs through the real training path: :func:`lossnet.train.procedures.train_encoder`
(the one engine, :func:`lossnet.train.engine.fit`) with the teacher features read from the
feature cache, as real training does; the encoder-only floor is the image encoder with a dummy
loss on ``mu`` trained by the same engine. For each loss network x batch size x precision x
memory format it prints the images/s of one training pass (the fastest of ``--epochs`` epochs,
validation excluded), and the ratios

* FP / PS epoch time (I-F-FP / I-I-PS): targets <= 0.5 with AlexNet conv2 (the paper's loss
  network, ``paper``), <= 0.25 with a VGG-16 late layer (``vgg16:L``);
* FP / encoder-only epoch time: target <= 2.5.

All timings of one table come from ONE process on the same data and threads, so the ratios are
comparable; absolute numbers on a shared CPU are noisy. Runs on CUDA when present.

    python speed/procedure_throughput.py                       # the full grid (GPU-sized)
    python speed/procedure_throughput.py --frames 640 --batches 128 --precisions 32 bf16 \\
        --channels-last off --loss-nets paper vgg16:L                # a short CPU run

(This replaces benchmarks/procedure_epoch_time.py: ``--batches 64 --precisions 32
--channels-last off --loss-nets paper`` prints its table.)
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings

import torch
from torch import nn

from lossnet.models import ImageEncoder
from lossnet.train.cache import FeatureCache
from lossnet.train.engine import FitConfig, fit
from lossnet.train.procedures import PROCEDURES, EncoderConfig, train_encoder
from lossnet.zoo import LossNetwork

TARGETS = {"paper": 0.5, "vgg16:L": 0.25}
"""FP / PS epoch-time targets per loss network; FP / encoder-only: 2.5."""
ENCODER_TARGET = 2.5


class EncoderOnly(nn.Module):
    """The image encoder alone: forward + backward of ``mean(mu^2)``; the floor of any procedure."""

    def __init__(self, z: int, size: int) -> None:
        super().__init__()
        self.enc = ImageEncoder(z, size)

    def loss(self, batch):
        return self.enc(batch["image"])[0].pow(2).mean()


def loss_network(spec: str, random_weights: bool) -> LossNetwork:
    """``paper`` or ``ARCH:LAYER`` (e.g. ``vgg16:L``); random weights need no download."""
    kw = {"weights": None} if random_weights else {}
    if spec == "paper":
        return LossNetwork("alexnet", layers=["S"], sigmoid=True, **kw) if random_weights else LossNetwork("paper")
    arch, layer = spec.split(":")
    return LossNetwork(arch, layers=[int(layer) if layer.lstrip("-").isdigit() else layer], sigmoid=False, **kw)


def epoch_seconds(result) -> float:
    """The fastest training pass of the run (the first includes one-time allocation costs)."""
    return min(h["train_seconds"] for h in result.history)


def main() -> None:
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=2560, help="images (80%% are trained per epoch)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batches", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--precisions", nargs="+", default=["32", "bf16"], choices=["32", "bf16", "16-mixed"])
    ap.add_argument("--channels-last", nargs="+", default=["off", "on"], choices=["off", "on"])
    ap.add_argument("--loss-nets", nargs="+", default=["paper", "vgg16:L"], help="paper | ARCH:LAYER")
    ap.add_argument("--procedures", nargs="+", default=list(PROCEDURES))
    ap.add_argument("--epochs", type=int, default=2, help="epochs per run (the fastest is reported)")
    ap.add_argument("--z", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=2048, help="feature encoder/decoder MLP width")
    ap.add_argument("--compile", action="store_true", help="torch.compile the training step")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--random-weights", action="store_true", help="random loss networks (no weights needed)")
    args = ap.parse_args()

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.frames, 3, args.size, args.size), generator=g, dtype=torch.uint8)
    n_train = args.frames - max(1, round(args.frames * 0.2))
    dev = args.device
    name = torch.cuda.get_device_name() if dev == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"{args.frames} images {args.size}x{args.size} ({n_train} trained per epoch), {name}, "
          f"fastest of {args.epochs} epochs, compile={args.compile}; images/s of the training pass")
    for spec in args.loss_nets:
        net = loss_network(spec, args.random_weights)
        cache = FeatureCache(directory=None, progress=False, device=dev)
        if dev == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        feats = cache.get(images, net)
        print(f"\nloss network {spec} ({net.arch} {net.nodes}, features {tuple(feats.shape[1:])}): teacher-feature "
              f"cache {args.frames / (time.perf_counter() - t0):.0f} images/s (computed once per dataset)")
        cols = ["encoder", *args.procedures]
        print(f"{'batch':>5} {'prec':>8} {'ch_last':>7} " + "".join(f"{c:>9}" for c in cols)
              + f"{'FP/PS':>8}{'FP/enc':>8}")
        for batch, prec, cl in itertools.product(args.batches, args.precisions, args.channels_last):
            fc = FitConfig(epochs=args.epochs, batch_size=batch, progress=False, device=dev, precision=prec,
                           channels_last=cl == "on", compile=args.compile, logger="none")
            torch.manual_seed(0)
            secs = {"encoder": epoch_seconds(fit(EncoderOnly(args.z, args.size), {"image": images}, fc))}
            for p in args.procedures:
                tr = train_encoder(images, EncoderConfig(procedure=p, z=args.z, hidden=args.hidden), fc,
                                   loss_net=net, cache=cache)
                secs[p] = epoch_seconds(tr.result)
            fp, ps = secs.get("I-F-FP"), secs.get("I-I-PS")
            ratio = f"{fp / ps:>8.2f}" if fp and ps else f"{'-':>8}"
            enc = f"{fp / secs['encoder']:>8.2f}" if fp else f"{'-':>8}"
            print(f"{batch:>5} {prec:>8} {cl:>7} " + "".join(f"{n_train / secs[c]:>9.3g}" for c in cols)
                  + ratio + enc, flush=True)
        if spec in TARGETS:
            print(f"targets: FP/PS <= {TARGETS[spec]} ({spec}), FP/enc <= {ENCODER_TARGET}")


if __name__ == "__main__":
    main()
