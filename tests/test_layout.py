"""The package layout: layers, configs, and a CLI that imports lazily."""

import ast
import importlib
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lossnet import config
from lossnet.cli import main


def test_lossnet_help_imports_no_torch():
    code = ("import sys; from lossnet.cli import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'omegaconf')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_errors_module_is_a_leaf():
    src = importlib.import_module("lossnet.errors").__file__
    text = open(src).read()
    assert "import lossnet" not in text and "from lossnet" not in text
    from lossnet.errors import ConfigError, UserError

    assert issubclass(ConfigError, UserError) and issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("old", ["lossnet.experiments.benchmark2", "lossnet.experiments.benchmark3",
                                 "lossnet.experiments.benchmark4", "lossnet.experiments.common",
                                 "lossnet.experiments.sweep", "lossnet.data.cache", "lossnet.data.fakes",
                                 "lossnet.data.fakes_bapps", "lossnet.metrics"])
def test_old_module_paths_are_gone(old):
    assert importlib.util.find_spec(old) is None


def test_no_alias_modules_and_no_layer_exceptions():
    import lossnet

    src = Path(lossnet.__file__).parent
    aliases = [p.relative_to(src) for p in src.rglob("*.py") if "DeprecationWarning" in p.read_text()]
    assert aliases == []
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    for contract in pyproject["tool"]["importlinter"]["contracts"]:
        assert not contract.get("ignore_imports"), contract["name"]


@pytest.mark.parametrize("name", ["paper_a", "paper_b", "similarity", "super_resolution", "delineation", "autoencoding",
                                  "srvae", "demo", "sweep"])
def test_every_config_file_loads_with_scales(name):
    cfg = config.load(name)
    if name != "sweep":
        assert set(cfg.scales) >= {"quick", "paper"}
        assert "scales" not in config.scaled(name, "paper")


@pytest.mark.parametrize("argv, expect", [
    (["run", "paper_b", "--print-config"], "procedures:"),
    (["sweep", "similarity", "--print-config"], "n_patches: 32"),
    (["sweep", "super_resolution", "scale=paper", "--print-config"], "scale: paper"),
    (["sweep", "delineation", "--print-config"], "iterations:"),
    (["sweep", "autoencoding", "--print-config"], "dataset"),
    (["srvae", "--print-config"], "factors:"),
    (["demo", "epochs=3", "--print-config"], "epochs: 3"),
])
def test_print_config_for_every_command(argv, expect, capsys):
    assert main(argv) == 0
    assert expect in capsys.readouterr().out


def test_unknown_setting_is_one_line_naming_the_valid_keys(capsys):
    assert main(["demo", "epoch=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown setting 'epoch'" in err[0] and "epochs" in err[0]


def test_version(capsys):
    from lossnet import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"lossnet {__version__}"


def test_one_pathlike_alias():
    """the path type is written once, in lossnet.types (a leaf), and used from there"""
    import re

    import lossnet
    from lossnet.types import PathLike

    src = Path(lossnet.__file__).parent
    defs = [p.relative_to(src).as_posix() for p in src.rglob("*.py")
            if re.search(r"^PathLike\s*=", p.read_text(), re.M)]
    assert defs == ["types.py"] and PathLike.__args__[0] is str
    text = (src / "types.py").read_text()
    assert "import lossnet" not in text and "from lossnet" not in text


def test_torchmetrics_classes_live_under_eval_and_in_the_top_level_exports():
    import lossnet
    from lossnet.eval import torchmetrics as tm

    for name in ("PerceptualDistanceMetric", "DeepPerceptualSimilarity", "SuperResolutionScores", "SRPSNR", "SRSSIM",
                 "DelineationScores"):
        assert getattr(lossnet, name) is getattr(tm, name)


_CASTS = {"int", "str", "float", "bool"}
_CONFIG_NAMES = {"cfg", "c", "bcfg", "dcfg", "config", "sec", "section", "settings"}
"""Names a config object goes by (also any ``*_cfg``)."""


def _through_config(node) -> bool:
    """Whether ``node`` reads a value out of a config object: ``cfg.x``, ``ctx.cfg.x``, ``cfg["x"]``,
    ``cfg.get("x")``, ``ln_cfg.x.y`` (the config itself, ``str(cfg)``, is no read)."""
    names, read = [], False
    while True:
        if isinstance(node, ast.Attribute):
            names.append((node.attr, read))
            node, read = node.value, True
        elif isinstance(node, ast.Subscript):
            node, read = node.value, True
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            node, read = node.func.value, True
        else:
            break
    if isinstance(node, ast.Name):
        names.append((node.id, read))
    return any(r and (n in _CONFIG_NAMES or n.endswith("_cfg")) for n, r in names)


def test_no_inline_config_casts():
    """Settings are read typed (lossnet.config.typed / the schema sections), never cast where used:
    no ``int(cfg.x)``, ``str(cfg.get("x"))``, ``bool(ctx.cfg.x)`` ... outside the loader
    (``config.py``) and the schemas (``schema/``)."""
    import lossnet

    src = Path(lossnet.__file__).parent
    found = []
    for p in sorted(src.rglob("*.py")):
        rel = p.relative_to(src).as_posix()
        if rel == "config.py" or rel.startswith("schema/"):
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CASTS
                    and len(node.args) == 1 and _through_config(node.args[0])):
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    assert found == []
