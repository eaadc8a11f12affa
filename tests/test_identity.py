"""lossnet.utils.stable_hash: the one identity of settings (cell ids, fit config, cache keys, data files)."""

import hashlib
import json
from dataclasses import asdict

from hypothesis import given, settings
from hypothesis import strategies as st

from lossnet.runs.cells import cell_id
from lossnet.train.engine import FitConfig
from lossnet.utils import stable_hash

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                     max_leaves=8)


@settings(max_examples=60, deadline=None)
@given(spec=st.dictionaries(st.text(max_size=6), _json, max_size=5))
def test_ids_are_the_ones_written_before(spec):
    """generated: any JSON-able spec -> the ids every results table and checkpoint was written with"""
    compact = hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    spaced = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    assert cell_id(spec) == stable_hash(spec) == compact[:16]
    assert stable_hash(spec, 24, compact=False) == spaced[:24]


def test_known_ids_and_key_order():
    assert stable_hash({"b": 1, "a": [1, 2]}) == stable_hash({"a": [1, 2], "b": 1}) == \
        hashlib.sha256(b'{"a":[1,2],"b":1}').hexdigest()[:16]
    d = asdict(FitConfig())
    for k in ("device", "progress", "desc", "channels_last", "compile", "logger", "log_dir", "deterministic",
              "log_every_n_steps", "precision"):  # precision "32" is left out too
        d.pop(k)
    assert FitConfig().identity() == hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
