"""Does a label-free `lossnet select` ranking agree with the labelled one where labels are known?

Two kinds of images with labels:

* ``lunarlander``: frames of random-policy LunarLander rollouts (lossnet.data.lunarlander);
  labels = the lander's binned position (x tertile x y above/below the median: 6 classes); the
  positions themselves (pixels) for a regression check.
* ``sr``: random 64x64 crops of ``--sources`` CBSD68 photographs in $LOSSNET_SHARED/data/sr
  (default 8; docs/choosing.md uses 24); labels = the source image's id.

``train`` (one kind, one seed): per candidate (every offline (architecture, layer) + the pixel
baseline) the I-F-FP encoder of `select` is trained once on the stratified train part; from that
one encoder it stores the labelled score (held-out accuracy of the paper-B probe grid, as
`select`; for LunarLander also the position error of a regression grid) and what the label-free
criteria need (embeddings of the train and held-out images and of augmented views of the
held-out images, the candidate's pooled features of both). ``analyse`` (one kind, all stored
seeds) computes the label-free criteria with the library's functions and prints Spearman's rho
(scipy) between each criterion and the labelled ranking: on the same seed (shared encoders, so
optimistic), across seeds (label-free of seed s vs labelled of seed s', no shared encoder noise),
on the seed-averaged scores, and each score's own seed-to-seed rho (for the labelled ranking: its
noise ceiling).
``api`` runs the public `select` and `select_label_free` end to end (independent encoders).

    python studies/select_label_free.py train --kind lunarlander --images 480 --seed 0   # ... --seed 3
    python studies/select_label_free.py train --kind sr --images 720 --sources 24 --seed 0
    python studies/select_label_free.py analyse --kind lunarlander --images 480 [--figure docs/figures]
    python studies/select_label_free.py api [--kind lunarlander|sr|both] [--images 360] [--criterion ...]
    python studies/select_label_free.py table --seeds 0 1 2 3 --threads 2 --figure docs/figures   # the docs' table

``table`` trains what ``--out`` lacks (both kinds as docs/choosing.md runs them) and prints the
docs' markdown table (``tools/results.py run select_label_free``).
"""

from __future__ import annotations

import argparse
import glob
import itertools
import os
import statistics
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

from lossnet.experiments import select as S
from lossnet.report.formatting import format_p
from lossnet.experiments.select import (cross_prediction_scores, default_candidates, retrieval_scores, select,
                                        select_label_free)

OUT = "runs/select-label-free"
VIEWS = {"shift": {}, "photo": {"max_shift": 0},
         "photo2": {"max_shift": 0, "brightness": 0.2, "contrast": 0.2, "noise": 0.06}}


