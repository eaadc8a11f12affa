"""Standard loggers of the training engine: ``history.csv`` and TensorBoard events.

:func:`lossnet.train.engine.fit` writes one row per epoch with :data:`COLUMNS` (``epoch``,
``train_loss``, ``val_loss``, ``lr``, ``train_seconds``, ``val_seconds``) to
``<log_dir>/history.csv`` and, with ``logger="tensorboard"``, the same numbers under the same
names (one name for one number: scalar tag ``val_loss`` is column ``val_loss``; step = ``epoch``)
to TensorBoard events in ``<log_dir>/tensorboard/``. Epochs are counted from 1 everywhere a
person reads them (logs, progress bars, messages): ``epoch`` 1 is the first epoch trained.

With ``FitConfig.log_every_n_steps = n > 0`` (default 0: off) the training loss of every n-th
optimizer step is logged too, as rows ``step, epoch, step_loss`` of ``<log_dir>/steps.csv`` and
TensorBoard scalar ``step_loss`` (step = the 1-based optimizer step).

Restart and resume: when training (re)starts, ``history.csv`` and ``steps.csv`` are rewritten
to hold exactly the epochs the checkpoint holds (none on a fresh start), and the TensorBoard
event files are deleted and rewritten from that history, so every epoch appears once in every log
(an epoch logged just before a crash and re-run after it is not duplicated, and rerunning from
scratch does not add a second event file). Logs are for watching a run; reports read the results
tables, never these files.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from lossnet.types import PathLike
from ..errors import ConfigError
from ..utils import atomic_write

LOGGERS = ("csv", "tensorboard", "none")
"""Values of ``FitConfig.logger``: ``csv`` (history.csv), ``tensorboard`` (history.csv and
TensorBoard events; needs the ``tensorboard`` package), ``none``."""

COLUMNS = ("epoch", "train_loss", "val_loss", "lr", "train_seconds", "val_seconds")
"""Columns of ``history.csv`` and scalar tags of the TensorBoard events (losses in the task's
units, times in seconds, ``epoch`` 1-based)."""

STEP_COLUMNS = ("step", "epoch", "step_loss")
"""Columns of ``steps.csv`` (with ``log_every_n_steps``): 1-based optimizer step, 1-based epoch,
training loss of that step's batch."""


def check_logger(name: str) -> None:
    """Raise :class:`ConfigError` unless ``name`` is one of :data:`LOGGERS` (and, for
    ``tensorboard``, the package is installed)."""
    if name not in LOGGERS:
        raise ConfigError(f"logger must be one of {', '.join(LOGGERS)}, got {name!r}")
    if name == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError("logger=tensorboard needs the tensorboard package: pip install tensorboard "
                              "(or use logger=csv)") from None


def _rewrite_csv(path: Path, columns, rows) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    atomic_write(path, write)


def _read_steps(path: Path, upto_epoch: int) -> list[dict]:
    """Rows of an existing ``steps.csv`` of epochs <= ``upto_epoch`` (a resumed run's)."""
    if upto_epoch <= 0 or not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [r for r in csv.DictReader(f) if r.get("epoch", "").isdigit() and int(r["epoch"]) <= upto_epoch]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []  # a log, not a result: an unreadable one is rewritten


class HistoryLogger:
    """Writes the engine's per-epoch rows (dicts with :data:`COLUMNS`) and optional per-step
    losses to ``log_dir``.

    Args:
        log_dir: directory (created); ``None`` or ``kind="none"`` logs nothing.
        kind: one of :data:`LOGGERS`.
        history: rows already trained (a resumed checkpoint's history); the logs are rewritten
            to hold exactly these before new rows are appended.
    """

    def __init__(self, log_dir: PathLike | None, kind: str = "csv", history: list[dict] = ()) -> None:
        check_logger(kind)
        self.dir = Path(log_dir) if log_dir is not None and kind != "none" else None
        self.csv_path = None if self.dir is None else self.dir / "history.csv"
        self.steps_path = None if self.dir is None else self.dir / "steps.csv"
        self.kind, self._history, self._tb, self._opened = kind, list(history), None, False
        self._steps_opened = False

    def _open(self) -> None:
        """Rewrite ``history.csv`` from the resumed history; rewrite the TensorBoard events from
        it (done at the first :meth:`log`, so a run that fails before its first epoch leaves its
        previous logs as they were)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        _rewrite_csv(self.csv_path, COLUMNS, self._history)
        if self.kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            tb_dir = self.dir / "tensorboard"
            shutil.rmtree(tb_dir, ignore_errors=True)  # one event file, each epoch once
            self._tb = SummaryWriter(str(tb_dir))
            for row in self._history:
                self._tb_row(row)
            for r in _read_steps(self.steps_path, len(self._history)):
                self._tb.add_scalar("step_loss", float(r["step_loss"]), int(r["step"]))
        self._opened = True

    def _tb_row(self, row: dict) -> None:
        for k in COLUMNS[1:]:
            if row.get(k) is not None:
                self._tb.add_scalar(k, float(row[k]), int(row["epoch"]))

    def log(self, row: dict) -> None:
        """Append one epoch's row (keys of :data:`COLUMNS`; missing ones are left empty)."""
        if self.dir is None:
            return
        if not self._opened:
            self._open()
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, COLUMNS, extrasaction="ignore").writerow(row)
        if self._tb is not None:
            self._tb_row(row)
            self._tb.flush()

    def log_step(self, step: int, epoch: int, loss: float) -> None:
        """One optimizer step's training loss (``step`` and ``epoch`` 1-based) to ``steps.csv``
        and TensorBoard scalar ``step_loss``."""
        if self.dir is None:
            return
        if not self._steps_opened:
            self.dir.mkdir(parents=True, exist_ok=True)
            _rewrite_csv(self.steps_path, STEP_COLUMNS, _read_steps(self.steps_path, epoch - 1))
            self._steps_opened = True
        with open(self.steps_path, "a", newline="") as f:
            csv.writer(f).writerow([step, epoch, loss])
        if self.kind == "tensorboard":
            if not self._opened:
                self._open()
            self._tb.add_scalar("step_loss", float(loss), int(step))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
