"""``lossnet sweep BENCHMARK [loss_net=...] [layer=...] [key=value ...]``: one benchmark over many
loss networks, resumable, in parallel, then the cross-analysis.

A *cell* is (architecture, extraction layer E/S/M/L[, benchmark coordinates such as the dataset]).
Each benchmark is a :class:`Benchmark` in :data:`BENCHMARKS` (benchmarks 1 to 4 of the systematic
analysis: ``similarity``, ``super_resolution``, ``delineation``, ``autoencoding``, also accepted as
``benchmark1`` ... ``benchmark4``; more plug in with :func:`register_benchmark`): its default
settings (YAML, with ``scales``), its score columns (:class:`~lossnet.report.analysis.Score`), the extra cell
coordinates, what enters a cell's id, a one-off ``prepare`` step (e.g. data generation, the
reference rows that are not loss networks: bicubic / pixel loss / BCE only), the cell function
and an optional report section.

Run directory (``out=``, default ``runs/sweep-BENCHMARK``):

* ``results.jsonl`` / ``results.csv`` -- a :class:`~lossnet.runs.table.ResultsTable`, one
  row per cell: ``cell_id, benchmark, arch, layer, [dataset], status ("ok" | "skipped"), reason,
  <score columns>, seed, seconds, weights, weights_source, details, config, lossnet_version,
  torch_version, python_version, host, cuda, device, threads, timestamp``;
* ``sweep.json`` (benchmark, scores, config; marks the directory as a sweep for ``lossnet report``),
  ``config.yaml``, ``analysis.md`` + ``figures/`` (:func:`lossnet.report.analysis.analysis_markdown`);
* ``cells/<id>/`` while a cell runs: engine checkpoints (``last.pt``) and, once finished,
  ``row.json`` until the parent has appended it (rows of cells that finished after their parent
  died are adopted on the next run).

Resuming: a cell whose id has an ``ok`` row is never recomputed. Cells whose ImageNet weights
are missing (:func:`lossnet.zoo.status`) get one ``skipped`` row with the reason and are not run;
availability is checked again on every run, and a cell whose weights have appeared since is run
(its ``ok`` row then supersedes the ``skipped`` one: readers keep the last ``ok`` row per id).

Parallelism: ``jobs=N`` runs cells in N local worker processes
(``concurrent.futures.ProcessPoolExecutor``, ``spawn`` start method, ``threads`` torch threads
each); ``launcher=slurm`` submits them as a SLURM job array through ``submitit.AutoExecutor``
(``slurm.partition``, ``slurm.time_min``, ``slurm.gpus``, ...). Only the parent process appends
rows.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Sequence

from omegaconf import DictConfig, OmegaConf

import lossnet.benchmarks  # noqa: F401 (registers the four benchmarks)
from lossnet.benchmarks.base import (
    BENCHMARKS,
    Benchmark,
    CellRequest,
    get_benchmark,
    register_benchmark,
    resolve_archs,
    resolve_layers,
)
from lossnet import distributed
from lossnet.config import read_text, typed, validate
from lossnet.errors import ConfigError, SweepError, UserError
from lossnet.runs.cells import cell_id, remove_checkpoints, utc_now
from lossnet.runs.launch import (
    Job,
    extra_specs,
    import_submitit,
    run_inline,
    run_pool,
    run_slurm,
    skipped_row,
)
from lossnet.runs.loop import Cell, LoopResult, final_report, run_cells, run_directory
from lossnet.runs.table import ResultsTable, read_sweep_manifest
from lossnet.schema.files import Sweep
from lossnet.utils import atomic_write, log

__all__ = ["BENCHMARKS", "Benchmark", "CellRequest", "SWEEP_DEFAULTS", "SweepError", "effective_rows", "is_sweep_dir",
           "load_sweep_config", "plan", "register_benchmark", "run_sweep", "sweep_settings", "write_analysis"]

SWEEP_DEFAULTS = read_text("sweep")
"""The settings every benchmark sweep shares: ``configs/sweep.yaml``."""


def load_sweep_config(benchmark: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Sweep settings < the benchmark's defaults < ``scales.<scale>`` < ``key=value`` overrides.

    Unknown keys raise :class:`~lossnet.errors.ConfigError` listing the valid ones.
    """
    from lossnet.config import resolve

    bench = get_benchmark(benchmark)  # a numbered alias (benchmark1 ...) resolved to the benchmark's name
    # the one loader: sweep settings < the benchmark's defaults < presets < overrides
    cfg = resolve(bench.name, overrides, defaults=bench.defaults, sweep=True)
    cfg.benchmark = bench.name
    if not cfg.get("out"):
        cfg.out = f"runs/sweep-{bench.name}"
    cfg.loss_net = resolve_archs(cfg.loss_net)
    cfg.layer = resolve_layers(cfg.layer)
    sweep_settings(cfg)  # the sweep settings checked also for a benchmark without a schema
    bench.check(cfg)
    return cfg