def lunarlander_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images uint8 (n, 3, 64, 64), 6-bin position labels (n,), positions float (n, 2) in pixels)."""
    from lossnet.data.lunarlander import generate_run

    steps, every = 90, 3
    rollouts = max(1, -(-3 * n // (2 * (steps // every))))  # some frames are off-screen
    run = generate_run(rollouts, seed, steps=steps, size=64, workers=1, progress=False)
    keep = torch.from_numpy(run["onscreen"]).clone()
    keep[torch.arange(len(keep)) % every != 0] = False
    imgs = torch.from_numpy(run["images"]).permute(0, 3, 1, 2)[keep][:n].contiguous()
    pos = torch.from_numpy(run["positions"])[keep][:n].float()
    xb = torch.bucketize(pos[:, 0].contiguous(), pos[:, 0].quantile(torch.tensor([1 / 3, 2 / 3])))
    yb = (pos[:, 1] > pos[:, 1].median()).long()
    return imgs, xb * 2 + yb, pos


def sr_crops(n: int, seed: int, n_sources: int = 8, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    from lossnet.data.sr import image_files, read_image

    root = Path(os.environ.get("LOSSNET_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data" / "sr"
    files = sorted(image_files(root / "CBSD68"))
    g = torch.Generator().manual_seed(seed)
    files = [files[i] for i in torch.randperm(len(files), generator=g)[:n_sources].tolist()]
    per = -(-n // n_sources)
    imgs, labels = [], []
    for k, f in enumerate(files):
        im = read_image(f)
        for _ in range(per):
            t = int(torch.randint(im.shape[-2] - size + 1, (1,), generator=g))
            l = int(torch.randint(im.shape[-1] - size + 1, (1,), generator=g))
            imgs.append(im[:, t:t + size, l:l + size])
            labels.append(k)
    return torch.stack(imgs)[:n].contiguous(), torch.tensor(labels)[:n]


def train(args) -> None:
    from lossnet.eval.probes import fit_probe_grid
    from lossnet.zoo import LossNetwork

    if args.kind == "lunarlander":
        imgs, labels, pos = lunarlander_images(args.images, args.data_seed)
    else:
        (imgs, labels), pos = sr_crops(args.images, args.data_seed, args.sources), None
    tr, te = S.stratified_split(labels, None, 0.3, args.seed)
    data = {"train_images": imgs[tr].contiguous(), "test_images": imgs[te].contiguous()}
    views = {k: S.augmented_view(data["test_images"], args.seed + 1, **v) for k, v in VIEWS.items()}
    s = {"z": 64, "hidden": 1024, "epochs": args.epochs, "batch_size": 32, "lr": 1e-3, "fp_max_dim": 4096,
         "seed": args.seed, "device": None, "progress": False}
    out = {"labels": labels, "pos": pos, "tr": tr, "te": te, "cands": {}}
    for arch, layer in [(S.BASELINE, "-")] + default_candidates("imagenet"):
        t0 = time.perf_counter()
        if arch == S.BASELINE:
            net = S._PixelNet()
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(args.seed)
                net = LossNetwork(arch, layers=layer, weights="imagenet", sigmoid=True)
        enc, *_ = S._train_candidate(net, arch, layer, data, s)
        ftest, _, _ = S._targets(net, data["test_images"], 4096, 128, "cpu")
        ftrain, _, _ = S._targets(net, data["train_images"], 4096, 128, "cpu")
        e = {"train": enc.embed(data["train_images"]), "test": enc.embed(data["test_images"]),
             "ftest": ftest.flatten(1).half(), "ftrain": ftrain.flatten(1).half()}
        for k, v in views.items():
            e["v_" + k] = enc.embed(v)
        g = fit_probe_grid(e["train"], labels[tr], e["test"], labels[te], task="classification",
                           epochs=args.probe_epochs, seed=args.seed, progress=False, num_classes=int(labels.max()) + 1)
        e["acc"] = float(g.test_metric)
        if pos is not None:
            g2 = fit_probe_grid(e["train"], pos[tr], e["test"], pos[te], task="regression", epochs=args.probe_epochs,
                                seed=args.seed, progress=False)
            e["err"] = float(g2.test_metric)
        name = arch if arch == S.BASELINE else f"{arch}:{layer}"
        out["cands"][name] = e
        print(f"{name:<24} acc {e['acc']:.3f} err {e.get('err', float('nan')):.2f} {time.perf_counter() - t0:.1f}s",
              flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    torch.save(out, Path(args.out) / f"{_stem(args)}_s{args.seed}.pt")


def _stem(args) -> str:
    """Run-file name without the seed: kind, images and (photographs) the number of source images."""
    return f"{args.kind}_n{args.images}" + (f"_src{args.sources}" if args.kind == "sr" and args.sources != 8 else "")


def _rho(a: list, b: list) -> tuple[float, float]:
    """Spearman's (rho, p) of two score lists over the same candidates."""
    t = spearmanr(a, b)
    return float(t.statistic), float(t.pvalue)


def cross_seed(res: dict, lab: str, key: str, sel: list) -> list[tuple[float, float]]:
    """(rho, p) of score ``key`` of seed s against score ``lab`` of seed s', every ordered pair s != s'."""
    return [_rho([res[a][n][lab] for n in sel], [res[b][n][key] for n in sel]) for a, b in itertools.permutations(res, 2)]


