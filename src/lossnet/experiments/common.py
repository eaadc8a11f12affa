"""Deprecated alias: the shared experiment machinery was split by concept (the old names keep working).

* results table: :mod:`lossnet.runs.table`; cell ids, environment, reference rows: :mod:`lossnet.runs.cells`;
* a dataset's three parts (:func:`load_data`): :mod:`lossnet.data.parts`;
* the loss network of a config: :mod:`lossnet.runs.loss_nets`;
* the steps of an encoder cell (:class:`RunContext`, :func:`train_and_embed`, ...): :mod:`lossnet.runs.encoder_cells`;
* :class:`ConfigError`: :mod:`lossnet.errors`; :func:`scaled_defaults`, :func:`require_dir`: :mod:`lossnet.config`.
"""

import warnings

from lossnet.config import require_dir, scaled_defaults  # noqa: F401
from lossnet.data.parts import DATASETS, ExperimentData, load_data, subset  # noqa: F401
from lossnet.errors import ConfigError  # noqa: F401
from lossnet.runs.cells import (  # noqa: F401
    cell_id,
    ensure_reference,
    environment,
    reference_rows,
    reference_table,
    remove_checkpoints,
    utc_now,
)
from lossnet.runs.encoder_cells import (  # noqa: F401
    RunContext,
    TrainedCell,
    encoder_row,
    encoder_settings,
    finish_cell,
    fmt_score,
    probe_settings,
    run_probes,
    train_and_embed,
)
from lossnet.runs.loss_nets import build_loss_net, loss_net_identity  # noqa: F401
from lossnet.runs.table import ResultsTable, flatten_row  # noqa: F401
from lossnet.train.cache import with_target_features  # noqa: F401
from lossnet.utils import log  # noqa: F401

warnings.warn("lossnet.experiments.common was split into lossnet.runs.*, lossnet.data.parts, lossnet.errors and "
              "lossnet.config; import from there", DeprecationWarning, stacklevel=2)