def sweep_settings(cfg) -> Sweep:
    """The sweep settings of a resolved benchmark config (:func:`load_sweep_config`), checked and typed
    (:class:`lossnet.schema.files.Sweep`; a benchmark's own settings left out); an instance as it is."""
    if isinstance(cfg, Sweep):
        return cfg
    part = OmegaConf.masked_copy(cfg, [f.name for f in fields(Sweep) if f.name in cfg])
    validate("sweep", part)
    return typed("sweep", part)


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------


def plan(cfg: DictConfig, bench: Benchmark) -> list[tuple[CellRequest, dict]]:
    """Every cell of the sweep as (request, spec), architecture-major."""
    container = OmegaConf.to_container(cfg, resolve=True)
    s = sweep_settings(cfg)
    out = []
    for arch in s.loss_net:
        for layer in s.layer:
            for coords in bench.variants(cfg):
                coords = dict(coords)
                weights = {"weights": s.weights}
                if s.weights == "random":
                    weights["init_seed"] = s.init_seed
                spec = {"benchmark": bench.name, "arch": arch, "layer": layer, "coords": coords, **weights,
                        "seed": s.seed, "setting": bench.identity(cfg, coords)}
                cid = cell_id(spec)
                label = f"{arch}:{layer}" + "".join(f" {v}" for v in coords.values())
                out.append((CellRequest(bench.name, container, arch, layer, coords, cid, s.out, s.seed, s.weights,
                                        s.init_seed, label), spec))
    return out


def effective_rows(rows: list[dict]) -> list[dict]:
    """One row per cell id: the last ``ok`` row, else the last ``skipped`` one (first-seen order)."""
    best: dict[str, dict] = {}
    for r in rows:
        cid = r.get("cell_id")
        cur = best.get(cid)
        if cur is None or r.get("status", "ok") == "ok" or cur.get("status") != "ok":
            best[cid] = r
    return list(best.values())


# --------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------


def _manifest(cfg: DictConfig, bench: Benchmark) -> str:
    scores = [{"name": s.name, "benchmark": s.benchmark, "higher_is_better": s.higher_is_better}
              for s in bench.scores(cfg)]
    return json.dumps({"benchmark": bench.name, "scores": scores,
                       "config": OmegaConf.to_container(cfg, resolve=True)}, indent=2)


def _harvest(out: Path, table: ResultsTable, ok: set[str]) -> int:
    """Append rows that finished cells wrote (``cells/<id>/row.json``) but the parent never recorded."""
    n = 0
    for p in sorted((out / "cells").glob("*/row.json")) if (out / "cells").is_dir() else []:
        try:
            row = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if row.get("status") == "ok" and row.get("cell_id") not in ok:
            table.append(row)
            ok.add(row["cell_id"])
            n += 1
        p.unlink(missing_ok=True)
    return n


def run_sweep(benchmark: str, overrides: Sequence[str] = (), *, on_row: Callable[[dict], None] | None = None) -> Path:
    """Run (or resume) ``benchmark`` over the configured loss networks; returns the run directory.

    Args:
        benchmark: a name in :data:`BENCHMARKS` (or ``benchmark1`` ... ``benchmark4``).
        overrides: ``key=value`` strings (see :data:`SWEEP_DEFAULTS` and the benchmark's defaults).
        on_row: called in the parent with every newly appended row (ok or skipped).

    Raises:
        SweepError: after the analysis is written, if some cells raised (rerun to retry them).
    """
    cfg = load_sweep_config(benchmark, overrides)
    s = sweep_settings(cfg)
    bench = get_benchmark(benchmark)
    if distributed.is_distributed() and (s.launcher != "local" or s.jobs > 1):
        raise ConfigError(f"under torchrun the cells run one after the other in the torchrun processes (each cell's "
                          f"training data parallel): set jobs=1 launcher=local (got jobs={s.jobs} "
                          f"launcher={s.launcher}); docs/scaling.md")
    if s.launcher == "slurm":
        import_submitit()  # fail before any work
    files = {"sweep.json": _manifest(cfg, bench), "config.yaml": OmegaConf.to_yaml(cfg)}
    with run_directory(Path(s.out), files=files) as out:  # one writer per run directory
        return _run_sweep_locked(cfg, s, bench, out, on_row)


