"""``lossnet sweep BENCHMARK [loss_net=...] [layer=...] [key=value ...]``: one benchmark over many
loss networks, resumable, in parallel, then the cross-analysis.

A *cell* is (architecture, extraction layer E/S/M/L[, benchmark coordinates such as the dataset]).
Each benchmark is a :class:`Benchmark` in :data:`BENCHMARKS` (``benchmark1``: perceptual
similarity, ``benchmark2``: super-resolution, ``benchmark3``: delineation, ``benchmark4``:
autoencoding; more plug in with :func:`register_benchmark`): its default settings (YAML, with
``scales``), its score columns (:class:`~lossnet.report.analysis.Score`), the extra cell
coordinates, what enters a cell's id, a one-off ``prepare`` step (e.g. data generation, the
reference rows that are not loss networks: bicubic / pixel loss / BCE only), the cell function
and an optional report section.

Run directory (``out=``, default ``runs/sweep-BENCHMARK``):

* ``results.jsonl`` / ``results.csv`` -- a :class:`~lossnet.experiments.common.ResultsTable`, one
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

import argparse
import json
import os
import pickle
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from lossnet.cli import UserError
from lossnet.experiments.common import ConfigError, ResultsTable, cell_id, environment, log, remove_checkpoints, utc_now

__all__ = ["BENCHMARKS", "Benchmark", "CellRequest", "SweepError", "register_benchmark", "load_sweep_config",
           "run_sweep", "effective_rows", "write_analysis", "is_sweep_dir", "add_cli"]

LAYERS = ("E", "S", "M", "L")

SWEEP_DEFAULTS = read_text("sweep")
"""The defaults: ``configs/sweep.yaml``."""


class SweepError(UserError):
    """Some cells failed (their tracebacks were logged); rerun the same command to retry them."""


# --------------------------------------------------------------------------------------------
# The benchmark registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellRequest:
    """What a cell function gets (picklable; built in the parent, run in a worker).

    ``weights`` is ``"imagenet"`` or ``"random"``; :meth:`weights_arg` turns it into the
    ``weights=`` argument of :class:`~lossnet.zoo.LossNetwork` and :meth:`seeded` makes random
    initialisation reproducible (seeded with ``init_seed``).
    """

    benchmark: str
    cfg: dict  # the resolved sweep config (plain container)
    arch: str
    layer: str
    coords: dict
    cid: str
    out: str
    seed: int
    weights: str
    init_seed: int
    label: str

    @property
    def config(self) -> DictConfig:
        return OmegaConf.create(self.cfg)

    @property
    def weights_arg(self):
        return "imagenet" if self.weights == "imagenet" else None

    @contextmanager
    def seeded(self):
        """Context in which random weights are drawn reproducibly (global RNG restored after)."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.init_seed)
            yield

    def loss_network(self, sigmoid: bool = False):
        """The cell's single-layer :class:`~lossnet.zoo.LossNetwork`."""
        from lossnet.zoo import LossNetwork

        with self.seeded():
            return LossNetwork(self.arch, layers=[self.layer], weights=self.weights_arg, sigmoid=sigmoid)


def _one_cell(cfg) -> list:
    return [{}]


def _no_identity(cfg, coords) -> dict:
    return {}


def _no_prepare(cfg, out) -> None:
    return None


def _no_check(cfg) -> None:
    return None


