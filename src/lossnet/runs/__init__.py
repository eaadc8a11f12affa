"""The run machinery every experiment and sweep shares.

* :mod:`~lossnet.runs.loop` -- the one run loop (directory + lock + config, skip done cells, run,
  append rows, report) of ``lossnet run``, ``sweep``, ``srvae`` and ``demo``;
* :mod:`~lossnet.runs.plugin` -- the one plugin type (experiments, benchmarks) and its registry;
* :mod:`~lossnet.runs.table` -- the tidy results table (``results.jsonl`` + ``results.csv``);
* :mod:`~lossnet.runs.cells` -- cell identity (how every run resumes), environment, reference rows;
* :mod:`~lossnet.runs.launch` -- running cells inline, in local worker processes, or on SLURM (submitit);
* :mod:`~lossnet.runs.loss_nets` -- the loss network of a config and its identity;
* :mod:`~lossnet.runs.encoder_cells` -- the steps of an encoder cell (paper A, paper B, benchmark 4).
"""

from lossnet.runs.cells import cell_id, environment, utc_now
from lossnet.runs.table import ResultsTable

__all__ = ["ResultsTable", "cell_id", "environment", "utc_now"]