def seed_to_seed(res: dict, key: str, sel: list) -> list[tuple[float, float]]:
    """(rho, p) of score ``key`` between every unordered pair of seeds (its own reproducibility)."""
    return [_rho([res[a][n][key] for n in sel], [res[b][n][key] for n in sel]) for a, b in itertools.combinations(res, 2)]


def seed_averaged(res: dict, lab: str, key: str, sel: list) -> tuple[float, float]:
    """(rho, p) of the seed-averaged scores ``key`` against the seed-averaged ``lab``."""
    return _rho([sum(r[n][lab] for r in res.values()) for n in sel], [sum(r[n][key] for r in res.values()) for n in sel])


def criteria(d: dict, ridge: float = 1e-2) -> dict:
    """Per candidate: labelled scores and every label-free criterion (higher = better)."""
    names = list(d["cands"])
    c = {n: {k: (v.double() if torch.is_tensor(v) else v) for k, v in d["cands"][n].items()} for n in names}
    r2 = {n: {m: float(cross_prediction_scores(c[n]["train"], c[n]["test"], [c[m]["ftrain"]], [c[m]["ftest"]],
                                               ridge).mean()) for m in names} for n in names}
    out = {}
    for n in names:
        e, arch = c[n], n.split(":")[0]
        row = {"acc": e["acc"], **({"negerr": -e["err"]} if "err" in e else {})}
        for v in VIEWS:
            row["mrr_" + v] = float(retrieval_scores(e["v_" + v], e["test"], e["train"].mean(0), e["train"].std(0))[0].mean())
        mean = lambda ms: sum(r2[n][m] for m in ms) / len(ms)  # noqa: E731
        row["xp_others"] = mean([m for m in names if m.split(":")[0] != arch])  # the library's default
        row["xp_exself"] = mean([m for m in names if m != n])
        row["xp_nopix"] = mean([m for m in names if m.split(":")[0] not in (arch, S.BASELINE)])
        row["xp_pix"] = r2[n][S.BASELINE]
        row["xp_self"] = r2[n][n]
        out[n] = row
    return out


def analyse(args) -> None:
    files = sorted(glob.glob(str(Path(args.out) / f"{_stem(args)}_s*.pt")))
    if not files:
        raise SystemExit(f"no stored runs {_stem(args)}_s*.pt in {args.out}: run `train` with the same --kind, "
                         "--images and --sources first")
    res = {Path(f).stem: criteria(torch.load(f, weights_only=True)) for f in files}
    keys = list(next(iter(next(iter(res.values())).values())))
    names = list(next(iter(res.values())))
    for f, r in res.items():
        print(f"\n== {f}")
        print(f"{'candidate':>22} " + " ".join(f"{k:>9}" for k in keys))
        for n in names:
            print(f"{n:>22} " + " ".join(f"{r[n][k]:>9.3f}" for k in keys))
    for who, sel in (("all", names), ("loss networks", [n for n in names if n != S.BASELINE])):
        print(f"\n== Spearman's rho vs the labelled ranking ({who}: {len(sel)}); same-seed per seed, cross-seed (label-free of s vs labelled of s'), "
              "seed-averaged scores")
        summary = []
        for lab in [k for k in ("acc", "negerr") if k in keys]:
            for k in keys:
                same = [_rho([r[n][lab] for n in sel], [r[n][k] for n in sel]) for r in res.values()]
                cross, avg = cross_seed(res, lab, k, sel), seed_averaged(res, lab, k, sel)
                cr = " ".join(f"{a:+.2f} (p {p:.2f})" for a, p in cross) if cross else "-"
                print(f"  {lab:>6} vs {k:<10} same-seed {' '.join(f'{a:+.2f} (p {p:.2f})' for a, p in same)}  "
                      f"cross-seed {cr}  seed-avg {avg[0]:+.2f} (p {avg[1]:.3f})")
                summary.append((lab, k, cross, avg))
        if summary and summary[0][2]:
            print(f"  summary ({len(res)} seeds): cross-seed rho median [min, max], pairs with p < 0.05; seed-averaged rho (p)")
            for lab, k, cross, avg in summary:
                rs = sorted(a for a, _ in cross)
                print(f"    {lab:>6} vs {k:<10} {statistics.median(rs):+.2f} [{rs[0]:+.2f}, {rs[-1]:+.2f}]  "
                      f"{sum(p < 0.05 for _, p in cross)}/{len(cross)}   {avg[0]:+.2f} ({avg[1]:.3f})")
        _stability(res, keys, sel)
    if args.figure:
        _figure(res, names, Path(args.figure) / f"label_free_{_stem(args)}.png")


