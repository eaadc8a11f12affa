#!/usr/bin/env python3
"""The SR-VAE quick-scale table of docs/sr_vae.md over seeds (called by ``tools/results.py``).

    python tools/srvae_tables.py --seeds 0 1 2

Per seed, in ``runs/results/srvae-<inputs digest>/seedS`` (a rerun resumes), the five ``lossnet srvae``
runs of :data:`RUNS` into one output directory (quick scale, CSun_Hays80 patches, 2 threads):

* ``factors=[2,4]``: the residual model with the ``tuned`` weights, with and without the
  perceptual term, and bicubic, at x2 and x4;
* ``factors=[2] loss_weights.preset=paper``: the paper's weights (rec 1, KL 0.001, perc 0.8 / 0);
* ``factors=[2] loss_weights.preset=paper_literal runs=[perceptual]``: its Eq. 6 read literally;
* ``factors=[2] model.kind=dfc model.normalize=imagenet loss_weights.preset=paper_literal
  kl_reduction=sum``: the paper's own model as the paper specifies it, with and without the
  perceptual term;
* ``factors=[2] model.kind=dfc model.normalize=imagenet loss_weights.preset=tuned
  runs=[no_perceptual]``: the paper's model with the working weights.

Prints one markdown table: per factor and model, PSNR (dB) / SSIM on the Y channel of CSet5 and
CSet14 and the PSNR gain over bicubic, each as mean ± std over the seeds (uncorrected std), the
kept (best-validation) epochs and the mean run time.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import REPO, _lossnet, by_seed, read_rows, spread  # noqa: E402

RUNS = (["factors=[2,4]"],
        ["factors=[2]", "loss_weights.preset=paper"],
        ["factors=[2]", "loss_weights.preset=paper_literal", "runs=[perceptual]"],
        ["factors=[2]", "model.kind=dfc", "model.normalize=imagenet", "loss_weights.preset=paper_literal",
         "kl_reduction=sum"],
        ["factors=[2]", "model.kind=dfc", "model.normalize=imagenet", "loss_weights.preset=tuned",
         "runs=[no_perceptual]"])
SETS = (("set5", "CSet5"), ("set14", "CSet14"))


def srvae_table(rows: list[dict], seeds: list[int]) -> str:
    """Rows of every seed's results table (each with its ``seed`` in ``config``) -> the markdown table."""
    from lossnet.experiments.sr_vae import row_label

    by = by_seed((((r["factor"], row_label(r)), r["config"]["seed"], r) for r in rows), seeds, "srvae_tables: the rows")
    head = "| factor | model | " + " | ".join(f"{n} PSNR | {n} SSIM | {n} vs bicubic dB" for _, n in SETS) \
        + " | kept epoch | run s |"
    out = [head, "| --- | --- | " + "---: | " * (3 * len(SETS) + 2)]
    for (factor, label) in sorted(by, key=lambda k: (k[0], k[1] != "bicubic", k[1])):
        per = by[factor, label]
        bic = by[factor, "bicubic"]
        cells = []
        for key, _ in SETS:
            name = f"{key}_psnr_x{factor}"
            cells += [spread([per[s][name] for s in seeds], 2)[0], spread([per[s][f"{key}_ssim_x{factor}"] for s in seeds], 4)[0],
                      "" if label == "bicubic" else spread([per[s][name] - bic[s][name] for s in seeds], 2)[0]]
        kept = "" if label == "bicubic" else ", ".join(str(per[s]["best_epoch"] + 1) for s in seeds)
        secs = sum(per[s].get("seconds", 0) for s in seeds) / len(seeds)
        out.append(f"| x{factor} | {label} | {' | '.join(cells)} | {kept} | {secs:.0f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None, help="default runs/results/srvae-<digest>")
    ap.add_argument("overrides", nargs="*", help="extra key=value settings for every run (smoke tests)")
    args = ap.parse_args(argv)
    work = args.workdir or REPO / "runs" / "results" / f"srvae-{os.environ.get('LOSSNET_TABLE_DIGEST', 'adhoc')}"
    walls = {s: sum(_lossnet(["srvae", f"seed={s}", f"out={work / f'seed{s}'}", f"threads={args.threads}",
                              "progress=false", *extra, *args.overrides]) for extra in RUNS) for s in args.seeds}
    rows = [r for s in args.seeds for r in read_rows(work / f"seed{s}" / "results.jsonl")]
    print(f"\n{srvae_table(rows, args.seeds)}\n\nQuick scale (512 CSun_Hays80 patches of 64 px, 4 epochs, batch 16), "
          f"{args.threads} threads; kept epoch = the best validation epoch of seeds {', '.join(map(str, args.seeds))}. "
          f"Wall time of the {len(RUNS)} runs, seed " + ", ".join(f"{s}: {w / 60:.1f} min" for s, w in walls.items())
          + " (0 for a fully resumed run).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
