#!/usr/bin/env python3
"""Results tables of the docs, each produced by one command and checked for staleness.

Every table registered in :data:`TABLES` lives in its doc between two markers::

    <!-- results:NAME begin; inputs=SHA256 -->
    ... the command's markdown output and one provenance line ...
    <!-- results:NAME end -->

``python tools/results.py run [NAME ...]`` (``make results``, or ``make results TABLES="NAME ..."``)
runs each table's command, writes its output between the markers together with a provenance line
(command, commit, seeds, machine, date) and records ``inputs``: the sha256 of the files the numbers
depend on (:attr:`Table.inputs`). ``python tools/results.py check`` (and tests/test_results.py)
fails when one of those files changed after the table was generated, naming the command to rerun.
``python tools/results.py list`` shows every table with its doc and command.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Table:
    """One generated table: ``doc`` (relative to the repository) holds it between the markers;
    ``command`` prints it on stdout (its first markdown table and what follows it go into the doc);
    ``inputs``: the files whose change makes the numbers stale; ``seeds``: what was varied or fixed."""

    name: str
    doc: str
    command: tuple[str, ...]
    inputs: tuple[str, ...]
    seeds: str
    minutes: float  # cost on the quiet 2-core CPU (`run` printed it, 2026-12-04), for `list`


# What a table's numbers depend on: the files that compute them (data, models, losses, training,
# probes) and the settings (config presets). Orchestration -- the CLI, the run loop, the config
# loader, the run directory -- is left out on purpose: it decides where rows go, not their values,
# and is refactored often; a change there that changed a number would also fail its tests.
_NUMERICS = ("src/lossnet/models/autoencoder.py", "src/lossnet/losses/*.py", "src/lossnet/zoo/network.py",
             "src/lossnet/zoo/trunk.py", "src/lossnet/zoo/layers.py", "src/lossnet/train/engine.py",
             "src/lossnet/train/procedures.py", "src/lossnet/train/runtime.py", "src/lossnet/eval/probe*.py")
_LUNARLANDER = ("src/lossnet/data/lunarlander.py",)

TABLES: tuple[Table, ...] = (
    Table("lunarlander_offscreen", "docs/experiments.md",
          ("tools/lunarlander_offscreen.py", "--rollouts", "700", "700", "700", "--markdown"),
          ("src/lossnet/data/lunarlander.py", "tools/lunarlander_offscreen.py"),
          "collection seed 0 (runs use seeds 0, 1, 2); deterministic: no spread", 0.9),
    Table("demo", "README.md", ("tools/tables.py", "demo", "--seeds", "0", "1", "2"),
          ("configs/demo.yaml", "src/lossnet/experiments/demo.py", "tools/tables.py", *_LUNARLANDER, *_NUMERICS),
          "seeds 0, 1, 2 (collection, encoder, probes); std uncorrected", 8.2),
    Table("paper_b_quick", "docs/experiments.md", ("tools/tables.py", "paper_b", "--repeats", "3"),
          ("configs/paper_b.yaml", "src/lossnet/experiments/paper_b.py", "src/lossnet/runs/encoder_cells.py",
           "src/lossnet/data/parts.py", "src/lossnet/models/simple_cnn.py", "tools/tables.py", *_LUNARLANDER,
           *_NUMERICS),
          "repeats 0, 1, 2 (seeds 0-2: encoder init, batch order, splits, probes; one collection, seed 0); "
          "std uncorrected", 2.8),
    Table("autoencoding_sweep", "docs/choosing.md",
          ("tools/sweep_tables.py", "autoencoding", "--seeds", "0", "1", "2", "--loss-nets",
           "alexnet,vgg16,efficientnet_lite0"),
          ("src/lossnet/configs/autoencoding.yaml", "src/lossnet/configs/sweep.yaml",
           "src/lossnet/benchmarks/autoencoding.py", "src/lossnet/data/parts.py", "tools/sweep_tables.py",
           "tools/tables.py", *_LUNARLANDER, *_NUMERICS),
          "seeds 0, 1, 2 (the cells' seed: encoder init, splits, probes); std uncorrected", 10.6),
    Table("super_resolution_sweep", "docs/super_resolution.md",
          ("tools/sr_tables.py", "--seeds", "0", "1", "2", "--loss-nets", "alexnet,vgg16,efficientnet_lite0", "--layers", "E,L"),
          ("src/lossnet/configs/super_resolution.yaml", "src/lossnet/configs/sweep.yaml",
           "src/lossnet/benchmarks/super_resolution.py", "src/lossnet/data/sr.py", "src/lossnet/eval/sr.py",
           "src/lossnet/models/transformer.py", "tools/sr_tables.py", "tools/tables.py", *_NUMERICS),
          "seeds 0, 1, 2 (the cells' seed); std uncorrected", 7.0),
    Table("super_resolution_step_time", "docs/super_resolution.md", ("speed/sr_step_time.py", "--repeats", "3"),
          ("speed/sr_step_time.py", "src/lossnet/models/transformer.py", "src/lossnet/losses/*.py",
           "src/lossnet/zoo/network.py", "src/lossnet/zoo/trunk.py", "src/lossnet/zoo/layers.py"),
          "timings: 3 interleaved repeats of the median of 6 steps, median [range]; data from torch.manual_seed(0)", 0.4),
    Table("srvae_quick", "docs/sr_vae.md", ("tools/srvae_tables.py", "--seeds", "0", "1", "2"),
          ("src/lossnet/configs/srvae.yaml", "src/lossnet/experiments/sr_vae.py", "src/lossnet/experiments/sr_vae_data.py",
           "src/lossnet/experiments/sr_vae_task.py", "src/lossnet/models/sr_vae.py", "src/lossnet/data/sr.py",
           "src/lossnet/eval/sr.py", "src/lossnet/benchmarks/super_resolution.py", "tools/srvae_tables.py",
           "tools/sr_tables.py", "tools/tables.py", *_NUMERICS),
          "seeds 0, 1, 2 (patches, initialisation, batch order); std uncorrected", 10.3),
    Table("select_photographs", "docs/choosing.md",
          ("studies/select_photographs.py", "--seeds", "0", "1", "2", "--markdown"),
          ("studies/select_photographs.py", "src/lossnet/experiments/select.py", "src/lossnet/experiments/select_core.py",
           "src/lossnet/experiments/select_report.py", "src/lossnet/data/sr.py", "tools/tables.py", *_NUMERICS),
          "select seeds 0, 1, 2 (encoder init, split, probes; the crops fixed); std uncorrected", 0.3),
    Table("delineation_quick", "docs/delineation.md",
          ("tools/sweep_tables.py", "delineation", "--seeds", "0", "1", "2", "--loss-nets", "alexnet", "--layers", "E,L"),
          ("src/lossnet/configs/delineation.yaml", "src/lossnet/configs/sweep.yaml",
           "src/lossnet/benchmarks/delineation.py", "src/lossnet/benchmarks/delineation_task.py",
           "src/lossnet/data/roads.py", "src/lossnet/eval/delineation.py", "src/lossnet/models/unet.py",
           "tools/sweep_tables.py", "tools/tables.py", *_NUMERICS),
          "seeds 0, 1, 2 (the cells' seed: U-Net init, batch order; the synthetic images fixed); std uncorrected", 5.2),
    Table("distortion_proxy", "docs/similarity.md",
          ("studies/distortion_proxy.py", "--seeds", "0", "1", "2", "--threads", "2", "--markdown"),
          ("studies/distortion_proxy.py", "src/lossnet/eval/similarity.py", "src/lossnet/losses/*.py",
           "src/lossnet/zoo/network.py", "src/lossnet/zoo/trunk.py", "src/lossnet/zoo/layers.py"),
          "seeds 0, 1, 2 (patches, crops, triplets); std uncorrected", 3.2),
    Table("select_label_free", "docs/choosing.md",
          ("studies/select_label_free.py", "table", "--seeds", "0", "1", "2", "3", "--threads", "2",
           "--figure", "docs/figures"),
          ("studies/select_label_free.py", "src/lossnet/experiments/select.py", "src/lossnet/experiments/select_core.py",
           "src/lossnet/experiments/select_label_free.py", "src/lossnet/benchmarks/autoencoding.py",
           "src/lossnet/data/sr.py", *_LUNARLANDER, *_NUMERICS),
          "seeds 0-3 (split, encoders, probes; the frames and crops fixed); Spearman's rho over 13 candidates", 6.8),
)
BUDGET_MINUTES = 60  # `make results` regenerates every table within this on the 2-core CPU


def table(name: str) -> Table:
    for t in TABLES:
        if t.name == name:
            return t
    raise SystemExit(f"results: unknown table {name!r}; known: {', '.join(t.name for t in TABLES)}")


def input_files(t: Table, repo: Path = REPO) -> list[Path]:
    """The table's input files: each entry of :attr:`Table.inputs` is a path or a glob pattern
    (relative to the repository) that must match at least one file."""
    files = []
    for pattern in t.inputs:
        found = sorted(repo.glob(pattern))
        if not found:
            raise SystemExit(f"results: input {pattern!r} of table {t.name} matches no file; fix tools/results.py")
        files += [f for f in found if f not in files]
    return files


def inputs_digest(t: Table, repo: Path = REPO) -> str:
    """sha256 over the table's input files (path and content, in order)."""
    h = hashlib.sha256()
    for f in input_files(t, repo):
        h.update(f.relative_to(repo).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _markers(name: str) -> re.Pattern:
    return re.compile(rf"<!-- results:{re.escape(name)} begin; inputs=(?P<sha>[0-9a-f]+) -->\n"
                      rf"(?P<body>.*?)<!-- results:{re.escape(name)} end -->", re.S)


def blocks(text: str) -> list[tuple[str, str]]:
    """``[(name, recorded inputs digest)]`` of the generated blocks in a doc's text."""
    return re.findall(r"<!-- results:([\w.-]+) begin; inputs=([0-9a-f]+) -->", text)


def render(t: Table, output: str, repo: Path = REPO) -> str:
    """The block for ``output`` (the command's stdout): from its first markdown table (a line
    starting with ``|`` at the start of a paragraph) to the end, + a provenance line."""
    lines = output.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("|") and (i == 0 or not lines[i - 1].strip())]
    if not starts:
        raise SystemExit(f"results: `python {shlex.join(t.command)}` printed no markdown table")
    body = "\n".join(lines[starts[0]:])
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
               f"load average {os.getloadavg()[1]:.1f} over the last 5 min")
    prov = (f"Generated by `python tools/results.py run {t.name}` (`python {shlex.join(t.command)}`) at commit "
            f"{commit}, {when}, on {machine}; {t.seeds}.")
    return f"<!-- results:{t.name} begin; inputs={inputs_digest(t, repo)} -->\n{body}\n\n{prov}\n" \
           f"<!-- results:{t.name} end -->"


