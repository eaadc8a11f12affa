"""Write docs/reliability.md: the bad-input / hostile-case table, generated from the tests.

Every ``test_bad_input_*`` and ``test_hostile_*`` function in ``tests/*.py`` is one row: its
docstring is ``input -> behaviour``, and the messages it asserts are the string literals of its
``pytest.raises(..., match=...)`` calls and of its ``assert "..." in ...`` checks. A test
parametrized over a module-level ``*_CASES`` list of ``(input, ..., message)`` tuples gives one row
per case. ``tests/test_reliability.py::test_reliability_table_is_current`` fails when the committed
file differs from what this script writes.

Generated families: a test function whose docstring starts with ``generated:`` (any name) is a
family of cases built by generation (``pytest.mark.parametrize`` over a computed product, or a
hypothesis ``@given`` test). Each family is one row of a second table with its description and
its number of cases, counted from the test module itself (imported with ``src/`` and ``tests/`` on
``sys.path``): the product of the lengths of its parametrize argument lists, or hypothesis'
``max_examples``.

Usage: ``python tools/reliability_table.py`` (from the repository root).
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "reliability.md"
PREFIXES = ("test_bad_input_", "test_hostile_")


def _cases(tree: ast.Module) -> dict[str, list]:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name.endswith("_CASES"):
                try:
                    out[name] = ast.literal_eval(node.value)
                except ValueError:
                    pass
    return out


def _messages(fn: ast.FunctionDef) -> list[str]:
    msgs = []
    for node in ast.walk(fn):
        if isinstance(node, ast.keyword) and node.arg == "match" and isinstance(node.value, ast.Constant):
            msgs.append(str(node.value.value))
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str) \
                and any(isinstance(op, ast.In) for op in node.ops):
            msgs.append(node.left.value)
    return list(dict.fromkeys(msgs))


def _param_cases(fn: ast.FunctionDef, cases: dict[str, list]) -> list | None:
    for dec in fn.decorator_list:
        if isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "parametrize" and len(dec.args) >= 2:
            arg = dec.args[1]
            if isinstance(arg, ast.Name) and arg.id in cases:
                return cases[arg.id]
    return None


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def collect(tests_dir: Path = REPO / "tests") -> list[tuple[str, str, str, str]]:
    """(input, behaviour, messages asserted, test) rows, in file and source order."""
    rows = []
    for path in sorted(tests_dir.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        cases = _cases(tree)
        for fn in tree.body:
            if not (isinstance(fn, ast.FunctionDef) and fn.name.startswith(PREFIXES)):
                continue
            doc = (ast.get_docstring(fn) or fn.name).strip().splitlines()[0]
            inp, _, behaviour = doc.partition(" -> ")
            where = f"`{path.name}::{fn.name}`"
            param = _param_cases(fn, cases)
            if param:
                for case in param:
                    rows.append((str(case[0]), behaviour or doc, f"`{case[-1]}`", where))
            else:
                msgs = ", ".join(f"`{m}`" for m in _messages(fn)) or "(behaviour asserted)"
                rows.append((inp, behaviour, msgs, where))
    return rows


FAMILY_TAG = "generated:"


def _count(fn) -> int | str:
    """Cases of a pytest test function: product of its parametrize lists (or hypothesis' max_examples)."""
    n = 1
    for mark in getattr(fn, "pytestmark", []):
        if mark.name == "parametrize" and len(mark.args) >= 2:
            n *= len(list(mark.args[1]))
    settings = getattr(fn, "_hypothesis_internal_use_settings", None)
    if getattr(fn, "is_hypothesis_test", False) and settings is not None:
        n *= settings.max_examples
    return n


def _import(path: Path):
    for d in (REPO / "src", path.parent):
        if str(d) not in sys.path:
            sys.path.insert(0, str(d))
    spec = importlib.util.spec_from_file_location(f"_reliability_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses in the module look themselves up here
    spec.loader.exec_module(mod)
    return mod


def families(tests_dir: Path = REPO / "tests") -> list[tuple[str, int | str, str]]:
    """(description, number of cases, test) of every generated family, in file and source order."""
    out = []
    for path in sorted(tests_dir.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        fams = [fn for fn in tree.body if isinstance(fn, ast.FunctionDef)
                and (ast.get_docstring(fn) or "").strip().startswith(FAMILY_TAG)]
        if not fams:
            continue
        mod = _import(path)
        for fn in fams:
            doc = ast.get_docstring(fn).strip().splitlines()[0][len(FAMILY_TAG):].strip()
            out.append((doc, _count(getattr(mod, fn.name)), f"`{path.name}::{fn.name}`"))
    return out


def render() -> str:
    rows = collect()
    fams = families()
    lines = ["# Reliability: bad input and hostile cases", "",
             "Generated by `python tools/reliability_table.py` from the `test_bad_input_*` / `test_hostile_*` tests "
             "(do not edit by hand; a test checks that this file is current). Each row is a case the test suite "
             "runs: the input, what lossnet does, and the message the test asserts. User errors print one "
             "`lossnet: error: ...` line and exit 2.", "",
             f"{len(rows)} cases.", "",
             "| input | behaviour | message asserted | test |", "|---|---|---|---|"]
    lines += [f"| {_cell(a)} | {_cell(b)} | {_cell(c)} | {_cell(d)} |" for a, b, c, d in rows]
    lines += ["", "## Generated families", "",
              "Tests whose docstring starts with `generated:` build their cases by generation (a product of "
              "formats x corruptions, settings x bad values, hypothesis examples) rather than by list; each "
              "family is one row with the number of cases it runs, counted from the test module.", "",
              f"{len(fams)} famil{'y' if len(fams) == 1 else 'ies'}, {sum(n for _, n, _ in fams if isinstance(n, int))} generated cases.", "",
              "| family | cases | test |", "|---|---|---|"]
    lines += [f"| {_cell(d)} | {n} | {_cell(t)} |" for d, n, t in fams]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT} ({len(collect())} rows)")