@dataclass(frozen=True)
class Benchmark:
    """A benchmark the sweep can run.

    Attributes:
        name: ``lossnet sweep NAME``.
        description: one line for ``--help``.
        defaults: YAML of its settings, with ``scales: {quick: ..., paper: ...}`` presets.
        scores: ``cfg -> [Score]``, the score columns its rows carry (for the analysis).
        run: ``CellRequest -> {"scores": {column: value}, "details": {...}}``; raise
            :class:`~lossnet.zoo.WeightsUnavailableError` to have the cell recorded as skipped.
        variants: ``cfg -> [coords]``, extra cell coordinates (default ``[{}]``: one cell per
            loss network); they become row columns.
        identity: ``(cfg, coords) -> dict``, the settings that determine a cell's result (they
            enter its id, with the architecture, layer, weights and seed).
        prepare: ``(cfg, out) -> None``, run once in the parent before any cell (data generation,
            checks).
        check: ``cfg -> None``, validate settings (raise ConfigError).
        report: ``(sweep dir, its rows, figures dir, markdown dir) -> markdown``, a section of its
            own appended to the analysis (e.g. reference rows that are not loss networks).
    """

    name: str
    description: str
    defaults: str
    scores: Callable[[Any], list]
    run: Callable[[CellRequest], dict]
    variants: Callable[[Any], list] = _one_cell
    identity: Callable[[Any, dict], dict] = _no_identity
    prepare: Callable[[Any, Path], None] = _no_prepare
    check: Callable[[Any], None] = _no_check
    report: Callable[[Path, list, Path, Path], str] | None = None


BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(b: Benchmark, *, overwrite: bool = False) -> Benchmark:
    """Make ``b`` available to ``lossnet sweep`` (benchmarks 2 and 3 plug in here)."""
    if b.name in BENCHMARKS and not overwrite:
        raise ValueError(f"benchmark {b.name!r} is already registered; pass overwrite=True")
    BENCHMARKS[b.name] = b
    return b


# ---- benchmark 1 ---------------------------------------------------------------------------

B1_DEFAULTS = read_text("benchmark1")
"""The defaults: ``configs/benchmark1.yaml``."""


def _b1_scores(cfg) -> list:
    from lossnet.report.analysis import Score

    s = [Score(t, "benchmark1", True) for t in cfg.tasks]
    if cfg.data == "proxy":  # the proxy's discriminative rows (means saturate; docs/benchmark1.md)
        extra = (("2afc_cross", "2afc"), ("jnd_pooled", "jnd"))
        s += [Score(n, "benchmark1", True) for n, t in extra if t in cfg.tasks]
    return s


def _b1_check(cfg) -> None:
    if cfg.data not in ("proxy", "bapps"):
        raise ConfigError(f"data must be proxy or bapps, got {cfg.data!r}")
    bad = [t for t in cfg.tasks if t not in ("2afc", "jnd")]
    if bad or not cfg.tasks:
        raise ConfigError(f"tasks must be a subset of [2afc, jnd], got {list(cfg.tasks)}")


def _b1_identity(cfg, coords) -> dict:
    d = {"data": str(cfg.data), "root": str(cfg.root), "normalize": cfg.normalize, "tasks": list(cfg.tasks)}
    d.update({"n_patches": int(cfg.n_patches)} if cfg.data == "proxy" else {"split": str(cfg.split)})
    return d


def _b1_prepare(cfg, out) -> None:
    if not cfg.root:
        what = "an image folder such as shared/data/sr" if cfg.data == "proxy" else "the BAPPS dataset folder"
        raise ConfigError(f"benchmark1 needs root=DIR ({what}); see docs/benchmark1.md")
    if not Path(str(cfg.root)).expanduser().is_dir():
        raise ConfigError(f"root={cfg.root} is not a directory")


def _b1_run(req: CellRequest) -> dict:
    from lossnet.eval.similarity import benchmark1_cell

    c = req.config
    with req.seeded():
        res = benchmark1_cell(req.arch, req.layer, data=str(c.data), root=Path(str(c.root)).expanduser(),
                              weights=req.weights_arg, normalize=c.normalize, tasks=tuple(c.tasks), split=str(c.split),
                              n_patches=int(c.n_patches), seed=req.seed, batch_size=int(c.batch_size),
                              device=c.get("device") or None)
    scores = {t: res[t] for t in c.tasks}
    if c.data == "proxy":
        pick = {("2afc", "cross"): "2afc_cross", ("jnd", "pooled"): "jnd_pooled"}
        for r in res["rows"]:
            if (r["task"], r["category"]) in pick:
                scores[pick[(r["task"], r["category"])]] = r["score"]
    return {"scores": scores, "details": {"data": res["data"], "rows": res["rows"], "weights_source": res["weights"]}}


