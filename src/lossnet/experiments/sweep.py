"""Deprecated alias: this module moved to :mod:`lossnet.benchmarks.sweep` (the old name keeps working)."""

import sys
import warnings

import lossnet.benchmarks.sweep as _moved

warnings.warn("lossnet.experiments.sweep moved to lossnet.benchmarks.sweep; import it from there", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
