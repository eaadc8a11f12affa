#!/usr/bin/env python3
"""The super-resolution benchmark's docs table over seeds (called by ``tools/results.py``).

    python tools/sr_tables.py --seeds 0 1 2 --loss-nets alexnet,efficientnet_lite0 --layers E,L

runs ``lossnet sweep super_resolution loss_net=... layer=... seed=S`` once per seed (quick scale,
x4) in ``runs/results/super_resolution-<inputs digest>/seedS`` (a rerun resumes) and prints one
markdown table: per model (the bicubic and pixel-loss references, then each loss network and
layer) PSNR (dB) / SSIM on CSet5, CSet14 and CBSD68 as mean ± std over the seeds (uncorrected
std), best first by CSet5 PSNR, and the mean cell time.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import REPO, _lossnet, by_seed, read_rows, spread  # noqa: E402

SETS = (("set5", "CSet5"), ("set14", "CSet14"), ("cbsd68", "CBSD68"))


def sr_table(rows: list[dict], refs: list[dict], seeds: list[int], factor: int = 4) -> str:
    """Rows of the sweep and of its references -> the markdown table (see the module docstring)."""
    keyed = [({"pixel": "pixel (MSE)"}.get(r["reference"], r["reference"]), r["seed"], r) for r in refs] + [
        (f"{r['arch']}:{r['layer']}", r["seed"], r) for r in rows if r.get("status", "ok") == "ok" and f"set5_psnr_x{factor}" in r]
    by = by_seed(keyed, seeds, "sr_tables: the sweep rows")

    def mean(m: str, key: str) -> float:
        return sum(by[m][s][key] for s in seeds) / len(seeds)

    order = sorted(by, key=lambda m: -mean(m, f"set5_psnr_x{factor}"))
    out = ["| model | " + " | ".join(f"{label} PSNR / SSIM" for _, label in SETS) + " | cell s |",
           "| --- | " + " | ".join("---" for _ in SETS) + " | ---: |"]
    for m in order:
        cells = [f"{spread([by[m][s][f'{k}_psnr_x{factor}'] for s in seeds], 2)[0]} / "
                 f"{spread([by[m][s][f'{k}_ssim_x{factor}'] for s in seeds], 3)[0]}" for k, _ in SETS]
        secs = [by[m][s].get("seconds") for s in seeds]
        sec = f"{sum(secs) / len(secs):.0f}" if all(isinstance(x, (int, float)) for x in secs) else "-"
        out.append(f"| {m} | {' | '.join(cells)} | {sec} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--loss-nets", default="alexnet,efficientnet_lite0")
    ap.add_argument("--layers", default="E,L")
    ap.add_argument("--workdir", type=Path, default=None, help="default runs/results/super_resolution-<digest>")
    ap.add_argument("overrides", nargs="*", help="extra key=value settings for the sweep")
    args = ap.parse_args(argv)
    work = args.workdir or REPO / "runs" / "results" / f"super_resolution-{os.environ.get('LOSSNET_TABLE_DIGEST', 'adhoc')}"
    walls = [_lossnet(["sweep", "super_resolution", f"loss_net={args.loss_nets}", f"layer={args.layers}", f"seed={s}",
                       f"out={work / f'seed{s}'}", "report=false", *args.overrides]) for s in args.seeds]
    rows = [r for s in args.seeds for r in read_rows(work / f"seed{s}" / "results.jsonl")]
    refs = [r for s in args.seeds for r in read_rows(work / f"seed{s}" / "reference" / "results.jsonl")]
    print(f"\n{sr_table(rows, refs, args.seeds)}\n\nx4, quick scale. Wall time of the sweep, seed "
          + ", ".join(f"{s}: {w / 60:.1f} min" for s, w in zip(args.seeds, walls)) + " (0 for a fully resumed run).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
