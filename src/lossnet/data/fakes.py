"""Deprecated alias: this module moved to :mod:`lossnet.testing.fakes` (the old name keeps working)."""

import sys
import warnings

import lossnet.testing.fakes as _moved

warnings.warn("lossnet.data.fakes moved to lossnet.testing.fakes; import it from there", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
