"""Deprecated alias: this module moved to :mod:`lossnet.benchmarks.autoencoding` (the old name keeps working)."""

import sys
import warnings

import lossnet.benchmarks.autoencoding as _moved

warnings.warn("lossnet.experiments.benchmark4 moved to lossnet.benchmarks.autoencoding; import it from there", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