# ---- benchmark 4 ---------------------------------------------------------------------------


def _b4_run(req: CellRequest) -> dict:
    from lossnet.experiments import benchmark4 as b4

    c = req.config
    with req.seeded():
        net = b4.make_loss_network(c, req.arch, req.layer, req.weights_arg)
    res = b4.run_cell(c, req.arch, req.layer, req.coords, loss_net=net, out=Path(req.out), cid=req.cid, seed=req.seed,
                      label=req.label)
    res["details"]["weights_source"] = net.weights_source
    return res


def _run_cell_of(module: str, req: CellRequest) -> dict:
    """A cell of a benchmark module with a ``run_cell(cfg, arch, layer, coords, *, loss_net, out,
    cid, seed, label)`` (benchmarks 2 and 3): the request's single-layer loss network, no sigmoid."""
    import importlib

    mod = importlib.import_module(f"{__package__}.{module}")
    net = req.loss_network()
    res = mod.run_cell(req.config, req.arch, req.layer, req.coords, loss_net=net, out=Path(req.out), cid=req.cid,
                       seed=req.seed, label=req.label)
    res["details"]["weights_source"] = net.weights_source
    return res


def _builtin_benchmarks() -> None:
    from lossnet.experiments import benchmark2 as b2
    from lossnet.experiments import benchmark3 as b3
    from lossnet.experiments import benchmark4 as b4

    register_benchmark(Benchmark("benchmark2", "super-resolution (Johnson et al. transformation network, PSNR/SSIM)",
                                 b2.DEFAULTS, b2.scores, partial(_run_cell_of, "benchmark2"), variants=b2.variants, identity=b2.identity,
                                 prepare=b2.prepare, check=b2.check, report=b2.report_section), overwrite=True)
    register_benchmark(Benchmark("benchmark3", "delineation (iterative U-Net, BCE + mu x topology loss)",
                                 b3.DEFAULTS, b3.scores, partial(_run_cell_of, "benchmark3"), identity=b3.identity, prepare=b3.prepare,
                                 check=b3.check, report=b3.report_section), overwrite=True)

    register_benchmark(Benchmark("benchmark1", "perceptual similarity (BAPPS 2AFC/JND, or the offline proxy)",
                                 B1_DEFAULTS, _b1_scores, _b1_run, identity=_b1_identity, prepare=_b1_prepare,
                                 check=_b1_check), overwrite=True)
    register_benchmark(Benchmark("benchmark4", "autoencoding with deep perceptual loss, scored by downstream probes",
                                 b4.DEFAULTS, b4.scores, _b4_run, variants=b4.variants, identity=b4.identity,
                                 prepare=b4.prepare, check=b4.check), overwrite=True)