def _launcher(cfg: DictConfig, s: Sweep, bench: Benchmark, out: Path):
    """``(todo cells, record, fail) -> None``: the cells' jobs inline, in local workers or on SLURM
    (:mod:`lossnet.runs.launch`); a failed cell's traceback goes to ``cells/<id>/error.log``."""

    def launch(todo: Sequence[Cell], record, fail) -> None:
        by_id = {c.cid: c for c in todo}

        def job_failed(job: Job, e: BaseException, tb: str) -> None:  # one console line; the traceback in a file
            path = out / "cells" / job.request.cid / "error.log"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, tb)
                where = f"traceback in {path}"
            except OSError as err:
                where = f"no traceback written ({err})"
            fail(by_id[job.request.cid], e, where)

        bench.prepare(cfg, out)
        local_pool = s.launcher == "local" and s.jobs > 1
        requests = [c.item[0] for c in todo]
        extra = extra_specs(sorted({r.arch for r in requests}), need_pickle=s.launcher == "slurm" or (
            local_pool and s.mp_context != "fork"))
        if s.launcher == "slurm":
            threads = s.slurm.cpus
        elif s.threads:
            threads = s.threads
        else:
            threads = distributed.cpu_share(s.jobs) if local_pool else None  # free cores / workers
        jobs = [Job(r, spec, bench, threads, extra) for r, spec in (c.item for c in todo)]
        if s.launcher == "slurm":
            run_slurm(jobs, s.slurm, bench.name, out, record, job_failed)
        elif local_pool:
            dev = s.device or ""
            # each worker its own GPU (round robin) unless the config pins a device (cpu, cuda:1 ...)
            run_pool(jobs, min(s.jobs, len(jobs)), s.mp_context, record, job_failed,
                     gpus=[] if dev and dev != "cuda" else None)
        else:
            run_inline(jobs, record, job_failed)

    return launch


def _run_sweep_locked(cfg: DictConfig, s: Sweep, bench: Benchmark, out: Path, on_row) -> Path:
    from lossnet import zoo

    main = distributed.is_main()  # under torchrun rank 0 alone writes (manifest, rows, analysis)
    table = ResultsTable(out)
    rows = table.rows()
    ok = {r["cell_id"] for r in rows if r.get("status", "ok") == "ok"}
    skipped = {r["cell_id"] for r in rows if r.get("status") == "skipped"}
    adopted = _harvest(out, table, ok) if main else 0
    ok, skipped = distributed.broadcast_object((ok, skipped))  # every rank runs the same cells
    cells = [Cell(req.cid, req.label, (req, spec)) for req, spec in plan(cfg, bench)]
    t0 = time.perf_counter()
    status_cache: dict[str, Any] = {}

    def screen(cell: Cell) -> dict | None:  # cells whose ImageNet weights are missing: a skipped row
        req, spec = cell.item
        if s.weights != "imagenet":
            return None
        st = status_cache.setdefault(req.arch, zoo.status(req.arch))
        return None if st.available else skipped_row(req, spec, st.reason or "no ImageNet weights on this machine")

    def keep(row: dict) -> bool:  # an ok row always; a skipped cell's row once
        return row.get("status") == "ok" or row["cell_id"] not in skipped

    def tidy(cid: str) -> None:
        (out / "cells" / cid / "row.json").unlink(missing_ok=True)
        if not s.keep_checkpoints:
            remove_checkpoints(out / "cells" / cid)

    def header(res: LoopResult, n_todo: int) -> str:
        return (f"sweep {bench.name} ({s.scale} scale) in {out}: {res.planned} cells; {res.done_before} done"
                + (f" ({adopted} adopted from finished workers)" if adopted else "")
                + f", {res.screened} skipped (weights unavailable), {n_todo} to run"
                + (f" on {s.jobs} local workers" if s.launcher == "local" and s.jobs > 1 else "")
                + (" with SLURM (submitit)" if s.launcher == "slurm" else ""))

    res = run_cells(table, cells, done=ok, screen=screen, launch=_launcher(cfg, s, bench, out), keep=keep, tidy=tidy,
                    describe=lambda row: _describe(row, bench, cfg), on_row=on_row, header=header)
    log(f"sweep finished in {time.perf_counter() - t0:.0f} s; results in {table.path}")
    if s.report:
        final_report(lambda: write_analysis(out), what="analysis")
    if res.failures:
        f = res.failures
        raise SweepError(f"{len(f)} cell(s) failed: " + "; ".join(f"{l} ({m})" for l, m in f[:5])
                         + (" ..." if len(f) > 5 else "") + ". Fix the cause, then rerun to retry them.")
    return out