def _figure(res: dict, names: list, path: Path, criterion: str = "xp_others") -> None:
    """Seed-averaged label-free score (the default criterion) against seed-averaged held-out
    accuracy, one point per candidate, bars = the range over seeds."""
    from lossnet.report.figures import _plt, _save

    plt = _plt()
    runs = list(res.values())
    xs = [[r[n][criterion] for r in runs] for n in names]
    ys = [[r[n]["acc"] for r in runs] for n in names]
    mx, my = [sum(v) / len(v) for v in xs], [sum(v) / len(v) for v in ys]
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    ax.errorbar(mx, my, xerr=[[m - min(v) for m, v in zip(mx, xs)], [max(v) - m for m, v in zip(mx, xs)]],
                yerr=[[m - min(v) for m, v in zip(my, ys)], [max(v) - m for m, v in zip(my, ys)]],
                fmt="o", ms=4, capsize=2, lw=0.8)
    for n, x, y in zip(names, mx, my):
        ax.annotate(n, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    t = spearmanr(mx, my)
    ax.set_xlabel("label-free score: cross-prediction R^2 (held-out, seed mean)")
    ax.set_ylabel("labelled score: held-out probe accuracy (seed mean)")
    ax.set_title(f"{path.stem[len('label_free_'):]}: {len(runs)} seeds, Spearman rho {t.statistic:.2f} "
                 + (f"(p {t.pvalue:.3f})" if t.pvalue >= 1e-3 else "(p < 0.001)"),
                 fontsize=9)
    print(f"figure: {_save(fig, path)}")


def _stability(res: dict, keys: list, sel: list) -> None:
    """Each score's own seed-to-seed Spearman rho (its ranking's reproducibility)."""
    if len(res) < 2:
        return
    print(f"  seed-to-seed rho of each score itself ({len(sel)} candidates):")
    for k in keys:
        print(f"    {k:<10} " + " ".join(f"{r:+.2f} (p {p:.2f})" for r, p in seed_to_seed(res, k, sel)))


def compare(kind: str, images: torch.Tensor, labels: torch.Tensor, args) -> dict:
    cands = default_candidates("imagenet")
    common = dict(candidates=cands, max_images=None, epochs=args.epochs, seed=args.seed)
    t0 = time.perf_counter()
    lab = select(images, labels, probe_epochs=args.probe_epochs, **common)
    t1 = time.perf_counter()
    free = select_label_free(images, criterion=args.criterion, **common)
    t2 = time.perf_counter()
    a = {r.name: r.score for r in lab.results if r.status == "ok"}
    b = {r.name: r.score for r in free.results if r.status == "ok"}
    names = [k for k in a if k in b]
    print(f"\n== {kind}: {len(images)} images, {int(labels.max()) + 1} classes; labelled {t1 - t0:.0f} s, "
          f"label-free ({args.criterion}) {t2 - t1:.0f} s")
    print(f"{'candidate':<24}{'accuracy':>10}{'label-free':>11}")
    for k in sorted(names, key=lambda k: -a[k]):
        print(f"{k:<24}{a[k]:>10.3f}{b[k]:>11.3f}")
    rho_all = spearmanr([a[k] for k in names], [b[k] for k in names])
    nets = [k for k in names if k != S.BASELINE]
    rho_nets = spearmanr([a[k] for k in nets], [b[k] for k in nets])
    print(f"{kind}: Spearman rho (label-free vs labelled) = {rho_all.statistic:.3f} (p = {rho_all.pvalue:.3g}) over "
          f"{len(names)} candidates; {rho_nets.statistic:.3f} (p = {rho_nets.pvalue:.3g}) over the {len(nets)} "
          f"loss networks; recommended: labelled {lab.recommended}, label-free {free.recommended}")
    return {"rho": rho_all.statistic, "rho_nets": rho_nets.statistic}


def api(args) -> None:
    out = {}
    if args.kind in ("lunarlander", "both"):
        out["lunarlander"] = compare("lunarlander", *lunarlander_images(args.images, args.seed)[:2], args)
    if args.kind in ("sr", "both"):
        out["sr"] = compare("sr", *sr_crops(args.images, args.seed, args.sources), args)
    print("\n" + "; ".join(f"{k}: rho {v['rho']:.3f} (nets only {v['rho_nets']:.3f})" for k, v in out.items()))


# docs/choosing.md's table: the two kinds of images as the docs run them, its rows as (label,
# labelled score, label-free score, candidates: "all" or "nets"); "ceiling" rows compare the
# labelled score with itself across seeds.
TABLE_KINDS = (("lunarlander", 480, 8, "LunarLander frames (480, label: 6 position bins)"),
               ("sr", 720, 24, "SR photographs (720 crops of 24 CBSD68 images, label: source image)"))
TABLE_ROWS = (("labelled vs labelled (**the ceiling**)", "acc", "acc", "all"),
              ("**cross-prediction** (default)", "acc", "xp_others", "all"),
              ("cross-prediction over the 12 loss networks alone (no pixel baseline)", "acc", "xp_others", "nets"),
              ("retrieval", "acc", "mrr_shift", "all"),
              ("retrieval without the shift (`max_shift=0`)", "acc", "mrr_photo", "all"),
              ("R^2 of the embedding on its *own* features", "acc", "xp_self", "all"),
              ("LunarLander position error (regression grid) as the label: its ceiling", "negerr", "negerr", "all"),
              ("position error as the label: cross-prediction", "negerr", "xp_others", "all"),
              ("position error as the label: retrieval", "negerr", "mrr_shift", "all"))


def _p(p: float) -> str:
    """``p = 0.044`` or ``p < 1e-4``: lossnet's one rule for p values (report.formatting.format_p)."""
    text = format_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def agreement(res: dict, lab: str, key: str, sel: list) -> str:
    """``median [min, max], k/n`` of the cross-seed rho (label-free ``key`` of seed s vs labelled
    ``lab`` of seed s' != s) and, unless ``key == lab``, ``; rho (p)`` of the seed-averaged scores."""
    if any(lab not in r[n] or key not in r[n] for r in res.values() for n in sel):
        return "-"
    cross = cross_seed(res, lab, key, sel)
    rs = sorted(r for r, _ in cross)
    text = f"{statistics.median(rs):.2f} [{rs[0]:.2f}, {rs[-1]:.2f}], {sum(p < 0.05 for _, p in cross)}/{len(cross)}"
    if key != lab:
        avg = seed_averaged(res, lab, key, sel)
        text += f"; {avg[0]:.2f} ({_p(avg[1])})"
    return text


def stability(res: dict, key: str, sel: list) -> str:
    """``min-max`` of the score's own seed-to-seed rho over the pairs of seeds."""
    if any(key not in r[n] for r in res.values() for n in sel):
        return "-"
    rs = [r for r, _ in seed_to_seed(res, key, sel)]
    return f"{min(rs):.2f}-{max(rs):.2f}"


def markdown(results: dict[str, dict]) -> str:
    """docs/choosing.md's table from ``{column title: {run: criteria(...)}}`` (each kind's seeds)."""
    first = next(iter(results.values()))
    n_seeds, n_cands = len(first), len(next(iter(first.values())))
    pairs = n_seeds * (n_seeds - 1)
    head = (f"| rho over {n_cands} candidates: cross-seed median [min, max], pairs with p < 0.05 (of {pairs}); "
            "seed-averaged scores rho (p) | " + " | ".join(results) + " |")
    out = [head, "|---|" + "---|" * len(results)]
    for label, lab, key, who in TABLE_ROWS:
        cells = []
        for res in results.values():
            names = list(next(iter(res.values())))
            sel = names if who == "all" else [n for n in names if n != S.BASELINE]
            cells.append(agreement(res, lab, key, sel))
        if all(c == "-" for c in cells):
            continue
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    stab = [" / ".join(stability(res, k, list(next(iter(res.values())))) for k in ("acc", "xp_others", "mrr_shift"))
            for res in results.values()]
    out.append(f"| seed-to-seed rho of the score itself ({n_seeds * (n_seeds - 1) // 2} pairs): labelled / "
               "cross-prediction / retrieval | " + " | ".join(stab) + " |")
    return "\n".join(out)


def table(args) -> None:
    """Train what is missing (every kind of :data:`TABLE_KINDS`, every ``--seeds``), then print
    the docs' markdown table (and draw the figures with ``--figure``)."""
    if args.out == OUT:  # tools/results.py's work directory: a changed input trains afresh
        args.out = f"runs/results/select_label_free-{os.environ.get('LOSSNET_TABLE_DIGEST', 'adhoc')}"
    results = {}
    for kind, images, sources, title in TABLE_KINDS:
        run = argparse.Namespace(**{**vars(args), "kind": kind, "images": images, "sources": sources})
        for seed in args.seeds:
            run.seed = seed
            if not (Path(args.out) / f"{_stem(run)}_s{seed}.pt").exists():
                print(f"train {kind} seed {seed} ...", flush=True)
                t0 = time.perf_counter()
                train(run)
                print(f"train {kind} seed {seed}: {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
        res = {f"s{seed}": criteria(torch.load(Path(args.out) / f"{_stem(run)}_s{seed}.pt", weights_only=True))
               for seed in args.seeds}
        results[title] = res
        if args.figure:
            _figure(res, list(next(iter(res.values()))), Path(args.figure) / f"label_free_{_stem(run)}.png")
    print(f"\n{markdown(results)}\n\nSeeds {', '.join(map(str, args.seeds))} (split, encoders, probes; the frames and "
          f"crops fixed: data seed {args.data_seed}); {args.epochs} encoder epochs, {args.probe_epochs} probe epochs, "
          f"{args.threads} threads.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["train", "analyse", "api", "table"])
    ap.add_argument("--kind", default="lunarlander", choices=["lunarlander", "sr", "both"])
    ap.add_argument("--images", type=int, default=480)
    ap.add_argument("--sources", type=int, default=8, help="(sr) number of CBSD68 photographs the crops come from")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--probe-epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="split, encoder and probe seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="(table) the seeds")
    ap.add_argument("--data-seed", type=int, default=0, help="which frames / crops (train)")
    ap.add_argument("--criterion", default="cross-prediction", choices=list(S.LABEL_FREE_CRITERIA), help="(api)")
    ap.add_argument("--out", default=OUT, help="where train stores and analyse reads (table: default "
                    "runs/results/select_label_free-<inputs digest>)")
    ap.add_argument("--figure", default=None, help="(analyse) folder for a PNG: label-free vs labelled score per candidate")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.command in ("train", "analyse") and args.kind == "both":
        ap.error("train/analyse take one --kind")
    {"train": train, "analyse": analyse, "api": api, "table": table}[args.command](args)


if __name__ == "__main__":
    main()
