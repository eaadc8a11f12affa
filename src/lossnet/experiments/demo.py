"""The main job (``lossnet demo``): pixel-wise vs perceptual vs feature-prediction pretraining.

End to end on a freshly generated LunarLander collection (papers A/B in miniature):

1. generate the collection (run 1: encoder training; run 2: probe training; run 3: test);
2. compute the loss network's features of run 1 once (AlexNet up to the 2nd ReLU + sigmoid);
3. train I-I-PW, I-I-PS and I-F-FP encoders (z = 64) with the one training engine;
4. embed runs 2 and 3, fit the paper-B probe grid on run 2, test the best probe on run 3;
5. print and write the results: ``results.json`` (one row per procedure, + run metadata),
   ``results.md``, ``reconstructions_<procedure>.png`` (original vs reconstruction) and
   ``error_vs_time.png``.

Each procedure is a cell of the run loop (:mod:`lossnet.runs.loop`): its row is appended to
``results.jsonl`` / ``results.csv`` as soon as it finishes, and a rerun with the same settings
(:func:`cell_setting`) does not train it again. Everything else is cached or checkpointed under
``--out``: rerunning resumes where it stopped.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lossnet.errors import ConfigError
from lossnet import config

SCALES = {k: dict(v) for k, v in config.load("demo").scales.items()}
"""Per-scale values of the unset settings: ``scales`` in ``configs/demo.yaml``."""


def load_config(overrides=()):
    """``configs/demo.yaml`` < ``key=value`` overrides (checked against the file's keys); the
    scale's values fill the settings left null. Returns the resolved :class:`DemoConfig`."""
    from omegaconf import OmegaConf

    base = config.load("demo")
    over = config.parse_overrides(list(overrides), base, "demo")
    plain = OmegaConf.masked_copy(base, [k for k in base.keys() if k not in config.PRESET_KEYS])
    merged = OmegaConf.merge(plain, over)
    config.validate("demo", merged)  # the whole resolved config, before any work
    d = asdict(config.typed("demo", merged))  # every value of its declared type (precision=32 -> "32")
    d["procedures"] = tuple(d["procedures"])
    if d.get("rollouts") is not None:
        d["rollouts"] = tuple(d["rollouts"])
    return DemoConfig(**d).resolved()


@dataclass
class DemoConfig:
    """Settings of ``lossnet demo``; ``scale`` fills the unset ones from :data:`SCALES`."""

    out: str = "demo_out"
    scale: str = "quick"
    procedures: tuple[str, ...] = ("I-I-PW", "I-I-PS", "I-F-FP")
    z: int = 64
    seed: int = 0
    rollouts: tuple[int, int, int] | None = None
    epochs: int | None = None
    probe_epochs: int | None = None
    batch_size: int | None = None
    lr: float = 1e-3
    workers: int | None = None
    device: str | None = None
    progress: bool = True
    precision: str = "32"
    channels_last: bool = False
    compile: bool = False
    logger: str = "csv"
    extra: dict = field(default_factory=dict)

    def resolved(self) -> "DemoConfig":
        if self.scale not in SCALES:
            raise ConfigError(f"scale must be one of {', '.join(SCALES)}, got {self.scale!r}")
        d = asdict(self)
        for k, v in SCALES[self.scale].items():
            if d[k] is None:
                d[k] = v
        d["rollouts"] = tuple(d["rollouts"])
        d["procedures"] = tuple(d["procedures"])
        return DemoConfig(**d)


def run_demo(cfg: DemoConfig) -> list[dict]:
    """Run the demo; returns the result rows (also written to ``cfg.out``). Holds the lock of
    ``cfg.out`` (:mod:`lossnet.runs.lock`) while it runs; a procedure whose row is already in
    ``results.jsonl`` is not trained again (the run loop, :mod:`lossnet.runs.loop`)."""
    from lossnet.runs.loop import run_directory

    with run_directory(Path(cfg.resolved().out), what="demo output directory"):
        return _run_demo_locked(cfg)


def cell_setting(cfg: DemoConfig) -> dict:
    """What determines a procedure's row besides its name (its ``cell_id`` hashes this + the name)."""
    keep = ("z", "seed", "rollouts", "epochs", "probe_epochs", "batch_size", "lr", "precision", "extra")
    return {"experiment": "demo", "loss_net": "paper", **{k: v for k, v in asdict(cfg).items() if k in keep}}


def _run_demo_locked(cfg: DemoConfig) -> list[dict]:
    from lossnet.data.lunarlander import generate_collection, load_run
    from lossnet.runs.cells import cell_id, utc_now
    from lossnet.runs.loop import Cell, final_report, run_cells
    from lossnet.runs.table import ResultsTable
    from lossnet.train.cache import FeatureCache
    from lossnet.train.procedures import get_procedure
    from lossnet.zoo import LossNetwork

    cfg = cfg.resolved()
    for p in cfg.procedures:
        get_procedure(p)
    out = Path(cfg.out)
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)

    loss_net = LossNetwork("paper")  # fails early, with instructions, if the weights are missing
    say(f"[1/4] LunarLander collection: rollouts {cfg.rollouts} x 150 steps -> {out / 'lunarlander'}")
    t0 = time.perf_counter()
    coll = generate_collection(out / "lunarlander", n_rollouts=cfg.rollouts, seed=cfg.seed, workers=cfg.workers,
                               progress=cfg.progress)
    collection_seconds = time.perf_counter() - t0
    runs = {r: load_run(coll, r) for r in (1, 2, 3)}
    say(f"      run 1: {len(runs[1])} frames (encoders), run 2: {len(runs[2])} (probes), run 3: {len(runs[3])} (test)")

    cache = FeatureCache(directory=out / "features", progress=cfg.progress)
    say("[2/4] teacher features of all runs (computed once, cached)")
    feats = {r: cache.get(runs[r].images, loss_net) for r in (1, 2, 3)}

    setting = cell_setting(cfg)
    cells = [Cell(cell_id({**setting, "procedure": name}), name, i) for i, name in enumerate(cfg.procedures)]
    slowest = [0.0]  # seconds of the slowest procedure so far (for the ETA)

    def run_one(cell: Cell) -> dict:
        t_proc = time.perf_counter()
        row = {"cell_id": cell.cid, **_procedure_row(cfg, cell.label, cell.item, loss_net, cache, runs, feats, out),
               "timestamp": utc_now()}
        slowest[0] = max(slowest[0], time.perf_counter() - t_proc)
        say("      " + _eta(cell.label, row["test_error_px"], cell.item + 1, len(cells),
                            time.perf_counter() - t_start, slowest[0]))
        return row

    table = ResultsTable(out)
    run_cells(table, cells, run_one, describe=lambda r: f"test error {r['test_error_px']:.2f} px",
              header=lambda res, n: f"demo in {out}: {res.planned} procedures, {res.done_before} already in "
                                    f"{table.path}, {n} to train")
    last = {r.get("cell_id"): r for r in table.rows()}
    rows = [last[c.cid] for c in cells if c.cid in last]
    total = time.perf_counter() - t_start
    meta = {"config": asdict(cfg), "collection_seconds": collection_seconds, "total_seconds": total,
            "frames": {r: len(runs[r]) for r in (1, 2, 3)}, "torch": torch.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads(),
            "device": cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")}
    final_report(lambda: _write_outputs(out, rows, meta), what="results")
    return rows


def say(*a) -> None:
    """A step message on stdout (``--no-progress`` hides only the bars)."""
    print(*a, flush=True)


def _procedure_row(cfg: DemoConfig, name: str, i: int, loss_net, cache, runs, feats, out: Path) -> dict:
    """Train procedure ``name`` (the ``i``-th), fit the probe grid on its embeddings, save its
    reconstructions; its result row."""
    from lossnet.eval.probes import fit_probe_grid
    from lossnet.train.engine import FitConfig
    from lossnet.train.procedures import EncoderConfig, get_procedure, train_encoder

    say(f"[3/4] encoder {i + 1}/{len(cfg.procedures)}: {name}, z={cfg.z}, {cfg.epochs} epochs")
    fit_cfg = FitConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                        device=cfg.device, progress=cfg.progress, desc=name, precision=cfg.precision,
                        channels_last=cfg.channels_last, compile=cfg.compile, logger=cfg.logger)
    trained = train_encoder(runs[1].images, EncoderConfig(procedure=name, z=cfg.z), fit_cfg, loss_net=loss_net,
                            cache=cache, ckpt_dir=out / "checkpoints" / name)
    trained.export(out / "encoders" / name)
    emb = {r: trained.embed(runs[r].images, feats[r]) for r in (2, 3)}
    say(f"[4/4] probe grid (paper B, 7 MLPs, {cfg.probe_epochs} epochs) on {name} embeddings")
    grid = fit_probe_grid(emb[2], runs[2].positions, emb[3], runs[3].positions, task="regression",
                          grid="paper_b", epochs=cfg.probe_epochs, seed=cfg.seed, progress=cfg.progress)
    res = trained.result
    if get_procedure(name).decoder == "image":
        pick = torch.linspace(0, len(runs[3]) - 1, 8).long()  # spread over the test run
        _save_reconstructions(trained, runs[3].images[pick], out / f"reconstructions_{name}.png")
    return {
        "procedure": name,
        "test_error_px": grid.test_metric,
        "probe": grid.selected_name,
        "epoch_seconds": res.epoch_seconds,
        "precision": fit_cfg.precision,
        "train_seconds": sum(h["train_seconds"] for h in res.history),
        "total_seconds": res.total_seconds,
        "best_epoch": res.best_epoch,
        "epochs": len(res.history),
        "best_val_loss": res.best_val,
        "val_loss_history": [h["val_loss"] for h in res.history],
        "z": cfg.z,
        "seed": cfg.seed,
    }


