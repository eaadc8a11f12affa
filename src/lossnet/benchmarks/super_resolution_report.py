"""Benchmark 2's report (:mod:`lossnet.benchmarks.super_resolution`): the loss networks next to
bicubic and pixel loss, one table per factor, with crops of the example images."""

from __future__ import annotations

from pathlib import Path

import torch

from lossnet.benchmarks.super_resolution import METRICS, NAME, _factors, _root, _sets, score_name
from lossnet.config import typed
from lossnet.errors import ConfigError
from lossnet.runs.cells import reference_rows
from lossnet.runs.table import read_sweep_manifest


def _example_images(cfg) -> list[tuple[str, str]]:
    return [tuple(e.split("/", 1)) for e in cfg.examples if "/" in e]


def sr_crops_figure(cfg, factor: int, columns: list[tuple[str, Path]], path: Path, title: str) -> Path | None:
    """Input (nearest-neighbour enlarged) / model outputs / target crops of the ``examples`` test
    images (central ``crop`` px). ``cfg``: typed settings with ``examples``, ``sr_root``, ``crop``,
    ``blur_sigma``, ``antialias`` (:class:`~lossnet.schema.files.Benchmark2` or ``SrVae``).
    ``columns``: (title, folder holding the saved outputs ``<set>_<name>_x<factor>.png``, as
    :func:`evaluate` writes them). None when nothing was saved."""
    from lossnet.data.sr import (
        center_patch,
        degrade,
        image_files,
        modcrop,
        read_image,
        resolve_test_set,
    )
    from lossnet.report.figures import image_grid

    size = cfg.crop
    grid, names = [], []
    for key, name in _example_images(cfg):
        files = [(t, Path(d) / f"{key}_{name}_x{factor}.png") for t, d in columns]
        if not any(f.exists() for _, f in files):
            continue
        try:
            folder = resolve_test_set(_root(cfg.sr_root, "sr_root"), key)
        except (FileNotFoundError, ConfigError):
            continue
        file = next((p for p in image_files(folder) if p.stem == name), None)
        if file is None:
            continue
        hr = modcrop(read_image(file), factor)
        lr = degrade(hr.float().div(255)[None], factor, cfg.blur_sigma, antialias=cfg.antialias)
        lr_big = torch.nn.functional.interpolate(lr, scale_factor=factor, mode="nearest")[0]
        row = [(f"input (x{factor} nearest)", center_patch(lr_big.mul(255).round().to(torch.uint8), size))]
        row += [(t, center_patch(read_image(f), size) if f.exists() else None) for t, f in files]
        row.append(("target", center_patch(hr, size)))
        grid.append(row)
        names.append(f"{key}/{name}")
    if not grid:
        return None
    return image_grid(grid, path, row_labels=names, title=title)


def crops_figure(out: Path, cfg, labels: list[str], factor: int, path: Path, max_models: int = 6) -> Path | None:
    """The benchmark's crops: bicubic, pixel and up to ``max_models`` loss networks (the PNGs the
    cells saved under ``out/examples/<label>/``); ``cfg``: the typed benchmark-2 settings."""
    cols = ["bicubic", "pixel"] + [lab for lab in labels if lab not in ("bicubic", "pixel")][:max_models]
    return sr_crops_figure(cfg, factor, [(":".join(lab.rsplit("_", 1)) if lab not in ("bicubic", "pixel") else lab,
                                          Path(out) / "examples" / lab) for lab in cols], path,
                           f"x{factor} super-resolution, central {cfg.crop}px crops")


def report_section(out: Path, rows: list[dict], figures: Path, md_dir: Path) -> str:
    """Markdown: per factor, PSNR/SSIM of every finished cell next to the reference rows, and the crops figure."""
    import os as _os

    from lossnet.report.tables import md_table

    out = Path(out)
    man = read_sweep_manifest(out)
    cfg = typed(NAME, man["config"])  # the settings the sweep ran with, typed
    refs = reference_rows(out)
    ok = [r for r in rows if r.get("status", "ok") == "ok"]
    lines = ["## Benchmark 2: super-resolution next to the references", "",
             f"Test PSNR (dB) / SSIM, {cfg.eval.colour.upper() if cfg.eval.colour == 'y' else 'RGB'} channel"
             f"{'s' if cfg.eval.colour == 'rgb' else ''}, {('factor' if cfg.eval.border is None else cfg.eval.border)}"
             "-pixel border removed, 8-bit outputs (docs/super_resolution.md). Bicubic: upsampling of the degraded input; "
             "pixel: the transformation network trained with MSE (Johnson et al.'s baseline). Sorted by the first "
             "column; bold: better than bicubic.", ""]
    for factor in _factors(cfg):
        cols = [score_name(s, m, factor) for s in _sets(cfg) for m in METRICS]
        bic = next((r for r in refs if r["reference"] == "bicubic" and r["factor"] == factor), None)
        entries = [(r["reference"], r) for r in refs if r["factor"] == factor]
        entries += [(f"{r['arch']}:{r['layer']}", r) for r in ok if int(r.get("factor", factor)) == factor]
        if not entries:
            continue
        entries.sort(key=lambda e: -(e[1].get(cols[0]) or float("-inf")))

        def cell(r, c):
            v = r.get(c)
            if v is None:
                return "-"
            s = f"{v:.2f}" if "psnr" in c else f"{v:.3f}"
            return f"**{s}**" if bic is not None and r is not bic and bic.get(c) is not None and v > bic[c] else s

        lines += [f"### x{factor}", "", md_table(["model"] + cols, [[lab] + [cell(r, c) for c in cols]
                                                                     for lab, r in entries]), ""]
        collapsed = [lab for lab, r in entries if (r.get("details") or {}).get("collapsed")]
        if collapsed:
            lines += [f"Collapsed during training (best validation PSNR < 10 dB): {', '.join(collapsed)}.", ""]
        labels = [f"{r['arch']}_{r['layer']}" for _, r in entries if "arch" in r]
        fig = crops_figure(out, cfg, labels, factor, Path(figures) / f"super_resolution_crops_x{factor}.png")
        if fig is not None:
            lines += [f"![x{factor} crops]({Path(_os.path.relpath(fig, md_dir)).as_posix()})", ""]
    return "\n".join(lines)
