"""The command line's boundary: internal errors, help on every flag, --out/out=, --json, light listing commands."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from lossnet import cli, schema
from lossnet.cli import build_parser, main


def _subparsers(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, prefix + (name,))
    if prefix:
        yield prefix, parser


def test_every_flag_of_every_command_has_help_and_no_default_none_noise():
    for path, parser in _subparsers(build_parser()):
        text = parser.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text, path
        for a in parser._actions:
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                assert a.help, (path, a.option_strings or a.dest)


@pytest.mark.parametrize("command", sorted(schema.COMMANDS))
def test_flag_defaults_are_the_schema_defaults(command):
    """Each default is written once: a flag's parsed default equals its schema field's default."""
    from dataclasses import MISSING, fields

    parser = dict(_subparsers(build_parser()))[tuple(command.split())]
    dests = {a.dest: a for a in parser._actions}
    for f in fields(schema.COMMANDS[command]):
        if f.name in dests and dests[f.name].option_strings and not dests[f.name].required:
            want = f.default_factory() if f.default_factory is not MISSING else f.default
            assert dests[f.name].default == want, (command, f.name)


def test_unexpected_exception_is_one_line_exit_1_and_a_log(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LOSSNET_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LOSSNET_DEBUG", raising=False)

    def boom(args):
        raise KeyError("surprise")

    monkeypatch.setattr(cli, "_report", boom)
    (tmp_path / "r").mkdir()
    assert main(["report", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error" in err[0] and "please report" in err[0] and "Traceback" not in err[0]
    logs = list((tmp_path / "home" / "logs").glob("internal-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err[0]
    assert "Traceback" in logs[0].read_text() and "surprise" in logs[0].read_text()
    monkeypatch.setenv("LOSSNET_DEBUG", "1")
    assert main(["report", str(tmp_path / "r")]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_a_bare_value_error_is_internal_not_user_fixable(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LOSSNET_HOME", str(tmp_path / "home"))

    def bug(args):
        raise ValueError("a bug deep inside")

    monkeypatch.setattr(cli, "_report", bug)
    assert main(["report", str(tmp_path)]) == 1
    assert "internal error" in capsys.readouterr().err


@pytest.mark.parametrize("argv,dest,value", [
    (["pretrain", "--images", "I", "out=E"], "out", "E"),
    (["embed", "ENC", "--images", "I", "out=e.npy"], "out", "e.npy"),
    (["select", "--images", "I", "out=S"], "out", "S"),
    (["report", "R", "out=r.md"], "out", "r.md"),
    (["data", "lunarlander", "out=C"], "out", "C"),
])
def test_out_as_key_value_on_flag_commands(argv, dest, value):
    from lossnet.schema.flags import normalize_out

    assert getattr(build_parser().parse_args(normalize_out(argv)), dest) == value


@pytest.mark.parametrize("command", [["run", "paper_b"], ["sweep", "similarity"], ["srvae"]])
def test_out_flag_on_key_value_commands(command, capsys, tmp_path):
    assert main([*command, "--out", str(tmp_path / "x"), "--print-config"]) == 0
    assert f"out: {tmp_path / 'x'}" in capsys.readouterr().out


def test_report_json_and_what_it_expects(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "expected a run directory" in capsys.readouterr().err
    d = tmp_path / "run"
    d.mkdir()
    (d / "results.jsonl").write_text("")
    assert main(["report", str(d), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"report": str(d / "report.md")}


def test_pretrain_json_is_one_object_on_stdout(tmp_path, offline_weights, capsys):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    assert main(["pretrain", "--images", str(folder), "out=" + str(tmp_path / "enc"), "--procedure", "I-I-PW",
                 "--z", "4", "--epochs", "1", "--batch-size", "4", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["out"] == str(tmp_path / "enc") and got["config"]["encoder"]["z"] == 4 and got["config"]["image_size"] == 64


def test_precision_16_mixed_needs_cuda(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present: 16-mixed is valid here")
    assert main(["pretrain", "--images", str(tmp_path), "--out", str(tmp_path / "e"), "--precision", "16-mixed"]) == 2
    assert "16-mixed needs CUDA" in capsys.readouterr().err and not (tmp_path / "e").exists()


def _zoo_is_lazy() -> bool:
    code = "import sys, lossnet.zoo; print('torchvision' in sys.modules)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize("argv", [["weights", "list"], ["zoo"], ["zoo", "--json"]])
def test_listing_commands_do_not_import_torchvision(argv):
    if not _zoo_is_lazy():
        pytest.skip("lossnet.zoo still imports its networks eagerly (made lazy by the zoo's owner)")
    code = (f"import sys; from lossnet.cli import main; rc = main({argv!r}); "
            "print('TV', 'torchvision' in sys.modules, rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "TV False 0"


def test_cli_experiment_names_are_the_registered_experiments():
    """cli.py names the experiments without importing them (the parser stays light): the same names."""
    from lossnet import cli
    from lossnet.experiments.runner import EXPERIMENTS

    assert set(cli.EXPERIMENTS) == set(EXPERIMENTS)
