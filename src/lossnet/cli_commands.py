"""The handlers of ``lossnet data lunarlander``, ``demo``, ``run``, ``sweep``, ``srvae`` and ``report``,
and the internal-error log: the part of the command line that only :mod:`lossnet.cli` imports.

Each handler takes the parsed ``argparse.Namespace`` and imports what it runs (``lossnet --help``
stays free of torch).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lossnet import __version__
from lossnet.errors import ConfigError, UserError

__all__ = ["_configured", "_data_lunarlander", "_demo", "_internal_error", "_print_yaml", "_report", "_run",
           "_split_print_config",
           "_srvae", "_sweep"]


def _split_print_config(args: argparse.Namespace) -> list[str]:
    """``key=value`` overrides without ``--print-config`` (which may come after them; it then sets
    ``args.print_config``); any other ``-option`` among them is an error."""
    overrides = [o for o in args.overrides if o != "--print-config"]
    args.print_config = args.print_config or len(overrides) != len(args.overrides)
    bad = [o for o in overrides if o.startswith("-")]
    if bad:
        raise ConfigError(f"unknown option(s) {bad}; settings are key=value")
    return overrides


def _print_yaml(cfg) -> None:
    from omegaconf import OmegaConf

    print(OmegaConf.to_yaml(cfg), end="")



def _data_lunarlander(args) -> None:
    from lossnet.data.lunarlander import generate_collection

    out = Path(args.out)
    cached = (out / "meta.json").is_file()
    generate_collection(out, n_rollouts=tuple(args.rollouts), seed=args.seed, steps=args.steps, size=args.size,
                        workers=args.workers, progress=not args.no_progress,
                        offscreen_tolerance=args.offscreen_tolerance)
    meta = json.loads((out / "meta.json").read_text())
    counts = " ".join(f"{k}={v}" for k, v in meta["frames"].items())
    off = meta.get("offscreen_fraction") or {}
    removed = [f"{k} {100 * v:.1f} %" for k, v in off.items() if meta["offscreen_removed"].get(k)]
    if removed and not cached:
        counts += " (off screen removed: " + ", ".join(removed) + ")"
    how = "cached" if cached else f"{meta['seconds']:.1f} s, {meta['frames_per_s']:.0f} frames/s"
    print(f"lunarlander: {counts} frames ({meta['size']}x{meta['size']}) in {out} [{how}]")



_DEMO_FLAGS = ("out", "scale", "procedures", "z", "seed", "epochs", "probe_epochs", "rollouts", "workers", "device")


def _demo(args) -> None:
    from lossnet.experiments.demo import format_table, load_config, run_demo

    overrides = _split_print_config(args)
    for k in _DEMO_FLAGS:  # the flags are shorthands for key=value settings
        v = getattr(args, k)
        if v is not None:
            overrides.append(f"{k}=[{','.join(map(str, v))}]" if isinstance(v, list) else f"{k}={v}")
    if args.no_progress:
        overrides.append("progress=false")
    cfg = load_config(overrides)
    if args.print_config:
        from dataclasses import asdict

        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(OmegaConf.create(asdict(cfg))), end="")
        return
    t0 = time.perf_counter()
    rows = run_demo(cfg)
    print()
    print(format_table(rows))
    pw = next((r for r in rows if r["procedure"] == "I-I-PW"), None)
    if pw is not None:
        for r in rows:
            if r is not pw:
                print(f"{r['procedure']}: error {r['test_error_px'] / pw['test_error_px']:.2f} x I-I-PW's, "
                      f"epoch time {r['epoch_seconds'] / pw['epoch_seconds']:.2f} x I-I-PW's")
    print(f"\nwrote {cfg.out}/results.json, results.md, error_vs_time.png, reconstructions_*.png "
          f"({time.perf_counter() - t0:.0f} s)")



def _configured(args, load, run) -> None:
    """A config-driven command: ``--print-config`` prints ``load(overrides)``, else ``run(overrides)``
    runs and its output directory is printed."""
    overrides = _split_print_config(args)
    if args.print_config:
        _print_yaml(load(overrides))
        return
    out = run(overrides)
    from lossnet import distributed

    if distributed.is_main():  # under torchrun: one line, not one per process
        print(out)


def _run(args) -> None:
    from lossnet.experiments.runner import load_config, run_experiment

    _configured(args, lambda o: load_config(args.experiment, o), lambda o: run_experiment(args.experiment, o))


def _sweep(args) -> None:
    from lossnet.benchmarks.sweep import load_sweep_config, run_sweep

    _configured(args, lambda o: load_sweep_config(args.benchmark, o), lambda o: run_sweep(args.benchmark, o))


def _srvae(args) -> None:
    from lossnet.experiments.sr_vae import load_config, run_sr_vae

    _configured(args, load_config, run_sr_vae)



def _report(args) -> None:
    from lossnet.benchmarks.sweep import is_sweep_dir, sweep_dirs, write_analysis

    d = Path(args.dir)
    if not d.is_dir():
        raise UserError(f"{d} is not a directory; expected a run directory (holding results.jsonl, written by "
                        f"lossnet run / sweep / srvae) or a folder of sweep directories")
    if is_sweep_dir(d) or (sweep_dirs(d) and not (d / "results.jsonl").exists()):
        path = write_analysis(d, out=args.out)
    elif not (d / "results.jsonl").is_file():
        raise UserError(f"{d} is not a run directory: no results table {d / 'results.jsonl'} (lossnet run / srvae), "
                        f"no {d / 'sweep.json'} (lossnet sweep) and no sweep directories inside it")
    elif _is_demo_dir(d):
        raise UserError(f"{d} is a demo directory (lossnet demo): its report is {d / 'results.md'}; "
                        f"`lossnet demo --out {d}` rebuilds it without retraining finished procedures")
    else:
        from lossnet.report import write_report

        path = write_report(args.dir, out=args.out)
    print(json.dumps({"report": str(path)}) if args.json else path)



def _is_demo_dir(d: Path) -> bool:
    """Whether ``d``'s results table is the demo's (rows per procedure, no experiment column)."""
    from lossnet.utils import read_jsonl

    try:
        rows = read_jsonl(d / "results.jsonl")
    except UserError:
        return False
    return bool(rows) and all("procedure" in r and "test_error_px" in r and "experiment" not in r for r in rows)


def _internal_error(e: BaseException, args) -> int:
    """A bug: the traceback goes to ``$LOSSNET_HOME/logs/internal-*.log`` (and to stderr with
    ``LOSSNET_DEBUG=1``); the console gets one line naming that file. Returns 1."""
    import os
    import traceback

    text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    if os.environ.get("LOSSNET_DEBUG", "") not in ("", "0"):
        print(text, file=sys.stderr, end="")
    home = Path(os.environ.get("LOSSNET_HOME", Path.home() / ".cache" / "lossnet")).expanduser()
    log = home / "logs" / f"internal-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"lossnet {__version__}; argv {sys.argv!r}; args {vars(args)!r}\n{text}")
        where = f"details in {log}"
    except OSError as err:
        where = f"no log written ({err}); rerun with LOSSNET_DEBUG=1 for the traceback"
    first = (str(e).splitlines() or [""])[0][:200]
    print(f"lossnet: internal error ({type(e).__name__}: {first}); {where}; please report", file=sys.stderr)
    return 1
