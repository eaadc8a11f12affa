"""The docs as a user meets them: the index lists every doc and its links resolve, the README
links it, and the API reference renders from the docstrings with pdoc (tools/api_docs.py,
``make docs``). The Python blocks of README.md and docs/*.md run in tests/test_readme.py."""

import ast
import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _api_docs():
    spec = importlib.util.spec_from_file_location("api_docs", REPO / "tools" / "api_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_index_lists_every_doc_with_a_line_and_its_links_resolve():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    links = LINK.findall(index)
    for target in links:
        assert (DOCS / target).resolve().exists(), f"docs/index.md links to a missing {target}"
    listed = {Path(t).name for t in links if t.endswith(".md")}
    docs = {p.name for p in DOCS.glob("*.md")} - {"index.md"}
    assert docs <= listed, f"add a line to docs/index.md for {sorted(docs - listed)}"
    for name in docs:  # one line each: "- [name](name): what it is"
        line = next(ln for ln in index.splitlines() if f"]({name})" in ln)
        assert line.startswith(f"- [{name}]({name}): ") and len(line) > len(name) * 2 + 20, line


def test_readme_opens_with_make_then_a_loss_and_metric_example_and_links_the_index():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    head = readme.splitlines()[:5]
    assert any(ln.strip().startswith("make demo") for ln in head) and any(ln.strip().startswith("make test") for ln in head)
    first_block = re.search(r"```python\n(.*?)```", readme, re.S)
    assert first_block and first_block.start() < readme.index("make demo` trains")  # before the paper demo
    code = first_block.group(1)
    assert "PerceptualLoss" in code and "Metric" in code and ".backward()" in code
    assert len([ln for ln in code.splitlines() if ln.strip()]) <= 20
    assert "](docs/index.md)" in readme


def test_docs_target_and_ignore():
    make = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^docs: .*\n\t.*tools/api_docs\.py docs/api$", make, re.M)
    assert "/docs/api/" in (REPO / ".gitignore").read_text(encoding="utf-8").splitlines()


def test_public_modules_skip_private_and_deprecated_aliases():
    names = _api_docs().public_modules()
    assert names[0] == "lossnet" and names[1:] == sorted(names[1:])
    assert {"lossnet.losses", "lossnet.eval.torchmetrics", "lossnet.zoo", "lossnet.report.formatting"} <= set(names)
    assert not any(part.startswith("_") for n in names for part in n.split("."))
    src = REPO / "src"
    for path in (src / "lossnet").rglob("*.py"):
        name = ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        private = any(part.startswith("_") for part in name.split("."))
        assert (name in names) == (not private and not doc.startswith("Deprecated alias")), name


def test_api_reference_renders_without_warnings(tmp_path):
    pytest.importorskip("pdoc")
    api = _api_docs()
    assert api.build(tmp_path) == []
    pages = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.html")}
    expected = {"index.html"} | {n.replace(".", "/") + ".html" for n in api.public_modules()}
    assert pages == expected
    losses = (tmp_path / "lossnet" / "losses.html").read_text(encoding="utf-8")
    assert "PerceptualLoss" in losses and "PerceptualDistance" in losses  # docstrings rendered
    assert (tmp_path / "search.js").stat().st_size > 0


def test_api_docs_reports_import_failures_and_pdoc_warnings(tmp_path, monkeypatch, capsys):
    """A module that does not import, or one pdoc warns about, is a problem: the script exits 1."""
    pytest.importorskip("pdoc")
    api = _api_docs()
    src = tmp_path / "src"
    src.mkdir()
    (src / "h8_bad_annotation.py").write_text('"""A module."""\n\n\ndef f() -> "NoSuchType":\n    """Doc."""\n')
    monkeypatch.syspath_prepend(str(src))
    monkeypatch.setattr(api, "public_modules", lambda: ["lossnet.errors", "lossnet.no_such_module", "h8_bad_annotation"])
    out = tmp_path / "api"
    assert api.main([str(out)]) == 1
    err = capsys.readouterr().err
    assert "cannot document lossnet.no_such_module" in err and "NoSuchType" in err, err
    assert (out / "lossnet" / "errors.html").exists()  # the rest still renders
