"""Deprecated alias: this module moved to :mod:`lossnet.benchmarks.super_resolution` (the old name keeps working)."""

import sys
import warnings

import lossnet.benchmarks.super_resolution as _moved

warnings.warn("lossnet.experiments.benchmark2 moved to lossnet.benchmarks.super_resolution; import it from there", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
