"""Fuzz the one validated boundary: every setting of every command, generated from the schemas.

Walks every leaf of every config schema (``run paper_a|paper_b``, ``sweep similarity|super_resolution|delineation|autoencoding``,
``srvae``, ``demo``: ``key=value``) and every flag of the commands without a config file
(``pretrain``, ``select``, ``embed``, ``data lunarlander``, ``report``, and ``demo``'s shorthand
flags), and feeds hypothesis-generated out-of-range, wrong-type, empty, NaN/inf and huge values.
Each must give exit 2, one stderr line naming the key (or flag), no traceback, nothing written and
no work started (the commands' work functions are replaced by a tripwire).
"""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path
from typing import Any, List, get_args, get_origin

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from lossnet import cli, schema  # noqa: E402
from lossnet.schema.fields import _unwrap  # noqa: E402

CONFIG_COMMANDS = {"paper_a": ["run", "paper_a"], "paper_b": ["run", "paper_b"], "srvae": ["srvae"], "demo": ["demo"],
                   **{b: ["sweep", b] for b in ("similarity", "super_resolution", "delineation", "autoencoding")}}
"""Config schema name -> the command line that loads it."""
FLAG_COMMANDS = {"pretrain": ["pretrain"], "select": ["select"], "embed": ["embed"],
                 "data lunarlander": ["data", "lunarlander"], "report": ["report"]}
FREE_TEXT_KEYS = {"out"}  # any path is a valid output folder name
SETTINGS = settings(max_examples=int(os.environ.get("LOSSNET_FUZZ_EXAMPLES", 250)), deadline=None, derandomize=os.environ.get("LOSSNET_FUZZ_RANDOM") is None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class WorkStarted(AssertionError):
    """Raised by the tripwires: a bad value got past the boundary."""


# --------------------------------------------------------------------------------------------
# Bad values, generated from a field's type and declared range or choices
# --------------------------------------------------------------------------------------------


def _bounds(m: dict):
    lo = m.get("ge") if m.get("ge") is not None else m.get("gt")
    hi = m.get("le") if m.get("le") is not None else m.get("lt")
    return lo, hi


def _out_of_range(tp, m: dict) -> st.SearchStrategy:
    """Numbers outside the field's range (huge ones included), as Python numbers."""
    lo, hi = _bounds(m)
    options = []
    if tp is int:
        if lo is not None:
            options.append(st.integers(max_value=int(math.ceil(lo)) - 1, min_value=-10**30))
        if hi is not None:
            options.append(st.integers(min_value=int(hi) + 1, max_value=10**30))
    else:
        if lo is not None:
            options.append(st.floats(max_value=float(lo), exclude_max=m.get("ge") is not None, min_value=-1e300))
        if hi is not None:
            options.append(st.floats(min_value=float(hi), exclude_min=m.get("le") is not None, max_value=1e300))
    return st.one_of(*options) if options else st.nothing()


def _not_a_choice(m: dict) -> st.SearchStrategy:
    ok = set(m.get("choices") or ())
    pat = m.get("pattern")
    return st.text(st.characters(whitelist_categories=("Lu", "Ll", "Nd")), min_size=1, max_size=12).filter(
        lambda s: s not in ok and not (pat and re.fullmatch(pat, s)) and s.lower() not in ("null", "true", "false",
                                                                                           "nan", "inf"))


def _numeric_text(v, flag: bool) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v) if flag else (".nan" if math.isnan(v) else ("-.inf" if v < 0 else ".inf"))
    return repr(v) if isinstance(v, float) else str(v)


def bad_values(tp, f, flag: bool) -> st.SearchStrategy:
    """Strings that must be rejected for field ``f`` of type ``tp`` (``flag``: as a CLI flag value,
    else as the value of ``key=value``); ``st.nothing()`` where any string is valid."""
    base, nullable = _unwrap(tp)
    m = f.metadata
    nan_inf = st.sampled_from([float("nan"), float("inf"), float("-inf")])
    if get_origin(base) in (list, List):
        (elem,) = get_args(base) or (Any,)
        if elem in (int, float):
            bad = st.one_of(_out_of_range(elem, m), nan_inf) if elem is float else _out_of_range(elem, m)
            bad = bad.map(lambda v: _numeric_text(v, flag))
        elif m.get("choices"):
            bad = _not_a_choice(m)
        else:
            return st.nothing()
        if flag:  # nargs="+": too few or too many values, or one bad value
            lo, hi = m.get("min_len", 1), m.get("max_len")
            counts = st.just(["1"] * (lo - 1)) if lo > 1 else st.nothing()
            many = st.just(["1"] * (hi + 1)) if hi and hi != lo else st.nothing()  # nargs=N: extras are settings
            return st.one_of(bad.map(lambda b: [b] * max(lo, 1)), counts.filter(bool), many)
        empty = st.just("[]") if m.get("min_len", 1) > 0 else st.nothing()
        return st.one_of(bad.map(lambda b: f"[{b}]"), empty, st.just("{a: 1}"))
    if base is bool:
        return st.nothing() if flag else st.sampled_from(["maybe", "2", "[true]", "{a: 1}"])
    if base in (int, float):
        wrong = st.sampled_from(["abc", "[1, 2]", "{a: 1}", "1.5" if base is int else "fast", "true"])
        if flag:
            wrong = st.sampled_from(["abc", "", "1.5" if base is int else "fast", "0x1g"])
        nums = st.one_of(_out_of_range(base, m), nan_inf if base is float else st.nothing())
        empty = st.just("") if not nullable and not flag else st.nothing()
        return st.one_of(nums.map(lambda v: _numeric_text(v, flag)), wrong, empty)
    if m.get("choices") or m.get("pattern"):
        return st.one_of(_not_a_choice(m), st.just("{a: 1}") if not flag else st.just(""))
    if base is str and f.name not in FREE_TEXT_KEYS:
        return st.just("{a: 1}") if not flag else st.just("")
    return st.nothing()


