"""``lossnet select`` on real photographs whose class is the collection they come from (a script).

200 random 64 px crops of the SR test photographs (``shared/data/sr``): class = collection, CBSD68
and CSun_Hays80 (2 classes), plus CSet14 (3 classes); 60 of them held out. Candidates
``alexnet:S,efficientnet_lite0:E`` and the pixel baseline, 1 encoder epoch, 10 probe epochs: the
setting in which an earlier ``select`` recommended noise (docs/choosing.md, "Baselines and noise").
The crops are fixed (drawn with seed = classes); ``--seeds`` varies select's own seed (encoder
initialisation, split, probes). Prints one row per classes x seed, then with ``--markdown`` the
docs' table: each score as mean ± std over the seeds (uncorrected std) and what was recommended.

    python studies/select_photographs.py [--root ../shared/data/sr] [--seeds 0 1 2] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
COLLECTIONS = ("CBSD68", "CSun_Hays80", "CSet14")
CANDIDATES = "alexnet:S,efficientnet_lite0:E"


def photo_crops(sr_dir: Path, classes: int, n: int = 200, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random ``size`` px crops (uint8 (n, 3, size, size)) of the photographs in ``sr_dir``'s
    first ``classes`` collections and their labels (int64 (n,), the collection's index); the
    draws are seeded by ``classes``."""
    from lossnet.data.sr import image_files, read_image

    g = torch.Generator().manual_seed(classes)
    imgs, labels = [], []
    for c, sub in enumerate(COLLECTIONS[:classes]):
        files = image_files(Path(sr_dir) / sub)
        for _ in range(n // classes):
            im = read_image(files[int(torch.randint(len(files), (1,), generator=g))])
            t, l = (int(torch.randint(d - size + 1, (1,), generator=g)) for d in im.shape[1:])
            imgs.append(im[:, t:t + size, l:l + size])
            labels.append(c)
    return torch.stack(imgs), torch.tensor(labels)


def markdown(rows: dict, seeds: list[int], classes: list[int]) -> str:
    """The docs' table from ``{(classes, seed): (scores by candidate name, Selection)}``: per class
    count, each candidate's score, the baselines and the noise margin as mean ± std over ``seeds``
    (uncorrected std, :func:`tables.spread`) and what was recommended with each seed."""
    sys.path.insert(0, str(REPO / "tools"))
    from tables import spread

    sys.path.pop(0)
    ms = lambda values: spread(values, 3)[0]  # noqa: E731
    names = CANDIDATES.split(",") + ["(pixels)"]
    out = [f"| classes | {' | '.join(names)} | chance / majority | noise margin | "
           f"recommended (seeds {', '.join(map(str, seeds))}) |", "| --- | " + "---: | " * (len(names) + 2) + "--- |"]
    for c in classes:
        got = [rows[c, s] for s in seeds]
        cells = [ms([sc[n] for sc, _ in got]) for n in names]
        base = [sel.baselines for _, sel in got]
        rec = ", ".join(sel.recommended or "nothing" for _, sel in got)
        out.append(f"| {c} | {' | '.join(cells)} | {ms([b['chance'] for b in base])} / "
                   f"{ms([b['majority'] for b in base])} | {ms([sel.noise for _, sel in got])} | {rec} |")
    return "\n".join(out)


def main() -> None:
    from lossnet.experiments.select import select

    warnings.filterwarnings("ignore")
    shared = Path(os.environ.get("LOSSNET_SHARED", REPO.parent / "shared"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=shared / "data" / "sr", help="the SR test sets")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--classes", type=int, nargs="+", default=[2, 3], choices=[2, 3])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--markdown", action="store_true", help="end with the markdown table of docs/choosing.md")
    args = ap.parse_args()
    if not all((args.root / c).is_dir() for c in COLLECTIONS):
        raise SystemExit(f"select_photographs: the SR test sets are not under {args.root} (pass --root)")
    torch.set_num_threads(args.threads)
    rows = {}
    for classes in args.classes:
        x, y = photo_crops(args.root, classes)
        for seed in args.seeds:
            sel = select(x, y, candidates=CANDIDATES, epochs=1, probe_epochs=10, seed=seed)
            scores = {r.name: r.score for r in sel.results if r.status == "ok"}
            rows[classes, seed] = (scores, sel)
            print(f"classes {classes} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
                  + f"; chance {sel.baselines['chance']:.3f}, majority {sel.baselines['majority']:.3f}, "
                  f"noise margin {sel.noise:.3f}, n_test {sel.settings['n_test']}; "
                  f"recommended: {sel.recommended or 'nothing'}", flush=True)
    if args.markdown:
        print("\n" + markdown(rows, args.seeds, args.classes))


if __name__ == "__main__":
    main()
