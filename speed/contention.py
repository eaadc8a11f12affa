"""N training processes on C cores: slowdown against the ideal N/C, naive vs lossnet's CPU sharing.

Each process runs the same fixed work: ``--steps`` training steps of lossnet's I-I-PW autoencoder
(batch ``--batch``, 64 px, Adam) pinned to the first C cores (``sched_setaffinity``). T1 is one
process with 1 thread alone. For N processes at once, the wall time until all finish divided by
T1 is the slowdown; with perfect sharing it is N/C (N single-thread jobs on C cores, or the
same work spread over threads), never below it. Modes:

* ``naive``: every process with torch's default threads (= all C cores) and OpenMP's default
  (active, spinning) wait policy, what N independent ``lossnet`` commands do;
* ``share``: ``OMP_NUM_THREADS`` = :func:`lossnet.distributed.cpu_share` (free cores / N, >= 1)
  and ``OMP_WAIT_POLICY=PASSIVE``, what ``lossnet sweep jobs=N`` workers get
  (:func:`lossnet.distributed.sharing_env`);
* ``share-active``: the same threads with the active wait policy (the passive policy's effect).

Printed per N and mode: wall seconds, slowdown = wall / T1, ideal N/C, and slowdown / ideal
(1.00 = perfect). On a machine that other jobs load, ``cpu_share`` counts only free cores (the
load average is printed; compare the modes of one run).

    python speed/contention.py --procs 1 2 4 --steps 20        # on all usable cores
    python speed/contention.py --quick                           # seconds: checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def child(steps: int, batch: int, cores: int) -> None:
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
    import torch

    from lossnet.train.procedures import EncoderConfig, EncoderTask, build_autoencoder, get_procedure

    torch.manual_seed(0)
    p = get_procedure("I-I-PW")
    task = EncoderTask(p, EncoderConfig(procedure=p.name, z=32), build_autoencoder(p, EncoderConfig(z=32), 64, 1),
                       None)
    opt = torch.optim.Adam(task.parameters(), lr=1e-3)
    b = {"image": torch.rand(batch, 3, 64, 64)}
    task.loss(b).backward()  # warm-up, not timed
    print("ready", flush=True)
    sys.stdin.readline()  # every process starts its timed work at once
    t0 = time.time()
    for _ in range(steps):
        opt.zero_grad()
        task.loss(b).backward()
        opt.step()
    print(json.dumps({"start": t0, "end": time.time(), "threads": torch.get_num_threads()}), flush=True)


def run_batch(n: int, env: dict, args) -> tuple[float, list[int]]:
    """Wall seconds until ``n`` processes with ``env`` all finish; their torch thread counts."""
    cmd = [sys.executable, __file__, "--child", str(args.steps), str(args.batch), str(args.cores)]
    procs = [subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(n)]
    for p in procs:  # all imported and warmed up (start-up is not timed)
        assert p.stdout.readline().strip() == "ready"
    for p in procs:  # release every process before waiting for any (communicate() waits for its process)
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return max(o["end"] for o in outs) - min(o["start"] for o in outs), [o["threads"] for o in outs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="2 steps, batch 8, N = 1 2 (checks the script)")
    args = ap.parse_args()
    if args.child:
        return child(*args.child)
    if args.quick:
        args.steps, args.batch, args.procs = 2, 8, [1, 2]
    from lossnet.distributed import cpu_share

    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")}
    t1, _ = run_batch(1, {**base, "OMP_NUM_THREADS": "1"}, args)
    print(f"C = {args.cores} cores, {args.steps} steps of batch {args.batch}; T1 (1 process, 1 thread) = {t1:.2f} s "
          f"(timed after start-up and a warm-up step, all N processes released at once); load average {os.getloadavg()[0]:.1f}")
    print(f"  {'N':>3} {'mode':<13}{'threads':>8}{'wall s':>9}{'slowdown':>10}{'ideal N/C':>10}{'/ ideal':>9}")
    for n in args.procs:
        share = cpu_share(n, cores=min(args.cores, len(os.sched_getaffinity(0))))
        modes = {"naive": base,
                 "share": {**base, "OMP_NUM_THREADS": str(share), "OMP_WAIT_POLICY": "PASSIVE"},
                 "share-active": {**base, "OMP_NUM_THREADS": str(share)}}
        ideal = n / args.cores
        for name, env in modes.items():
            wall, threads = run_batch(n, env, args)
            slow = wall / t1
            print(f"  {n:>3} {name:<13}{threads[0]:>8}{wall:9.2f}{slow:10.2f}{ideal:10.2f}{slow / ideal:9.2f}")


if __name__ == "__main__":
    main()