_builtin_benchmarks()


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def _get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {name!r}; choose one of {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[name]


def _as_list(v) -> list[str]:
    if v is None:
        return []
    if isinstance(v, (list, tuple, ListConfig)):
        return [str(x).strip() for x in v if str(x).strip()]
    return [s.strip() for s in str(v).split(",") if s.strip()]


def resolve_archs(value) -> list[str]:
    """``all`` | ``available`` | ``a,b,c`` (or a list) -> architecture names (registry order for
    ``all``/``available``); unknown names raise ConfigError listing the known ones."""
    from lossnet import zoo

    names = _as_list(value)
    if names == ["all"]:
        return zoo.list_archs()
    if names == ["available"]:
        return [a for a in zoo.list_archs() if zoo.status(a).available]
    known = zoo.list_archs()
    bad = [a for a in names if a not in known]
    if bad or not names:
        raise ConfigError(f"unknown loss network(s) {bad or value!r}; use all, available or a comma list of "
                          f"{', '.join(known)}")
    return list(dict.fromkeys(names))


def resolve_layers(value) -> list[str]:
    layers = [x.upper() for x in _as_list(value)]
    bad = [x for x in layers if x not in LAYERS]
    if bad or not layers:
        raise ConfigError(f"layer must be a comma list of E, S, M, L (Table II), got {value!r}")
    return list(dict.fromkeys(layers))


def load_sweep_config(benchmark: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Sweep settings < the benchmark's defaults < ``scales.<scale>`` < ``key=value`` overrides.

    Unknown keys raise :class:`~lossnet.experiments.common.ConfigError` listing the valid ones.
    """
    from lossnet.experiments.runner import parse_overrides

    bench = _get_benchmark(benchmark)
    bdefaults = OmegaConf.create(bench.defaults)
    scales = bdefaults.pop("scales", None) or {}
    base = OmegaConf.merge(OmegaConf.create(SWEEP_DEFAULTS), bdefaults)
    over = parse_overrides(list(overrides), base, f"sweep {benchmark}")
    scale = over.get("scale", base.scale)
    if scale not in scales:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(scales) or '(none)'}")
    cfg = OmegaConf.merge(base, scales[scale], over)
    cfg.scale = scale
    cfg.benchmark = benchmark
    if not cfg.get("out"):
        cfg.out = f"runs/sweep-{benchmark}"
    cfg.loss_net = resolve_archs(cfg.loss_net)
    cfg.layer = resolve_layers(cfg.layer)
    if str(cfg.weights) not in ("imagenet", "random"):
        raise ConfigError(f"weights must be imagenet or random, got {cfg.weights!r}")
    if str(cfg.launcher) not in ("local", "slurm"):
        raise ConfigError(f"launcher must be local or slurm, got {cfg.launcher!r}")
    if int(cfg.jobs) < 1:
        raise ConfigError(f"jobs must be >= 1, got {cfg.jobs}")
    bench.check(cfg)
    return cfg


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------


def plan(cfg: DictConfig, bench: Benchmark) -> list[tuple[CellRequest, dict]]:
    """Every cell of the sweep as (request, spec), architecture-major."""
    container = OmegaConf.to_container(cfg, resolve=True)
    out = []
    for arch in cfg.loss_net:
        for layer in cfg.layer:
            for coords in bench.variants(cfg):
                coords = dict(coords)
                weights = {"weights": str(cfg.weights)}
                if cfg.weights == "random":
                    weights["init_seed"] = int(cfg.init_seed)
                spec = {"benchmark": bench.name, "arch": arch, "layer": layer, "coords": coords, **weights,
                        "seed": int(cfg.seed), "setting": bench.identity(cfg, coords)}
                cid = cell_id(spec)
                label = f"{arch}:{layer}" + "".join(f" {v}" for v in coords.values())
                out.append((CellRequest(bench.name, container, arch, layer, coords, cid, str(cfg.out), int(cfg.seed),
                                        str(cfg.weights), int(cfg.init_seed), label), spec))
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


def _base_row(req: CellRequest, spec: dict) -> dict:
    return {"cell_id": req.cid, "benchmark": req.benchmark, "arch": req.arch, "layer": req.layer, **req.coords,
            "seed": req.seed, "weights": req.weights}


def _skipped_row(req: CellRequest, spec: dict, reason: str) -> dict:
    return {**_base_row(req, spec), "status": "skipped", "reason": reason, "seconds": 0.0,
            "config": {"spec": spec, "run": req.cfg}, **environment(), "timestamp": utc_now()}


# --------------------------------------------------------------------------------------------
# Executing one cell (in this process, a local worker, or a SLURM job)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    request: CellRequest
    spec: dict
    bench: Benchmark
    threads: int | None
    extra_specs: tuple = ()


def _register_specs(specs) -> None:
    from lossnet.zoo import REGISTRY, register

    for s in specs:
        if s.name not in REGISTRY:
            register(s)


def _execute(job: _Job) -> dict:
    """Run one cell; returns its complete row (also written to ``cells/<id>/row.json``)."""
    import torch

    from lossnet.zoo import WeightsUnavailableError

    _register_specs(job.extra_specs)
    req = job.request
    old = torch.get_num_threads()
    if job.threads:
        torch.set_num_threads(int(job.threads))
    t0 = time.perf_counter()
    try:
        res = job.bench.run(req)
        row = {**_base_row(req, job.spec), "status": "ok", **res["scores"]}
        details = dict(res.get("details") or {})
        row["weights_source"] = details.pop("weights_source", None)
        row["details"] = details
    except WeightsUnavailableError as e:
        row = {**_base_row(req, job.spec), "status": "skipped", "reason": str(e)}
    finally:
        torch.set_num_threads(old)
    cfg = req.config
    row.update(seconds=time.perf_counter() - t0, config={"spec": job.spec, "run": req.cfg}, **environment(),
               device=str(cfg.device) if cfg.get("device") else ("cuda" if torch.cuda.is_available() else "cpu"),
               threads=int(job.threads) if job.threads else old, timestamp=utc_now())
    path = Path(req.out) / "cells" / req.cid / "row.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".row.{os.getpid()}.tmp")
    from lossnet.experiments.common import _clean

    tmp.write_text(json.dumps(_clean(row)))
    os.replace(tmp, path)
    return row


def _init_worker(specs) -> None:  # pragma: no cover - runs in worker processes
    import warnings

    warnings.filterwarnings("ignore", message=".*not writable.*")
    _register_specs(specs)


def _extra_specs(archs: Sequence[str], need_pickle: bool) -> tuple:
    """Specs of architectures registered at run time (workers re-register them)."""
    from lossnet.zoo import get_spec
    from lossnet.zoo.registry import _specs

    builtin = {s.name for s in _specs()}
    extra = []
    for a in archs:
        if a in builtin:
            continue
        s = get_spec(a)
        if need_pickle:
            try:
                pickle.dumps(s)
            except Exception as e:
                raise ConfigError(f"architecture {a!r} was registered at run time with a build function that cannot be "
                                  f"sent to worker processes ({e}); define its build at module level, or use jobs=1")
        extra.append(s)
    return tuple(extra)


# --------------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------------


def _run_inline(jobs: list[_Job], record, fail) -> None:
    for job in jobs:
        try:
            row = _execute(job)
        except Exception as e:  # noqa: BLE001 - one failing cell must not stop the others
            fail(job, e, traceback.format_exc())
            continue
        record(row)


def _run_pool(jobs: list[_Job], n: int, context: str, record, fail) -> None:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    extra = jobs[0].extra_specs if jobs else ()
    ex = ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context(context), initializer=_init_worker,
                             initargs=(extra,))
    try:
        pending = {ex.submit(_execute, j): j for j in jobs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                job = pending.pop(fut)
                try:
                    row = fut.result()
                except Exception as e:  # noqa: BLE001
                    fail(job, e, "".join(traceback.format_exception(e)))
                    continue
                record(row)
    except BaseException:
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)


def _import_submitit():
    try:
        import submitit
    except ImportError:
        raise UserError("launcher=slurm uses submitit, which is not installed: pip install lossnet[slurm] "
                        "(or pip install submitit)") from None
    return submitit


def slurm_parameters(cfg: DictConfig, benchmark: str) -> dict:
    """``AutoExecutor.update_parameters`` arguments from the ``slurm.*`` settings."""
    s = cfg.slurm
    params = {"name": f"lossnet-{benchmark}", "timeout_min": int(s.time_min), "gpus_per_node": int(s.gpus),
              "cpus_per_task": int(s.cpus), "mem_gb": float(s.mem_gb),
              "slurm_array_parallelism": int(s.array_parallelism)}
    if s.partition:
        params["slurm_partition"] = str(s.partition)
    if s.additional:
        params["slurm_additional_parameters"] = OmegaConf.to_container(s.additional, resolve=True)
    return params


def _run_slurm(jobs: list[_Job], cfg: DictConfig, out: Path, record, fail) -> None:
    submitit = _import_submitit()
    folder = str(cfg.slurm.folder) if cfg.slurm.folder else str(out / "slurm" / "%j")
    ex = submitit.AutoExecutor(folder=folder, cluster=cfg.slurm.cluster or None)
    ex.update_parameters(**slurm_parameters(cfg, str(cfg.benchmark)))
    submitted = []
    with ex.batch():
        for j in jobs:
            submitted.append(ex.submit(_execute, j))
    by_job = {id(s): j for s, j in zip(submitted, jobs)}
    log(f"submitted {len(submitted)} cells with submitit ({getattr(ex, 'cluster', '?')}); logs in {folder}")
    poll = float(cfg.slurm.poll_seconds)
    as_completed = getattr(getattr(submitit, "helpers", None), "as_completed", None)
    if as_completed is not None:
        finished = as_completed(submitted, poll_frequency=poll)
    else:  # older submitit: poll
        def _poll():
            left = list(submitted)
            while left:
                for s in [s for s in left if s.done()]:
                    left.remove(s)
                    yield s
                if left:
                    time.sleep(poll)
        finished = _poll()
    for s in finished:
        try:
            row = s.result()
        except Exception as e:  # noqa: BLE001 - FailedJobError etc.
            fail(by_job[id(s)], e, str(e))
            continue
        record(row)


# --------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------


def _write_manifest(out: Path, cfg: DictConfig, bench: Benchmark) -> None:
    scores = [{"name": s.name, "benchmark": s.benchmark, "higher_is_better": s.higher_is_better}
              for s in bench.scores(cfg)]
    (out / "sweep.json").write_text(json.dumps({"benchmark": bench.name, "scores": scores,
                                                "config": OmegaConf.to_container(cfg, resolve=True)}, indent=2))
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg))


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
        benchmark: a name in :data:`BENCHMARKS`.
        overrides: ``key=value`` strings (see :data:`SWEEP_DEFAULTS` and the benchmark's defaults).
        on_row: called in the parent with every newly appended row (ok or skipped).

    Raises:
        SweepError: after the analysis is written, if some cells raised (rerun to retry them).
    """
    from lossnet import zoo

    cfg = load_sweep_config(benchmark, overrides)
    bench = BENCHMARKS[benchmark]
    if cfg.launcher == "slurm":
        _import_submitit()  # fail before any work
    out = Path(str(cfg.out)).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    _write_manifest(out, cfg, bench)
    table = ResultsTable(out)
    rows = table.rows()
    ok = {r["cell_id"] for r in rows if r.get("status", "ok") == "ok"}
    skipped = {r["cell_id"] for r in rows if r.get("status") == "skipped"}
    adopted = _harvest(out, table, ok)
    cells = plan(cfg, bench)
    t0 = time.perf_counter()

    def record(row: dict) -> None:
        cid = row["cell_id"]
        if row.get("status") == "ok" or cid not in skipped:
            table.append(row)
            (ok if row.get("status") == "ok" else skipped).add(cid)
        (out / "cells" / cid / "row.json").unlink(missing_ok=True)
        if not cfg.keep_checkpoints:
            remove_checkpoints(out / "cells" / cid)
        log(f"  {row['arch']}:{row['layer']}{''.join(f' {row[k]}' for k in cells_coords(row))}: "
            f"{_describe(row, bench, cfg)} ({row.get('seconds', 0):.0f} s)")
        if on_row is not None:
            on_row(row)

    todo: list[tuple[CellRequest, dict]] = []
    n_done = n_skip = 0
    status_cache: dict[str, Any] = {}
    new_skips: list[dict] = []
    for req, spec in cells:
        if req.cid in ok:
            n_done += 1
            if not cfg.keep_checkpoints:
                remove_checkpoints(out / "cells" / req.cid)
            continue
        if cfg.weights == "imagenet":
            st = status_cache.setdefault(req.arch, zoo.status(req.arch))
            if not st.available:
                n_skip += 1
                if req.cid not in skipped:
                    new_skips.append(_skipped_row(req, spec, st.reason or "no ImageNet weights on this machine"))
                continue
        todo.append((req, spec))
    log(f"sweep {benchmark} ({cfg.scale} scale) in {out}: {len(cells)} cells; {n_done} done"
        + (f" ({adopted} adopted from finished workers)" if adopted else "")
        + f", {n_skip} skipped (weights unavailable), {len(todo)} to run"
        + (f" on {cfg.jobs} local workers" if cfg.launcher == "local" and cfg.jobs > 1 else "")
        + (" with SLURM (submitit)" if cfg.launcher == "slurm" else ""))
    for row in new_skips:
        record(row)
    failures: list[tuple[str, str]] = []

    def fail(job: _Job, e: BaseException, tb: str) -> None:
        failures.append((job.request.label, f"{type(e).__name__}: {e}"))
        log(f"  FAILED {job.request.label}: {type(e).__name__}: {e}\n{tb}")

    if todo:
        bench.prepare(cfg, out)
        local_pool = cfg.launcher == "local" and int(cfg.jobs) > 1
        extra = _extra_specs(sorted({r.arch for r, _ in todo}), need_pickle=cfg.launcher == "slurm" or (
            local_pool and str(cfg.mp_context) != "fork"))
        if cfg.launcher == "slurm":
            threads = int(cfg.slurm.cpus)
        elif cfg.threads:
            threads = int(cfg.threads)
        else:
            threads = max(1, (os.cpu_count() or 1) // int(cfg.jobs)) if local_pool else None
        jobs = [_Job(r, s, bench, threads, extra) for r, s in todo]
        if cfg.launcher == "slurm":
            _run_slurm(jobs, cfg, out, record, fail)
        elif local_pool:
            _run_pool(jobs, min(int(cfg.jobs), len(jobs)), str(cfg.mp_context), record, fail)
        else:
            _run_inline(jobs, record, fail)
    log(f"sweep finished in {time.perf_counter() - t0:.0f} s; results in {table.path}")
    if cfg.report:
        path = write_analysis(out)
        log(f"analysis: {path}")
    if failures:
        raise SweepError(f"{len(failures)} cell(s) failed: " + "; ".join(f"{l} ({m})" for l, m in failures[:5])
                         + (" ..." if len(failures) > 5 else "") + f". Tracebacks above; rerun to retry them.")
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


def _sweep_dirs(path: Path) -> list[Path]:
    if is_sweep_dir(path):
        return [path]
    return sorted(p for p in path.iterdir() if p.is_dir() and is_sweep_dir(p)) if path.is_dir() else []


def write_analysis(path: str | os.PathLike, *, out: str | os.PathLike | None = None) -> Path:
    """Write the cross-analysis of one sweep directory, or of every sweep directory directly
    under ``path`` together (Table III across benchmarks), to ``analysis.md`` + ``figures/``."""
    from lossnet.report.analysis import Score, analysis_markdown

    path = Path(path)
    dirs = _sweep_dirs(path)
    if not dirs:
        raise UserError(f"{path} is not a sweep directory (no sweep.json) and holds none")
    rows, scores, per_dir = [], [], []
    for d in dirs:
        man = json.loads((d / "sweep.json").read_text())
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
    settings = sorted({f"{json.loads((d / 'sweep.json').read_text())['benchmark']} "
                       f"({json.loads((d / 'sweep.json').read_text())['config'].get('scale')} scale)" for d in dirs})
    head.insert(0, "Benchmarks: " + ", ".join(settings) + ".")
    lines = md.split("\n")
    md = "\n".join(lines[:2] + head + lines[2:])
    tmp = md_path.with_name(f".{md_path.name}.{os.getpid()}.tmp")
    tmp.write_text(md)
    os.replace(tmp, md_path)
    return md_path


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _sweep_cli(args: argparse.Namespace) -> None:
    overrides = [o for o in args.overrides if o != "--print-config"]  # the flag may come after key=value
    args.print_config = args.print_config or len(overrides) != len(args.overrides)
    bad = [o for o in overrides if o.startswith("-")]
    if bad:
        raise ConfigError(f"unknown option(s) {bad}; settings are key=value")
    args.overrides = overrides
    if args.print_config:
        print(OmegaConf.to_yaml(load_sweep_config(args.benchmark, args.overrides)), end="")
        return
    print(run_sweep(args.benchmark, args.overrides))


def _wrap_report(parser: argparse.ArgumentParser) -> None:
    """Make ``lossnet report DIR`` write the sweep analysis when DIR is (or holds) sweep directories,
    and defer to the run report otherwise."""
    original = parser.get_default("func")

    def report(args: argparse.Namespace) -> None:
        d = Path(args.dir)
        if _sweep_dirs(d) and not (d / "results.jsonl").exists() or is_sweep_dir(d):
            print(write_analysis(d, out=getattr(args, "out", None)))
        elif original is not None:
            original(args)
        else:  # pragma: no cover
            raise UserError(f"{d} is not a sweep directory")

    parser.set_defaults(func=report)
    parser.description = (parser.description or "") + (
        " For a sweep directory (lossnet sweep), or a folder holding several, writes DIR/analysis.md "
        "(Tables III/IV, correlations, Figs. 2-5) instead.")


def add_cli(sub) -> None:
    """Register ``lossnet sweep`` and ``lossnet select`` (and teach ``lossnet report`` sweep directories)."""
    s = sub.add_parser(
        "sweep", help="run a benchmark over many loss networks (resumable, parallel) + the cross-analysis",
        description="Run BENCHMARK for every (architecture, layer) cell: loss_net=all|available|a,b,c, layer=E,S,M,L, "
                    "any setting as key=value (see --print-config). Finished cells are never recomputed; cells whose "
                    "ImageNet weights are missing are recorded as skipped. jobs=N runs N local worker processes; "
                    "launcher=slurm submits a job array with submitit (slurm.partition=..., slurm.time_min=..., "
                    "slurm.gpus=...). Writes OUT/results.jsonl (+ .csv) and OUT/analysis.md + figures. Examples: "
                    "`lossnet sweep benchmark4 loss_net=alexnet,vgg16,efficientnet_lite0 jobs=2`, "
                    "`lossnet sweep benchmark1 root=shared/data/sr layer=E,L`, "
                    "`lossnet sweep benchmark4 scale=paper data_root=~/data launcher=slurm slurm.partition=gpu`.")
    s.add_argument("benchmark", help=f"one of {', '.join(sorted(BENCHMARKS))}")
    s.add_argument("overrides", nargs=argparse.REMAINDER, metavar="key=value",
                   help="e.g. loss_net=alexnet,vgg16 layer=E,L jobs=2 scale=paper out=DIR")
    s.add_argument("--print-config", action="store_true", help="print the resolved settings and exit")
    s.set_defaults(func=_sweep_cli)

    from lossnet.experiments import select

    select.add_cli(sub)

    rep = getattr(sub, "choices", {}).get("report")
    if rep is not None:
        _wrap_report(rep)
    else:  # `lossnet report` is not registered (yet): a command of our own
        r = sub.add_parser("sweep-report", help="analysis.md + figures of a sweep directory")
        r.add_argument("dir")
        r.add_argument("--out", help="analysis file (default DIR/analysis.md)")
        r.set_defaults(func=lambda a: print(write_analysis(a.dir, out=a.out)))
