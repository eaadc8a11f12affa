"""Nothing finished is lost or silently redone (issue 22 item 1): regression tests asserting that
the rows of a results table and a finished export survive byte for byte."""

from __future__ import annotations

import json

import pytest

from lossnet.runs.table import ResultsTable


def _row(cid: str) -> bytes:
    return json.dumps({"cell_id": cid, "experiment": "x", "score": 1.5}).encode()


def test_hostile_last_row_without_newline_is_kept(tmp_path):
    """results.jsonl whose complete last row lacks its final newline, then an append -> the row kept byte for byte, newline added"""
    t = ResultsTable(tmp_path)
    before = _row("a") + b"\n" + _row("b")  # a valid row, no final newline (an editor, a copy, `head -c`)
    t.path.write_bytes(before)
    t.append({"cell_id": "c", "experiment": "x", "score": 2.0})
    data = t.path.read_bytes()
    assert data.startswith(before + b"\n")
    assert [r["cell_id"] for r in t.rows()] == ["a", "b", "c"]
    assert not t.path.with_name("results.jsonl.torn").exists()


def test_hostile_torn_last_line_is_set_aside_not_deleted(tmp_path):
    """results.jsonl with a torn last line (a crash mid-append), then an append -> complete rows kept byte for byte, the torn bytes kept in results.jsonl.torn"""
    t = ResultsTable(tmp_path)
    good = _row("a") + b"\n" + _row("b") + b"\n"
    t.path.write_bytes(good + b'{"cell_id": "c", "sco')
    assert [r["cell_id"] for r in t.rows()] == ["a", "b"]
    t.append({"cell_id": "d", "experiment": "x"})
    assert t.path.read_bytes().startswith(good)
    assert [r["cell_id"] for r in t.rows()] == ["a", "b", "d"]
    assert t.path.with_name("results.jsonl.torn").read_bytes() == b'{"cell_id": "c", "sco\n'


@pytest.mark.parametrize("tail", [b"[1, 2]", b'"just a string"'])
def test_hostile_non_row_last_line_is_not_a_row(tmp_path, tail):
    """a last line that parses but is no object -> set aside like a torn line, complete rows kept"""
    t = ResultsTable(tmp_path)
    good = _row("a") + b"\n"
    t.path.write_bytes(good + tail)
    t.append({"cell_id": "b"})
    assert t.path.read_bytes().startswith(good)
    assert [r["cell_id"] for r in t.rows()] == ["a", "b"]


# ---------------------------------------------------------------------------------------------
# lossnet pretrain --out E: a finished export is reused or refused, never silently replaced
# ---------------------------------------------------------------------------------------------

def _pngs(folder, n, seed):
    import numpy as np
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def _snapshot(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _pretrain(images, out, *extra):
    from lossnet import cli

    return cli.main(["pretrain", "--images", str(images), "--out", str(out), "--procedure", "I-I-PW",
                     "--loss-net", "alexnet", "--layer", "E", "--epochs", "1", "--batch-size", "5", "--z", "4",
                     "--logger", "tensorboard", *extra])


@pytest.fixture
def finished(tmp_path, offline_weights):
    a = _pngs(tmp_path / "a", 10, 0)
    assert _pretrain(a, tmp_path / "E") == 0
    return a, tmp_path / "E"


def test_hostile_identical_pretrain_rerun_reuses_the_export(finished, capsys):
    """the same `lossnet pretrain` twice -> "already trained", exit 0, nothing retrained, export byte for byte"""
    a, enc = finished
    assert not (enc / ".lock").exists() and not (enc / "checkpoint").exists()
    before = _snapshot(enc)
    capsys.readouterr()
    assert _pretrain(a, enc) == 0
    assert f"already trained: {enc}; --force to retrain" in capsys.readouterr().out
    assert _snapshot(enc) == before and not (enc / ".lock").exists() and not (enc / "checkpoint").exists()


def test_hostile_pretrain_with_other_images_is_refused(finished, tmp_path, capsys):
    """`lossnet pretrain --out E` with other images or settings into a finished export -> exit 2, one line, E byte for byte"""
    _, enc = finished
    before = _snapshot(enc)
    b = _pngs(tmp_path / "b", 10, 1)
    capsys.readouterr()
    assert _pretrain(b, enc) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other images" in err[0] and "--force" in err[0] and str(enc) in err[0]
    assert _pretrain(finished[0], enc, "--seed", "3") == 2
    assert "seed 0 -> 3" in capsys.readouterr().err
    assert _snapshot(enc) == before


def test_hostile_force_replaces_atomically(finished, tmp_path, monkeypatch):
    """--force with other images: a run that fails mid-training leaves the old export byte for byte; a complete one replaces it, each epoch once in TensorBoard"""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lossnet.train.procedures import read_export

    _, enc = finished
    before = _snapshot(enc)
    b = _pngs(tmp_path / "b", 10, 1)
    monkeypatch.setenv("LOSSNET_FAULT", "epoch:1:enospc")
    assert _pretrain(b, enc, "--force") == 2
    monkeypatch.delenv("LOSSNET_FAULT")
    now = {k: v for k, v in _snapshot(enc).items() if not k.startswith("checkpoint/")}
    assert now == before  # the old export, logs included, intact
    assert _pretrain(b, enc, "--force") == 0
    cfg = read_export(enc)[1]
    assert cfg["encoder_sha256"] != json.loads(before["config.json"])["encoder_sha256"]
    assert not (enc / ".lock").exists() and not (enc / "checkpoint").exists()
    acc = EventAccumulator(str(enc / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("val_loss")] == [1]