def write(t: Table, output: str, repo: Path = REPO) -> Path:
    """Replace the table's block in its doc (atomically); the doc must hold the markers once."""
    doc = repo / t.doc
    text = doc.read_text(encoding="utf-8")
    found = list(_markers(t.name).finditer(text))
    if len(found) != 1:
        raise SystemExit(f"results: {t.doc} must hold the markers of {t.name} once, found {len(found)}")
    m = found[0]
    tmp = doc.with_name(f".{doc.name}.tmp")
    tmp.write_text(text[:m.start()] + render(t, output, repo) + text[m.end():], encoding="utf-8")
    os.replace(tmp, doc)
    return doc


def stale(repo: Path = REPO) -> list[str]:
    """One line per generated block whose inputs changed, or whose name is not registered."""
    known = {t.name: t for t in TABLES}
    problems = []
    for doc in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        for name, sha in blocks(doc.read_text(encoding="utf-8")):
            rel = doc.relative_to(repo)
            if name not in known:
                problems.append(f"{rel}: table {name!r} is not registered in tools/results.py")
            elif inputs_digest(known[name], repo) != sha:
                problems.append(f"{rel}: table {name} is stale (one of {', '.join(known[name].inputs)} changed "
                                f"since it was generated); rerun `python tools/results.py run {name}`")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="regenerate tables (all without names)")
    r.add_argument("names", nargs="*")
    sub.add_parser("check", help="exit 1 when a generated table is stale")
    sub.add_parser("list", help="every table: doc, command, inputs, rough cost")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for t in TABLES:
            print(f"{t.name}: {t.doc}; python {shlex.join(t.command)}; inputs {', '.join(t.inputs)}; ~{t.minutes:g} min")
        print(f"all {len(TABLES)} tables: ~{sum(t.minutes for t in TABLES):.0f} min (budget {BUDGET_MINUTES} min)")
        return 0
    if args.cmd == "check":
        problems = stale()
        print("\n".join(problems) or "results: every generated table is current")
        return 1 if problems else 0
    for t in [table(n) for n in args.names] or list(TABLES):
        print(f"results: {t.name} (~{t.minutes:g} min on the 2-core CPU) ...", file=sys.stderr, flush=True)
        env = {**os.environ, "LOSSNET_TABLE_DIGEST": inputs_digest(t),  # tools/tables.py's work directory
               "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, *t.command], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        if out.returncode:
            raise SystemExit(f"results: {t.name}: `python {shlex.join(t.command)}` failed (exit {out.returncode})")
        print(f"results: wrote {write(t, out.stdout).relative_to(REPO)} ({(time.perf_counter() - t0) / 60:.1f} min)",
              file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
