"""Deprecated alias: this module moved to :mod:`lossnet.benchmarks.delineation` (the old name keeps working)."""

import sys
import warnings

import lossnet.benchmarks.delineation as _moved

warnings.warn("lossnet.experiments.benchmark3 moved to lossnet.benchmarks.delineation; import it from there", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
