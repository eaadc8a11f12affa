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

from lossnet.zoo import LossNetwork
from vs_reference import PROCS, _task, sgemm_rate, step_flops  # the same task, FLOP count and sgemm peak


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
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
    peak = sgemm_rate("cpu", 2048, 10)
    print(f"CPU, {args.threads} threads, batch {args.batch} of 64 px, z {args.z}; measured sgemm {peak:.0f} GFLOP/s; "
          f"median of {args.repeats}\n")
    print("| procedure | parameters | fwd+bwd ms | GFLOP/s, % of sgemm | Adam ms (GB/s) | step ms | step % of sgemm "
          "| Adam share of the step |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind in args.procedures:
        task = _task(PROCS[kind], args, net, 64, "cpu")
        params = [q for q in task.parameters() if q.requires_grad]
        opt = torch.optim.Adam(params, lr=1e-3, fused=True)
        b = {"image": torch.rand(args.batch, 3, 64, 64), "feat": torch.rand(args.batch, 192, 7, 7)}

        def fwd_bwd():
            opt.zero_grad(set_to_none=False)
            task.loss(b).backward()

        def step():
            fwd_bwd()
            opt.step()

        flops = step_flops(PROCS[kind], args, net, 64, "cpu")
        fb, up, st = _median_ms(fwd_bwd, args.repeats), _median_ms(opt.step, args.repeats), _median_ms(step, args.repeats)
        n = sum(q.numel() for q in params)
        print(f"| {kind} ({PROCS[kind]}) | {n / 1e6:.1f} M | {fb:.1f} | {flops / fb / 1e6:.0f}, "
              f"{flops / fb / 1e6 / peak:.0%} | {up:.1f} ({7 * 4 * n / up / 1e6:.1f}) | {st:.1f} | "
              f"{flops / st / 1e6 / peak:.0%} | {up / st:.0%} |")


if __name__ == "__main__":
    main()
