"""Reports from results tables: markdown tables (:mod:`.tables`) and PNG figures (:mod:`.figures`).

:func:`write_report` turns a run directory's ``results.jsonl`` into ``report.md`` and
``figures/*.png`` (``lossnet report DIR``; ``lossnet run`` calls it at the end). Rows are grouped
by experiment, dataset and *setting* (the hash of everything the cells of one sweep share), so a
directory that holds sweeps with different settings reports them separately instead of mixing them.
"""

from __future__ import annotations

import os
from pathlib import Path

from lossnet.types import PathLike
from lossnet.utils import atomic_write
from lossnet.report.tables import (
    DATASET_LABELS,
    group_rows,
    load_rows,
    paper_a_markdown,
    paper_b_markdown,
)

__all__ = ["write_report", "load_rows"]


def _settings_note(rows: list[dict]) -> str:
    cfg = (rows[0].get("config") or {}).get("spec", {}).get("setting", {})
    enc, probe = cfg.get("encoder", {}), cfg.get("probe", {})
    data = cfg.get("data", {})
    ln = cfg.get("loss_net", {})
    parts = [f"encoder {enc.get('epochs')} epochs, batch {enc.get('batch_size')}, lr {enc.get('lr')}",
             f"probes `{probe.get('grid')}`" + (f" + `{probe.get('linear_grid')}`" if probe.get("linear_grid") else "")
             + f", {probe.get('epochs')} epochs",
             f"images encoder/probe/test {data.get('n_encoder')}/{data.get('n_probe')}/{data.get('n_test')}",
             f"loss network {ln.get('arch')} {ln.get('nodes')} sigmoid={ln.get('sigmoid')} weights={ln.get('weights')}"]
    if cfg.get("decoder"):
        parts.append(f"decoder retraining {cfg['decoder'].get('epochs')} epochs ({cfg['decoder'].get('init')})")
    devices = sorted({str(r.get("device")) for r in rows})
    parts.append(f"device {', '.join(devices)}")
    return "; ".join(parts) + "."


def write_report(run_dir: PathLike, *, out: PathLike | None = None,
                 figures: bool = True) -> Path:
    """Write ``report.md`` (or ``out``) and ``figures/*.png`` for ``run_dir/results.jsonl``; returns
    the report's path."""
    from lossnet.report import figures as figs

    run_dir = Path(run_dir)
    rows = load_rows(run_dir, required=("cell_id", "experiment", "dataset"))
    report = Path(out) if out is not None else run_dir / "report.md"
    fig_dir = report.parent / "figures"
    lines = [f"# lossnet report: {run_dir}", ""]
    if not rows:
        lines.append("No finished cells yet.")
        return atomic_write(report, "\n".join(lines) + "\n")
    v = rows[-1]
    lines.append(f"{len(rows)} finished cells; lossnet {v.get('lossnet_version')}, torch {v.get('torch_version')}; "
                 f"last row {v.get('timestamp')}. Columns of the results table: docs/experiments.md.")
    groups = group_rows(rows, ["experiment", "dataset", "setting_id"])
    multi = {}
    for (exp, ds, _), g in groups.items():
        multi[(exp, ds)] = multi.get((exp, ds), 0) + 1
    for (exp, ds, sid), g in groups.items():
        tag = f" (setting {sid})" if multi[(exp, ds)] > 1 else ""
        stem = f"{exp}_{ds}" + (f"_{sid}" if tag else "")
        title = {"paper_b": "Paper B: six pretraining procedures", "paper_a": "Paper A: PW vs PS autoencoders"}
        lines += ["", f"## {title.get(exp, exp)} — {DATASET_LABELS.get(ds, ds)}{tag}", "", _settings_note(g), ""]
        if exp == "paper_b":
            lines.append(paper_b_markdown(g))
            g = [r for r in g if not r.get("baseline")]  # figures: the encoder procedures
            if figures and g:
                run_cfg = (g[0].get("config") or {}).get("run", {})
                cz = (run_cfg.get("figures") or {}).get("convergence_z")
                made = [figs.performance_vs_time(g, fig_dir / f"{stem}_score_vs_epoch_time.png",
                                                 time_key="epoch_seconds"),
                        figs.performance_vs_time(g, fig_dir / f"{stem}_score_vs_total_time.png",
                                                 time_key="train_seconds"),
                        figs.convergence(g, fig_dir / f"{stem}_convergence.png", z=cz)]
                lines += ["", "Figures (thesis Figs. 6-8: score vs time per epoch and vs total training time; "
                          "Fig. 9: convergence):", ""]
                lines += [f"![{p.stem}]({os.path.relpath(p, report.parent)})" for p in made]
        elif exp == "paper_a":
            lines.append(paper_a_markdown(g))
            if figures:
                p = figs.score_vs_z(g, fig_dir / f"{stem}_score_vs_z.png")
                lines += ["", f"![{p.stem}]({os.path.relpath(p, report.parent)})"]
                rec = figs.reconstructions(g, run_dir, fig_dir / f"{stem}_reconstructions.png")
                if rec is not None:
                    lines += ["", "Fig. 5 analogue: test images and their reconstructions before / after the "
                              "decoder is retrained with pixel-wise loss:", "",
                              f"![{rec.stem}]({os.path.relpath(rec, report.parent)})"]
        else:
            lines.append(f"({len(g)} rows of an experiment this report does not know.)")
    report.parent.mkdir(parents=True, exist_ok=True)

    return atomic_write(report, "\n".join(lines) + "\n")