def _eta(name: str, error: float, done: int, total: int, elapsed: float, slowest: float) -> str:
    """One progress line after a procedure: its error, the elapsed time (s) and an ETA that assumes
    each remaining procedure costs what the slowest finished one did (``slowest``, s)."""
    left = (total - done) * slowest
    tail = f"; about {left:.0f} s left" if done < total else "; done"
    return f"{name}: test error {error:.2f} px; {elapsed:.0f} s elapsed{tail}"


def _save_reconstructions(trained, images: torch.Tensor, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = trained.model.eval()
    dev = next(model.parameters()).device
    with torch.no_grad():
        recon = model(images.to(dev).float() / 255)[0].cpu()
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 2.9))
    for j in range(n):
        axes[0, j].imshow(images[j].permute(1, 2, 0).numpy())
        axes[1, j].imshow(recon[j].permute(1, 2, 0).clamp(0, 1).numpy())
        for a in axes[:, j]:
            a.set_xticks([])
            a.set_yticks([])
    axes[0, 0].set_ylabel("original")
    axes[1, 0].set_ylabel(trained.procedure)
    fig.suptitle(f"{trained.procedure}: test frames and reconstructions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_outputs(out: Path, rows: list[dict], meta: dict) -> Path:
    """``results.json`` (rows + meta), ``results.md`` and ``error_vs_time.png``; returns ``results.md``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (out / "results.json").write_text(json.dumps({"rows": rows, "meta": meta}, indent=2))
    md = ["| procedure | test error (px) | probe | epoch time (s) | training time (s) | best epoch |",
          "| --- | ---: | --- | ---: | ---: | ---: |"]
    for r in rows:
        md.append(f"| {r['procedure']} | {r['test_error_px']:.2f} | {r['probe']} | {r['epoch_seconds']:.1f} | "
                  f"{r['total_seconds']:.1f} | {r['best_epoch'] + 1} |")  # epochs counted from 1
    md.append("")
    md.append(f"LunarLander frames: {meta['frames']}; total wall time {meta['total_seconds']:.0f} s on "
              f"{meta['device']} ({meta['threads']} threads).")
    (out / "results.md").write_text("\n".join(md) + "\n")

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for r in rows:
        ax[0].scatter(r["total_seconds"], r["test_error_px"], s=60, label=r["procedure"])
        ax[0].annotate(r["procedure"], (r["total_seconds"], r["test_error_px"]), textcoords="offset points",
                       xytext=(5, 5))
        v = r["val_loss_history"]
        ax[1].plot(range(1, len(v) + 1), [x / v[0] for x in v], marker="o", label=r["procedure"])
    ax[0].set_xlabel("encoder training time (s)")
    ax[0].set_ylabel("test position error (px)")
    ax[0].set_title("error vs training time")
    ax[0].set_ylim(bottom=0)
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel("validation loss / first epoch's")
    ax[1].set_title("convergence")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(out / "error_vs_time.png", dpi=110)
    plt.close(fig)
    return out / "results.md"


def format_table(rows: list[dict]) -> str:
    """The demo's console table."""
    lines = [f"{'procedure':<10}{'test error (px)':>17}{'epoch time (s)':>16}{'total time (s)':>16}  probe"]
    for r in rows:
        lines.append(f"{r['procedure']:<10}{r['test_error_px']:>17.2f}{r['epoch_seconds']:>16.1f}"
                     f"{r['total_seconds']:>16.1f}  {r['probe']}")
    return "\n".join(lines)
