"""The one run loop of every command that fills a results table (``lossnet run``, ``lossnet sweep``,
``lossnet srvae``, ``lossnet demo``).

The skeleton, in order:

1. :func:`run_directory` -- the output directory made (and checked writable), its lock held for
   the whole command (:func:`lossnet.runs.lock.run_lock`) and the resolved config files written
   (rank 0 only under ``torchrun``);
2. :func:`run_cells` -- the plan (a list of :class:`Cell`, each with its id,
   :func:`lossnet.runs.cells.cell_id`), the cells whose id is already done skipped (by default the
   ids of the results table, rank 0's view broadcast so every rank skips the same cells), the rest
   run (inline, or through a launcher such as :func:`lossnet.runs.launch.run_pool`), every row
   appended to the :class:`~lossnet.runs.table.ResultsTable` as soon as its cell finishes, one
   progress line per cell;
3. :func:`final_report` -- the report, written once, by rank 0.

An interrupted command therefore resumes where it stopped: finished cells have their row and are
not recomputed; a half-trained cell resumes from its own engine checkpoint.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from lossnet import distributed
from lossnet.runs.lock import run_lock
from lossnet.runs.table import ResultsTable
from lossnet.utils import atomic_write, ensure_writable_dir, is_fs_error, log

__all__ = ["Cell", "LoopResult", "final_report", "run_cells", "run_directory"]

Record = Callable[[dict], None]
Fail = Callable[["Cell", BaseException, str], None]


@dataclass(frozen=True)
class Cell:
    """One unit of work of a run: ``cid`` (the ``cell_id`` its row carries), ``label`` (for
    progress lines) and ``item`` (whatever ``run_one`` needs: coordinates, a request, ...)."""

    cid: str
    label: str
    item: Any = None


@dataclass
class LoopResult:
    """What :func:`run_cells` did: ``planned`` cells, ``done_before`` (skipped: already done),
    ``screened`` (recorded without running, e.g. weights missing), ``rows`` appended now (in
    order) and ``failures`` (label, one-line message) of cells that raised under a launcher."""

    planned: int = 0
    done_before: int = 0
    screened: int = 0
    rows: list[dict] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


@contextmanager
def run_directory(out: str | os.PathLike, *, what: str = "out", files: Mapping[str, str] | None = None,
                  command: str | None = None) -> Iterator[Path]:
    """Hold run directory ``out`` for the ``with`` block: created and checked writable (one
    :class:`~lossnet.errors.UserError` naming ``what`` otherwise), locked against a second
    command, and ``files`` (name -> text, e.g. ``{"config.yaml": ...}``) written atomically by rank 0."""
    d = ensure_writable_dir(Path(out), what)
    with run_lock(d, command):
        if distributed.is_main():
            for name, text in (files or {}).items():
                atomic_write(d / name, text)
        yield d


def _inline(run_one: Callable[[Cell], dict | list[dict] | None], started: dict[str, float]):
    def launch(todo: Sequence[Cell], record: Record, fail: Fail) -> None:  # errors propagate: the command stops
        for cell in todo:
            started[cell.cid] = time.perf_counter()
            rows = run_one(cell)
            for row in [] if rows is None else [rows] if isinstance(rows, dict) else rows:
                record(row)
    return launch


def run_cells(table: ResultsTable, cells: Sequence[Cell], run_one: Callable[[Cell], dict | list[dict] | None] | None
              = None, *, done: set[str] | None = None, screen: Callable[[Cell], dict | None] | None = None,
              launch: Callable[[Sequence[Cell], Record, Fail], None] | None = None,
              keep: Callable[[dict], bool] | None = None, tidy: Callable[[str], None] | None = None,
              describe: Callable[[dict], str] | None = None, on_row: Callable[[dict], None] | None = None,
              header: Callable[[LoopResult, int], str] | None = None) -> LoopResult:
    """Run every cell of ``cells`` whose id is not in ``done``, appending its row(s) to ``table``.

    Args:
        table: the results table rows are appended to (rank 0 writes under ``torchrun``).
        cells: the plan, in running order (a repeated id runs once).
        run_one: ``Cell -> row | [rows] | None`` for the default inline launcher; its exceptions
            stop the loop (finished rows stay appended, so a rerun resumes).
        done: ids to skip (default: the table's ids, rank 0's view on every rank); the ids of
            appended rows are added to it.
        screen: ``Cell -> row | None`` before running: a row is recorded instead of running the
            cell (e.g. ``status: skipped`` when its weights are missing).
        launch: ``(todo, record, fail)`` runs the remaining cells some other way (local workers,
            SLURM); it calls ``record(row)`` per finished cell and ``fail(cell, error, traceback)``
            per failed one (collected in :attr:`LoopResult.failures`; the loop goes on).
        keep: ``row -> bool``, whether a recorded row is new (default: all); a row that is not is
            dropped (not appended, tidied, logged or passed to ``on_row``).
        tidy: ``cid -> None``, run by rank 0 on every done cell and after every appended row (e.g.
            delete engine checkpoints).
        describe: ``row -> str`` for the progress line ``[i/n] label: ... (seconds)``.
        on_row: called with every newly appended row.
        header: ``(counts so far, cells to run) -> str``, the first progress line.
    """
    if run_one is None and launch is None:
        raise TypeError("run_cells needs run_one or launch")
    main = distributed.is_main()
    if done is None:
        done = distributed.broadcast_object(table.ids())  # every rank skips the same cells
    by_id: dict[str, Cell] = {}
    for c in cells:  # a cell planned twice (e.g. z=[64,64]) runs once
        by_id.setdefault(c.cid, c)
    cells = list(by_id.values())
    res = LoopResult(planned=len(cells))
    position = {c.cid: i for i, c in enumerate(cells, start=1)}
    started: dict[str, float] = {}
    tolerant = launch is not None

    def record(row: dict) -> None:
        cid = row["cell_id"]
        cell = by_id.get(cid, Cell(cid, cid))
        if keep is not None and not keep(row):
            return  # e.g. the skipped row of a cell recorded as skipped before: nothing new
        try:
            table.append(row)
        except OSError as e:
            if not (tolerant and is_fs_error(e)):
                raise
            # e.g. a full disk: this cell fails (a launcher's saved row is adopted next time)
            res.failures.append((cell.label, f"{type(e).__name__}: {e}"))
            log(f"  FAILED {cell.label}: cannot append its row: {e}")
            return
        done.add(cid)
        res.rows.append(row)
        if main and tidy is not None:
            tidy(cid)
        seconds = row.get("seconds")
        if not isinstance(seconds, (int, float)):
            seconds = time.perf_counter() - started.get(cid, time.perf_counter())
        text = describe(row) if describe is not None else "done"
        log(f"[{position.get(cid, '?')}/{len(cells)}] {cell.label}: {text} ({seconds:.0f} s)")
        if on_row is not None:
            on_row(row)

    def fail(cell: Cell, e: BaseException, where: str) -> None:
        what = (f"{type(e).__name__}: {e}".splitlines() or [""])[0][:200]
        res.failures.append((cell.label, f"{what}; {where}" if where else what))
        log(f"  FAILED {cell.label}: {what}" + (f"; {where}" if where else ""))

    todo: list[Cell] = []
    screened: list[dict] = []
    for cell in cells:
        if cell.cid in done:
            res.done_before += 1
            if main and tidy is not None:  # a kill between the row and the tidying
                tidy(cell.cid)
            continue
        row = screen(cell) if screen is not None else None
        if row is not None:
            res.screened += 1
            screened.append(row)
            continue
        todo.append(cell)
    log(header(res, len(todo)) if header is not None else
        f"{len(cells)} cells, {res.done_before} already in {table.path}, {len(todo)} to run")
    for row in screened:
        record(row)
    if todo:
        if launch is None:
            launch = _inline(run_one, started)
        launch(todo, record, fail)
    return res


def final_report(write: Callable[[], Path], *, enabled: bool = True, what: str = "report") -> Path | None:
    """Write the report once (rank 0 only; ``write() -> path``) and log its path; None elsewhere."""
    if not enabled or not distributed.is_main():
        return None
    from lossnet.utils import fault_point

    fault_point("report")
    path = write()
    log(f"{what}: {path}")
    return path