def cells_coords(row: dict) -> list[str]:
    """Names of a row's benchmark-specific coordinates (e.g. ``dataset``)."""
    spec = ((row.get("config") or {}).get("spec") or {})
    return list((spec.get("coords") or {}).keys())


def _describe(row: dict, bench: Benchmark, cfg) -> str:
    if row.get("status") != "ok":
        return f"skipped ({(row.get('reason') or '')[:80]}...)"
    return ", ".join(f"{s.name} {row[s.name]:.4g}" for s in bench.scores(cfg) if row.get(s.name) is not None)


# --------------------------------------------------------------------------------------------
# Analysis / report
# --------------------------------------------------------------------------------------------


def is_sweep_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a sweep directory (holds ``sweep.json``)."""
    return (Path(path) / "sweep.json").is_file()


def sweep_dirs(path: Path) -> list[Path]:
    """``path`` itself if it is a sweep directory, else the sweep directories directly under it."""
    if is_sweep_dir(path):
        return [path]
    return sorted(p for p in path.iterdir() if p.is_dir() and is_sweep_dir(p)) if path.is_dir() else []


def write_analysis(path: str | os.PathLike, *, out: str | os.PathLike | None = None) -> Path:
    """Write the cross-analysis of one sweep directory, or of every sweep directory directly
    under ``path`` together (Table III across benchmarks), to ``analysis.md`` + ``figures/``."""
    from lossnet.report.analysis import Score, analysis_markdown

    path = Path(path)
    dirs = sweep_dirs(path)
    if not dirs:
        raise UserError(f"{path} is not a sweep directory (no sweep.json) and holds none")
    rows, scores, per_dir = [], [], []
    for d in dirs:
        man = read_sweep_manifest(d)
        for s in man["scores"]:
            sc = Score(s["name"], s["benchmark"], bool(s["higher_is_better"]))
            if sc not in scores:
                scores.append(sc)
        d_rows = effective_rows(ResultsTable(d).rows())
        per_dir.append((d, man["benchmark"], d_rows))
        rows += d_rows
    md_path = Path(out) if out is not None else path / "analysis.md"
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md = analysis_markdown(rows, scores, md_path.parent / "figures", md_dir=md_path.parent)
    for d, name, d_rows in per_dir:
        bench = BENCHMARKS.get(name)
        if bench is not None and bench.report is not None:
            md += "\n\n" + bench.report(d, d_rows, md_path.parent / "figures", md_path.parent).rstrip() + "\n"
    ok = [r for r in rows if r.get("status", "ok") == "ok"]
    head = [f"Sweep director{'ies' if len(dirs) > 1 else 'y'}: {', '.join(str(d) for d in dirs)}; "
            f"{len(ok)} finished cells, {len(rows) - len(ok)} skipped. Generated {utc_now()}.", ""]
    settings = sorted({f"{read_sweep_manifest(d)['benchmark']} ({read_sweep_manifest(d)['config'].get('scale')} scale)"
                       for d in dirs})
    head.insert(0, "Benchmarks: " + ", ".join(settings) + ".")
    lines = md.split("\n")
    md = "\n".join(lines[:2] + head + lines[2:])
    return atomic_write(md_path, md)


