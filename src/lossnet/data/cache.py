"""Deprecated alias: this module moved to :mod:`lossnet.train.cache` (the old name keeps working)."""

import sys
import warnings

import lossnet.train.cache as _moved

warnings.warn("lossnet.data.cache moved to lossnet.train.cache; import it from there", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
