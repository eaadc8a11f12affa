"""Render the API reference (HTML) from the docstrings with pdoc: ``make docs`` -> ``docs/api/``.

    python tools/api_docs.py [OUT_DIR]        # default docs/api (git-ignored)

Documents every public module of the package (names without a leading underscore), skipping the
deprecated alias modules (a docstring starting "Deprecated alias"). Docstrings are read as
Google style. Exits 1 on a problem (a module that fails to import, a pdoc warning such as an
annotation it cannot resolve), printing one line each, so that tests/test_docs.py catches it.
"""

from __future__ import annotations

import ast
import pkgutil
import importlib
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def public_modules() -> list[str]:
    """Dotted names of lossnet's public modules, sorted (the package first): every module without a
    leading underscore in its name, except the deprecated aliases (docstring "Deprecated alias")."""
    import lossnet

    names = ["lossnet"]
    for info in pkgutil.walk_packages(lossnet.__path__, "lossnet."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        origin = info.module_finder.find_spec(info.name).origin  # the file (an alias may replace itself on import)
        if not source_doc(Path(origin)).startswith("Deprecated alias"):
            names.append(info.name)
    return sorted(names)


def source_doc(path: Path) -> str:
    """The module docstring of the Python file ``path``, read without importing it ("" if none)."""
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""


def build(out: Path) -> list[str]:
    """Write the HTML reference under ``out`` (``index.html``, ``search.js``, one page per module of
    :func:`public_modules`); returns the problems (a module that fails to import, pdoc's warnings)
    as ``"Category: message"`` lines, empty when clean.

    The loop of ``pdoc.pdoc`` over an explicit module list: ``pdoc.pdoc("lossnet")`` would follow
    the package's ``__all__`` and skip the submodules."""
    import pdoc.doc
    import pdoc.render

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pdoc.render.configure(docformat="google", footer_text="lossnet API reference", search=True)
    names = public_modules()  # imports everything first: the package's own warnings are not pdoc's
    for n in names:  # names a package loads on first use (lossnet.zoo's __getattr__) are resolved for pdoc
        try:
            mod = importlib.import_module(n)
        except Exception:  # noqa: BLE001 - reported by the loop below
            continue
        for attr in getattr(mod, "__all__", ()):
            getattr(mod, attr, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        modules, failed = {}, []
        for n in names:
            try:
                modules[n] = pdoc.doc.Module.from_name(n)
            except Exception as e:  # noqa: BLE001 - reported as a problem, the rest still renders
                failed.append(f"{type(e).__name__}: cannot document {n}: {e}")
        for name, module in modules.items():
            page = out / f"{name.replace('.', '/')}.html"
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(pdoc.render.html_module(module, modules), encoding="utf-8")
        (out / "index.html").write_text(pdoc.render.html_index(modules), encoding="utf-8")
        (out / "search.js").write_text(pdoc.render.search_index(modules), encoding="utf-8")
    return failed + [f"{w.category.__name__}: {w.message}" for w in caught if "pdoc" in (w.filename or "")]


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else REPO / "docs" / "api"
    problems = build(out)
    for p in problems:
        print(p, file=sys.stderr)
    print(f"API reference: {out / 'index.html'}" + (f" ({len(problems)} problems)" if problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
