"""Standard per-epoch loggers of the training engine: ``history.csv`` and TensorBoard events.

:func:`lossnet.train.engine.fit` writes one row per epoch (``epoch``, ``train_loss``,
``val_loss``, ``lr``, ``train_seconds``, ``val_seconds``) to ``<log_dir>/history.csv`` and, with
``logger="tensorboard"``, also as scalars ``train/loss``, ``val/score``, ``lr``,
``time/train_seconds``, ``time/val_seconds`` (step = epoch) to TensorBoard event files in
``<log_dir>/tensorboard/``. Logs are for watching a run; reports read the results tables, never
these files.

Resume: the CSV is rewritten from the checkpoint's history when training starts, then one row is
appended per epoch, so it always holds each epoch once (an epoch logged just before a crash and
re-run after it is not duplicated). TensorBoard writers are opened with ``purge_step`` = the
first epoch to run, so TensorBoard drops events of epochs re-run after an interruption.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..errors import ConfigError

LOGGERS = ("csv", "tensorboard", "none")
"""Values of ``FitConfig.logger``: ``csv`` (history.csv), ``tensorboard`` (history.csv and
TensorBoard events; needs the ``tensorboard`` package), ``none``."""

COLUMNS = ("epoch", "train_loss", "val_loss", "lr", "train_seconds", "val_seconds")
"""Columns of ``history.csv`` (losses in the task's units, times in seconds)."""

_TB_TAGS = {"train_loss": "train/loss", "val_loss": "val/score", "lr": "lr", "train_seconds": "time/train_seconds",
            "val_seconds": "time/val_seconds"}


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


class HistoryLogger:
    """Writes the engine's per-epoch history rows (dicts with :data:`COLUMNS`) to ``log_dir``.

    Args:
        log_dir: directory (created); ``None`` or ``kind="none"`` logs nothing.
        kind: one of :data:`LOGGERS`.
        history: rows already trained (a resumed checkpoint's history); ``history.csv`` is
            rewritten to hold exactly these before new rows are appended.
    """

    def __init__(self, log_dir: str | os.PathLike | None, kind: str = "csv", history: list[dict] = ()) -> None:
        check_logger(kind)
        self.dir = Path(log_dir) if log_dir is not None and kind != "none" else None
        self.csv_path = None if self.dir is None else self.dir / "history.csv"
        self.kind, self._history, self._tb, self._opened = kind, list(history), None, False

    def _open(self) -> None:
        """Rewrite ``history.csv`` from the resumed history; open the TensorBoard writer (done
        at the first :meth:`log`, so a run that fails before its first epoch leaves no files)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.csv_path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
            w.writeheader()
            w.writerows(self._history)
        os.replace(tmp, self.csv_path)
        if self.kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            start = len(self._history)
            self._tb = SummaryWriter(str(self.dir / "tensorboard"), purge_step=start if start else None)
        self._opened = True

    def log(self, row: dict) -> None:
        """Append one epoch's row (keys of :data:`COLUMNS`; missing ones are left empty)."""
        if self.dir is None:
            return
        if not self._opened:
            self._open()
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, COLUMNS, extrasaction="ignore").writerow(row)
        if self._tb is not None:
            for k, tag in _TB_TAGS.items():
                if row.get(k) is not None:
                    self._tb.add_scalar(tag, float(row[k]), int(row["epoch"]))
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