# --------------------------------------------------------------------------------------------
# Cases: every key of every config schema, every flag of every command
# --------------------------------------------------------------------------------------------


def _config_cases():
    for name, argv in CONFIG_COMMANDS.items():
        for key, tp, f in schema.leaves(schema.SCHEMAS[name]):
            if key.rsplit(".", 1)[-1] not in FREE_TEXT_KEYS and not bad_values(tp, f, False).is_empty:
                yield name, argv, key, tp, f


def _flag_actions(argv: list[str]) -> dict[str, argparse.Action]:
    parser = cli.build_parser()
    for word in argv:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return {a.dest: a for a in parser._actions if a.option_strings}


def _flag_cases():
    commands = {**FLAG_COMMANDS, "demo": ["demo"]}
    for name, argv in commands.items():
        s = schema.COMMANDS.get(name) or schema.SCHEMAS[name]
        actions = _flag_actions(argv)
        for key, tp, f in schema.leaves(s):
            if "." in key or key not in actions or key in FREE_TEXT_KEYS or bad_values(tp, f, True).is_empty:
                continue
            yield name, argv, actions[key].option_strings[-1], tp, f


CONFIG_CASES = list(_config_cases())
FLAG_CASES = list(_flag_cases())
REQUIRED = {"pretrain": ["--images", "I", "--out", "{out}"], "select": ["--images", "I", "--out", "{out}"],
            "embed": ["ENC", "--images", "I", "--out", "{out}/e.npy"], "data lunarlander": ["--out", "{out}"],
            "report": ["R"], "demo": ["--out", "{out}"]}


def test_the_walk_covers_every_command_and_many_keys():
    assert {c[0] for c in CONFIG_CASES} == set(CONFIG_COMMANDS)
    assert {c[0] for c in FLAG_CASES} >= {"pretrain", "select", "data lunarlander", "demo"}
    assert len(CONFIG_CASES) > 300 and len(FLAG_CASES) > 40


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """cwd and ``$LOSSNET_HOME`` in ``tmp_path``; every command's work replaced by a tripwire."""
    from lossnet.benchmarks import sweep
    from lossnet.experiments import demo, runner, sr_vae

    def trip(*a, **k):
        raise WorkStarted("a bad value got past the boundary")

    monkeypatch.setattr(runner, "run_experiment", lambda e, o: (runner.load_config(e, o), trip()))
    monkeypatch.setattr(sweep, "run_sweep", lambda b, o: (sweep.load_sweep_config(b, o), trip()))
    monkeypatch.setattr(sr_vae, "run_sr_vae", lambda o: (sr_vae.load_config(o), trip()))
    monkeypatch.setattr(demo, "run_demo", trip)
    for name in ("_pretrain", "_select", "_embed", "_data_lunarlander", "_report"):
        monkeypatch.setattr(cli, name, trip)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("LOSSNET_HOME", str(tmp_path / "home"))
    return work


def _assert_rejected(argv: list[str], needles: tuple[str, ...], work: Path, capsys) -> None:
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse's own errors (one line, see OneLineParser)
        rc = e.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (argv, rc, err)
    assert len(lines) == 1 and "Traceback" not in err, (argv, err)
    assert any(n in lines[0] for n in needles), (argv, needles, lines[0])
    assert not any(work.iterdir()), (argv, list(work.iterdir()))


@SETTINGS
@given(data=st.data())
def test_bad_key_value_settings_are_one_line_exit_2(data, sandbox, capsys):
    name, argv, key, tp, f = data.draw(st.sampled_from(CONFIG_CASES), label="case")
    value = data.draw(bad_values(tp, f, False), label="value")
    _assert_rejected([*argv, f"out={sandbox / 'out'}", f"{key}={value}"], (key,), sandbox, capsys)


@SETTINGS
@given(data=st.data())
def test_bad_flags_are_one_line_exit_2(data, sandbox, capsys):
    name, argv, flag, tp, f = data.draw(st.sampled_from(FLAG_CASES), label="case")
    value = data.draw(bad_values(tp, f, True), label="value")
    required = [a.replace("{out}", str(sandbox / "out")) for a in REQUIRED[name]]
    given_flag = [flag, *value] if isinstance(value, list) else [f"{flag}={value}"]
    # demo's flags are shorthands for its settings: the error names the setting
    _assert_rejected([*argv, *required, *given_flag], (flag, f.name), sandbox, capsys)
