"""Epoch time of each pretraining procedure relative to I-I-PS and to the encoder alone.

All timings in ONE run, on the same data, same batch size and threads: the image encoder alone
(forward + backward of a dummy loss on mu), then one training epoch of each procedure with the
features of the inputs read from the teacher-feature cache (as in real training). Prints the
seconds per epoch and the two ratios.

    python benchmarks/procedure_epoch_time.py [--frames 1280] [--batch 64] [--epochs 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from lossnet.train.cache import FeatureCache
from lossnet.models import ImageEncoder
from lossnet.train.engine import FitConfig
from lossnet.train.procedures import PROCEDURES, EncoderConfig, train_encoder
from lossnet.zoo import LossNetwork


def encoder_alone_seconds(images: torch.Tensor, batch: int, device: str, z: int) -> float:
    enc = ImageEncoder(z, images.shape[-1]).to(device)
    opt = torch.optim.Adam(enc.parameters())
    n_train = int(len(images) * 0.8)
    t0 = time.perf_counter()
    for i in range(0, n_train, batch):
        x = images[i:i + batch].to(device).float() / 255
        loss = enc(x)[0].pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1280)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--z", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--random-weights", action="store_true", help="random loss network (no weights needed)")
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.frames, 3, 64, 64), generator=g, dtype=torch.uint8)
    net = (LossNetwork("alexnet", layers=["S"], weights=None, sigmoid=True) if args.random_weights
           else LossNetwork("paper"))
    cache = FeatureCache(directory=None, progress=False, device=args.device)
    cache.get(images, net)
    encoder_alone_seconds(images[:args.batch * 2], args.batch, args.device, args.z)  # warm-up
    enc_s = encoder_alone_seconds(images, args.batch, args.device, args.z)
    secs = {}
    for name in PROCEDURES:
        tr = train_encoder(images, EncoderConfig(procedure=name, z=args.z),
                           FitConfig(epochs=args.epochs, batch_size=args.batch, progress=False, device=args.device),
                           loss_net=net, cache=cache)
        secs[name] = tr.result.epoch_seconds
    ps = secs["I-I-PS"]
    print(f"{args.frames} frames (80% trained per epoch), batch {args.batch}, {args.device}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'procedure':<10}{'s/epoch':>10}{'/ I-I-PS':>10}{'/ encoder':>11}")
    print(f"{'encoder':<10}{enc_s:>10.2f}{enc_s / ps:>10.2f}{1.0:>11.2f}")
    for name, s in secs.items():
        print(f"{name:<10}{s:>10.2f}{s / ps:>10.2f}{s / enc_s:>11.2f}")


if __name__ == "__main__":
    main()
