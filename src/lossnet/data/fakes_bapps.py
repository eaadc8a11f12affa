"""Deprecated alias: this module moved to :mod:`lossnet.testing.bapps` (the old name keeps working)."""

import sys
import warnings

import lossnet.testing.bapps as _moved

warnings.warn("lossnet.data.fakes_bapps moved to lossnet.testing.bapps; import it from there", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
