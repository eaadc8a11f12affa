"""Where a training step's time goes: forward + backward vs the optimizer update, against sgemm.

The task of ``speed/vs_reference.py`` (lossnet's I-I-PW / I-I-PS / I-F-FP encoder-decoder, z 32,
64 px images, batch 128, AlexNet relu2 + sigmoid, fused Adam) on one random batch. Per procedure,
median of ``--repeats`` timings of (a) forward + backward, (b) the Adam update alone, (c) the whole
step; the FLOPs of (a) from ``torch.utils.flop_counter`` and the bytes of (b) (parameters, gradients
and both moments read, parameters and moments written: 7 x 4 bytes per parameter). Prints the
achieved GFLOP/s of (a) and of the whole step against a measured sgemm rate, and the update's share
of the step: the update does no matrix work, so a step whose update is a large share cannot reach
the sgemm rate however fast its matrix products run (issue 23's ">= 70 % of sgemm" goal).

    python speed/step_breakdown.py [--procedures PW PS FP] [--batch 128] [--repeats 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lossnet.train.procedures import EncoderConfig, EncoderTask, build_autoencoder, get_procedure
from lossnet.zoo import LossNetwork

PROCS = {"PW": "I-I-PW", "PS": "I-I-PS", "FP": "I-F-FP"}


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def sgemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    """The best of ``repeats`` float32 ``n`` x ``n`` matrix products (GFLOP/s): the machine's peak."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def main() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--procedures", nargs="+", default=list(PROCS), choices=list(PROCS))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--z", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = LossNetwork("paper", normalize=None)  # AlexNet relu2 + sigmoid, as vs_reference.py
    peak = sgemm_gflops()
    print(f"CPU, {args.threads} threads, batch {args.batch} of 64 px, z {args.z}; measured sgemm {peak:.0f} GFLOP/s; "
          f"median of {args.repeats}\n")
    print("| procedure | parameters | fwd+bwd ms | GFLOP/s, % of sgemm | Adam ms (GB/s) | step ms | step % of sgemm "
          "| Adam share of the step |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind in args.procedures:
        p, cfg = get_procedure(PROCS[kind]), EncoderConfig(procedure=PROCS[kind], z=args.z)
        task = EncoderTask(p, cfg, build_autoencoder(p, cfg, 64, 192 * 7 * 7), net)
        params = [q for q in task.parameters() if q.requires_grad]
        opt = torch.optim.Adam(params, lr=1e-3, fused=True)
        b = {"image": torch.rand(args.batch, 3, 64, 64), "feat": torch.rand(args.batch, 192, 7, 7)}

        def fwd_bwd():
            opt.zero_grad(set_to_none=False)
            task.loss(b).backward()

        def step():
            fwd_bwd()
            opt.step()

        with FlopCounterMode(display=False) as fc:
            task.loss(b).backward()
        flops = fc.get_total_flops()
        fb, up, st = _median_ms(fwd_bwd, args.repeats), _median_ms(opt.step, args.repeats), _median_ms(step, args.repeats)
        n = sum(q.numel() for q in params)
        print(f"| {kind} ({PROCS[kind]}) | {n / 1e6:.1f} M | {fb:.1f} | {flops / fb / 1e6:.0f}, "
              f"{flops / fb / 1e6 / peak:.0%} | {up:.1f} ({7 * 4 * n / up / 1e6:.1f}) | {st:.1f} | "
              f"{flops / st / 1e6 / peak:.0%} | {up / st:.0%} |")


if __name__ == "__main__":
    main()
