"""Reliability: stale state, one writer per run directory, workers that die with their parent, GPU
assignment, file-system errors, bad input, and fault injection (SIGKILL at named points of a tiny
``lossnet run paper_b``, then a rerun whose results equal an uninterrupted run's).

``test_bad_input_*`` / ``test_hostile_*`` tests and the ``*_CASES`` tables feed
``docs/reliability.md`` (``tools/reliability_table.py``; :func:`test_reliability_table_is_current`).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lossnet.cli import main as cli_main
from lossnet.errors import UserError
from lossnet.runs.table import ResultsTable

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
ENV.pop("LOSSNET_FAULT", None)
TINY = ["lunarlander.rollouts=[2,2,2]", "lunarlander.steps=60", "data.max_encoder=32", "data.max_probe=24",
        "data.max_test=24", "encoder.epochs=2", "encoder.batch_size=16", "encoder.hidden=64", "probe.epochs=3",
        "probe.batch_size=16", "threads=1", "progress=false", "loss_net.weights=random",
        "baseline.simple_cnn=false"]  # paper B's Simple-CNN cells are tested in test_experiments


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    lines = [ln for ln in err if ln.startswith("lossnet: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # zombies are dead, just not reaped
    except FileNotFoundError:
        return False


# --------------------------------------------------------------------------------------------
# 1. Stale state: checkpoints are keyed on everything that changes the result
# --------------------------------------------------------------------------------------------


def _tiny_images(seed: int, n: int = 12) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_hostile_checkpoint_of_other_images_is_not_resumed(tmp_path, capfd):
    """second pretrain into the same directory with other images -> starts fresh, "changed: data" on stderr"""
    from lossnet.train.engine import FitConfig
    from lossnet.train.procedures import EncoderConfig, train_encoder
    from lossnet.zoo import LossNetwork

    torch.manual_seed(0)
    net = LossNetwork("alexnet", layers=["E"], weights=None)
    cfg, fit = EncoderConfig("I-I-PW", z=8), FitConfig(epochs=2, batch_size=6, progress=False)
    a = train_encoder(_tiny_images(0), cfg, fit, loss_net=net, ckpt_dir=tmp_path)
    assert (tmp_path / "last.pt").exists() and a.result.resumed_from == 0
    same = train_encoder(_tiny_images(0), cfg, fit, loss_net=net, ckpt_dir=tmp_path)
    assert same.result.resumed_from == 2  # the same run resumes (nothing left to train)
    capfd.readouterr()
    other = train_encoder(_tiny_images(1), cfg, fit, loss_net=net, ckpt_dir=tmp_path)
    assert other.result.resumed_from == 0
    err = capfd.readouterr().err
    assert "not resuming" in err and "changed: data" in err
    # other procedure settings or loss network: also fresh, and the message names what changed
    capfd.readouterr()
    z16 = train_encoder(_tiny_images(1), EncoderConfig("I-I-PW", z=16), fit, loss_net=net, ckpt_dir=tmp_path)
    assert z16.result.resumed_from == 0 and "changed: model" in capfd.readouterr().err


def test_hostile_unreadable_checkpoint_starts_fresh(tmp_path, capfd):
    """a truncated last.pt -> "cannot be read", training starts from scratch (no traceback)"""
    from lossnet.train.engine import FitConfig, fit

    class Task(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def loss(self, b):
            return ((b["x"] - self.w) ** 2).mean()

    (tmp_path / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    r = fit(Task(), {"x": torch.randn(20, 1)}, FitConfig(epochs=1, batch_size=5, progress=False), ckpt_dir=tmp_path)
    assert r.resumed_from == 0 and len(r.history) == 1
    assert "cannot be read" in capfd.readouterr().err


# --------------------------------------------------------------------------------------------
# 2. One writer per run directory
# --------------------------------------------------------------------------------------------

_HOLDER = """
import sys, time
from lossnet.runs.lock import run_lock
with run_lock(sys.argv[1], command="holder-command"):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def held_dir(tmp_path):
    """A run directory whose lock a live subprocess holds."""
    d = tmp_path / "held"
    p = subprocess.Popen([sys.executable, "-c", _HOLDER, str(d)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    yield d, p
    p.kill()
    p.wait(10)


def test_hostile_second_writer_exits_at_once(held_dir, capsys, sr_dir, tmp_path):
    """a second command on a run directory in use -> exit 2 at once, one line naming the holder (pid, host, command)"""
    d, p = held_dir
    img = tmp_path / "img"
    img.mkdir()
    commands = [["run", "paper_b", f"out={d}", *TINY], ["sweep", "similarity", f"out={d}", f"root={sr_dir}"],
                ["srvae", f"out={d}", f"sr_root={sr_dir}"], ["demo", "--out", str(d)],
                ["pretrain", "--images", str(img), "--out", str(d)]]
    for argv in commands:
        t0 = time.perf_counter()
        assert cli_main(argv) == 2, argv
        line = _one_error_line(capsys)
        assert "is in use by another lossnet command" in line and f"pid {p.pid}" in line, line
        assert "holder-command" in line and "choose another output directory" in line
        assert time.perf_counter() - t0 < 20
    assert not (d / "results.jsonl").exists()


def test_hostile_dead_holder_lock_is_taken_over(tmp_path, capfd):
    """the lock of a SIGKILLed command -> taken over with a warning that its metadata was stale"""
    from lossnet.runs.lock import holder, run_lock

    d = tmp_path / "dead"
    p = subprocess.Popen([sys.executable, "-c", _HOLDER, str(d)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    assert holder(d)["pid"] == p.pid  # the metadata outlives its process
    with run_lock(d, command="me"):
        assert holder(d)["pid"] == os.getpid()
        with run_lock(d):  # re-entrant in one process
            pass
    err = capfd.readouterr().err
    assert "taking over the lock" in err and f"pid {p.pid}" in err and "stale" in err
    assert holder(d) is None  # a clean exit leaves no metadata


# --------------------------------------------------------------------------------------------
# 3 + 4. Local workers die with their parent; each gets its own GPU
# --------------------------------------------------------------------------------------------

_SLOW_BENCH = """
import os, time
from pathlib import Path

class SlowBench:
    def __init__(self, d):
        self.d = d

    def run(self, req):
        Path(self.d, f"{os.getpid()}.pid").write_text(os.environ.get("CUDA_VISIBLE_DEVICES", ""))
        time.sleep(120)
        return {"scores": {}}
"""

_POOL_PARENT = """
import sys
sys.path.insert(0, sys.argv[2])
from slowbench import SlowBench
from lossnet.runs.launch import CellRequest, Job, run_pool
jobs = [Job(CellRequest("b", {}, "alexnet", "E", {}, f"c{i}", sys.argv[1], 0, "random", 0, f"c{i}"), {},
            SlowBench(sys.argv[1]), 1) for i in range(4)]
run_pool(jobs, 2, "spawn", lambda r: None, lambda j, e, t: None, gpus=["0", "1"])
"""


def test_hostile_pool_workers_die_with_a_killed_parent(tmp_path):
    """SIGKILL of a jobs=2 parent -> both workers gone within seconds; each worker saw its own GPU"""
    (tmp_path / "slowbench.py").write_text(_SLOW_BENCH)
    d = tmp_path / "pids"
    d.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", _POOL_PARENT, str(d), str(tmp_path)], env=ENV)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list(d.glob("*.pid"))) < 2:
            assert parent.poll() is None
            time.sleep(0.2)
        pids = {int(p.stem): p.read_text() for p in d.glob("*.pid")}
        assert len(pids) == 2
        assert sorted(pids.values()) == ["0", "1"]  # round robin over the visible GPUs
        assert all(_alive(pid) for pid in pids)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids), "workers outlived their parent"
    finally:
        parent.kill()
        for p in d.glob("*.pid"):
            try:
                os.kill(int(p.stem), signal.SIGKILL)
            except ProcessLookupError:
                pass


_FALLBACK_CHILD = """
import os, sys, time
from lossnet.runs.launch import _die_with_parent
sys.platform = "darwin"  # no prctl: only the portable parent watcher
_die_with_parent(os.getppid())
print(os.getpid(), flush=True)
time.sleep(60)
"""


def test_parent_watcher_fallback_without_prctl(tmp_path):
    """the portable fallback alone (no prctl) ends a worker whose parent was SIGKILLed"""
    mid = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import subprocess, sys, time
        c = subprocess.Popen([sys.executable, "-c", {_FALLBACK_CHILD!r}], stdout=subprocess.PIPE, text=True)
        print(c.stdout.readline().strip(), flush=True)
        time.sleep(60)""")], env=ENV, stdout=subprocess.PIPE, text=True)
    child = int(mid.stdout.readline())
    assert _alive(child)
    os.kill(mid.pid, signal.SIGKILL)
    mid.wait(10)
    deadline = time.time() + 10
    while time.time() < deadline and _alive(child):
        time.sleep(0.1)
    alive = _alive(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive


def test_gpu_round_robin_with_fake_device_count(monkeypatch):
    from lossnet.runs import launch

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    gpus = launch.visible_gpus()
    assert gpus == ["0", "1", "2"]
    assert [launch.worker_gpu(i, gpus) for i in range(5)] == ["0", "1", "2", "0", "1"]
    assert launch.worker_gpu(0, []) is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert launch.visible_gpus() == ["4", "6"]
    counter = mp.get_context("spawn").Value("i", 0)
    seen = []
    for _ in range(3):  # what each new worker's initializer does
        launch._init_worker((), None, counter, ["4", "6"])
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["4", "6", "4"]


# --------------------------------------------------------------------------------------------
# 5. Bad input: one line, exit 2, before the work
# --------------------------------------------------------------------------------------------

# (input, argv ({tmp} = a fresh directory, {file} = an existing file), message the error line contains)
CLI_CASES = [
    ("`run paper_b encoder.epochs=abc`", ["run", "paper_b", "encoder.epochs=abc"], "encoder.epochs must be an integer"),
    ("`run paper_b encoder.epochs=2.5`", ["run", "paper_b", "encoder.epochs=2.5"], "encoder.epochs must be an integer"),
    ("`run paper_b encoder.lr=fast`", ["run", "paper_b", "encoder.lr=fast"], "encoder.lr must be a number"),
    ("`run paper_b progress=maybe`", ["run", "paper_b", "progress=maybe"], "progress must be true or false"),
    ("`run paper_b encoder.patience=x` (null default)", ["run", "paper_b", "encoder.patience=x"],
     "encoder.patience must be an integer"),
    ("`run paper_b threads=many`", ["run", "paper_b", "threads=many"], "threads must be an integer"),
    ("`run paper_b z={a: 1}`", ["run", "paper_b", "z={a: 1}"], "z must be a list"),
    ("`run paper_b nosuch=1`", ["run", "paper_b", "nosuch=1"], "unknown setting 'nosuch'"),
    ("`run paper_b scale=huge`", ["run", "paper_b", "scale=huge"], "unknown scale 'huge'"),
    ("`run paper_b dataset=mnist`", ["run", "paper_b", "dataset=mnist"], "unknown dataset 'mnist'"),
    ("`run paper_b variant=nope`", ["run", "paper_b", "variant=nope"], "unknown variant 'nope'"),
    ("`run paper_b =5`", ["run", "paper_b", "=5"], "overrides are key=value"),
    ("`run nosuch`", ["run", "nosuch"], "unknown experiment 'nosuch'"),
    ("`run paper_b out=FILE`", ["run", "paper_b", "out={file}"], "is a file, not a directory"),
    ("`run paper_b out=FILE/sub`", ["run", "paper_b", "out={file}/sub"], "cannot create out"),
    ("`sweep autoencoding out=FILE`", ["sweep", "autoencoding", "out={file}", "loss_net=alexnet"],
     "is a file, not a directory"),
    ("`sweep similarity jobs=two`", ["sweep", "similarity", "jobs=two"], "jobs must be an integer"),
    ("`sweep benchmark9`", ["sweep", "benchmark9"], "unknown benchmark 'benchmark9'"),
    ("`srvae train.epochs=x`", ["srvae", "train.epochs=x"], "train.epochs must be an integer"),
    ("`demo epochs=abc`", ["demo", "epochs=abc"], "epochs must be an integer"),
    ("`demo --out FILE`", ["demo", "--out", "{file}"], "is a file, not a directory"),
    ("`pretrain --out FILE`", ["pretrain", "--images", "{tmp}", "--out", "{file}"], "is a file, not a directory"),
    ("`pretrain --images MISSING`", ["pretrain", "--images", "{tmp}/missing", "--out", "{tmp}/enc"],
     "is not a directory of images"),
    ("`embed --out DIR` (a directory)", ["embed", "{tmp}", "--images", "{tmp}", "--out", "{tmp}/dir.npy"],
     "is a directory: give a file name"),
    ("`embed --out FILE/x.npy` (parent is a file)", ["embed", "{tmp}", "--images", "{tmp}", "--out", "{file}/x.npy"],
     "is a file, not a directory"),
    ("`embed NOT_AN_ENCODER`", ["embed", "{tmp}", "--images", "{tmp}", "--out", "{tmp}/e.npy"],
     "is not an exported encoder"),
    ("`zoo --describe alexnet --input-size 8`", ["zoo", "--describe", "alexnet", "--input-size", "8"],
     "8x8 images are too small for alexnet"),
    ("`zoo --describe nosuch`", ["zoo", "--describe", "nosuch"], "unknown loss-network architecture 'nosuch'"),
    ("`report DIR` without results", ["report", "{tmp}"], "no results table"),
    ("`data lunarlander --out FILE`", ["data", "lunarlander", "--out", "{file}"], "is not a LunarLander collection"),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_input_cli(case, tmp_path, capsys, monkeypatch):
    """bad command-line input -> one `lossnet: error:` line and exit 2, before any data are generated"""
    _, argv, needle = case
    monkeypatch.chdir(tmp_path)  # default output directories land here, if any
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "dir.npy").mkdir()
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{file}", str(tmp_path / "a_file")) for a in argv]
    assert cli_main(argv) == 2
    assert needle in _one_error_line(capsys)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "demo_out").exists()


def _write_rows(path: Path, lines: list[str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.jsonl").write_text("\n".join(lines) + "\n")
    return path


REPORT_CASES = [
    ("results.jsonl line that is a JSON list", ['[1, 2, 3]'], "line 1 is not a row (a JSON object)"),
    ("results.jsonl row without cell_id/experiment", ['{"test_score": 1.0}'], "line 1 lacks cell_id, experiment"),
    ("results.jsonl with a corrupt line mid-file", ['{"cell_id": "a"', '{"cell_id": "b"}'],
     "line 1 is not valid JSON"),
]


@pytest.mark.parametrize("case", REPORT_CASES, ids=[c[0] for c in REPORT_CASES])
def test_bad_input_report(case, tmp_path, capsys):
    """`lossnet report` on a malformed results table -> one line naming the file and line"""
    _, lines, needle = case
    d = _write_rows(tmp_path / "r", lines)
    assert cli_main(["report", str(d)]) == 2
    line = _one_error_line(capsys)
    assert needle in line and "results.jsonl" in line


def test_bad_input_torn_last_line_is_skipped(tmp_path):
    """a torn last line (a crash mid-append) -> skipped, the rows before it read"""
    from lossnet.report.tables import load_rows

    d = _write_rows(tmp_path / "t", ['{"cell_id": "a", "x": 1}', '{"cell_id": "b", "x"'])
    assert [r["cell_id"] for r in load_rows(d)] == ["a"]


def test_bad_input_image_too_small_for_deep_layer():
    """8x8 images into AlexNet's L layer -> ValueError "too small ... use larger images or an earlier layer" """
    from lossnet.zoo import LossNetwork

    net = LossNetwork("alexnet", layers=["L"], weights=None)
    with pytest.raises(ValueError, match="8x8 images are too small for alexnet"):
        net(torch.rand(1, 3, 8, 8))


def test_bad_input_corrupt_svhn_mat(tmp_path):
    """a corrupt SVHN .mat file -> one clear error naming the file"""
    from lossnet.data.datasets import load_svhn

    (tmp_path / "train_32x32.mat").write_bytes(b"not a mat file at all")
    with pytest.raises((UserError, ValueError), match="train_32x32.mat"):
        load_svhn(tmp_path, "train", verify=False)


def test_bad_input_corrupt_weights_manifest(tmp_path, monkeypatch):
    """a corrupt zoo weights manifest.json -> one clear error naming the file and how to fix it"""
    from lossnet.zoo import weights
    from lossnet.zoo.store import manifest_path

    monkeypatch.setenv("LOSSNET_HOME", str(tmp_path))
    path = manifest_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{ not json")
    with pytest.raises((UserError, ValueError), match="manifest.json"):
        weights.read_manifest()


def test_hostile_embed_creates_missing_parents(tmp_path, capsys):
    """`lossnet embed --out a/b/c.npy` with missing parents -> parents created, embeddings written"""
    import numpy as np
    from PIL import Image

    from lossnet.train.engine import FitConfig
    from lossnet.train.procedures import EncoderConfig, train_encoder
    from lossnet.zoo import LossNetwork

    torch.manual_seed(0)
    imgs = _tiny_images(3, n=6)
    te = train_encoder(imgs, EncoderConfig("I-I-PW", z=4), FitConfig(epochs=1, batch_size=3, progress=False),
                       loss_net=LossNetwork("alexnet", layers=["E"], weights=None))
    te.export(tmp_path / "enc")
    folder = tmp_path / "images" / "c"
    folder.mkdir(parents=True)
    for i, im in enumerate(imgs):
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    out = tmp_path / "a" / "b" / "c.npy"
    assert cli_main(["embed", str(tmp_path / "enc"), "--images", str(tmp_path / "images"), "--out", str(out)]) == 0
    assert np.load(out).shape == (6, 4) and not list(out.parent.glob(".*tmp"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_bad_input_read_only_output(tmp_path, capsys):
    """a read-only output directory -> "is not writable" before any work"""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert cli_main(["run", "paper_b", f"out={ro}"]) == 2
        assert "is not writable" in _one_error_line(capsys)
    finally:
        ro.chmod(0o700)


def test_bad_input_enospc_is_one_line(capsys, tmp_path):
    """a full disk (ENOSPC) while writing -> one line and exit 2 through lossnet.cli.main, no .tmp file left"""
    from lossnet.runs.table import ResultsTable

    os.environ["LOSSNET_FAULT"] = "row_append:1:enospc"
    try:
        with pytest.raises(OSError, match="No space left"):
            ResultsTable(tmp_path).append({"cell_id": "a"})
    finally:
        del os.environ["LOSSNET_FAULT"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    from lossnet import cli

    assert cli._user_fixable(OSError(28, "No space left on device")) and not cli._user_fixable(OSError(5, "EIO"))


def test_hostile_full_disk_fails_one_cell_not_the_sweep(tmp_path, sr_dir, capfd, offline_weights):
    """a full disk while a sweep cell writes its row -> that cell fails, the others finish, no .tmp files"""
    out = tmp_path / "s"
    argv = ["sweep", "similarity", "loss_net=alexnet", "layer=E,S", f"root={sr_dir}", "n_patches=4", "report=false",
            f"out={out}"]
    os.environ["LOSSNET_FAULT"] = "row_write:1:enospc"
    try:
        assert cli_main(argv) == 2
    finally:
        del os.environ["LOSSNET_FAULT"]
    err = capfd.readouterr().err
    assert "1 cell(s) failed" in err and "No space left" in err
    rows = ResultsTable(out).rows()
    assert len(rows) == 1 and rows[0]["status"] == "ok"
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert cli_main(argv) == 0  # the rerun computes only the failed cell
    assert len(ResultsTable(out).rows()) == 2


# --------------------------------------------------------------------------------------------
# 6. Fault injection: SIGKILL at named points, then a rerun equals an uninterrupted run
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fault_collection(tmp_path_factory):
    from lossnet.data.lunarlander import generate_collection

    return generate_collection(tmp_path_factory.mktemp("llf") / "collection", (2, 2, 2), steps=60, workers=1,
                               progress=False)


def _fault_args(collection, out) -> list[str]:
    return TINY + [f"collection={collection}", f"out={out}", "procedures=[F-F-FP]", "repeats=2"]


def _scores(out: Path) -> dict[str, float]:
    return {r["cell_id"]: r["test_score"] for r in ResultsTable(out).rows()}


@pytest.fixture(scope="module")
def uninterrupted(fault_collection, tmp_path_factory):
    from lossnet.experiments.runner import run_experiment

    out = run_experiment("paper_b", _fault_args(fault_collection, tmp_path_factory.mktemp("clean") / "run"))
    return out, _scores(out)


@pytest.mark.parametrize("point", ["data:1", "epoch:1", "checkpoint:2", "row_append:2", "report:1"])
def test_hostile_sigkill_then_rerun_equals_uninterrupted(point, fault_collection, uninterrupted, tmp_path):
    """SIGKILL at a named point of `lossnet run paper_b`, then a rerun -> the same scores per cell id"""
    from lossnet.experiments.runner import run_experiment

    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "lossnet.cli", "run", "paper_b", *_fault_args(fault_collection, out)],
                       env={**ENV, "LOSSNET_FAULT": point}, capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    run_experiment("paper_b", _fault_args(fault_collection, out))
    assert _scores(out) == uninterrupted[1]
    assert len(ResultsTable(out).rows()) == 2  # every cell once
    assert (out / "report.md").exists() and not list(out.rglob("*.tmp")) and not list(out.rglob("*.tmp[0-9]*"))


def test_hostile_duplicated_rows_count_once_in_the_report(uninterrupted, tmp_path):
    """results.jsonl with every row twice (two runs at once, before locks) -> the report says n = 2, not 4"""
    from lossnet.report import write_report

    src = (uninterrupted[0] / "results.jsonl").read_text()
    d = tmp_path / "dup"
    d.mkdir()
    (d / "results.jsonl").write_text(src + src)
    md = write_report(d, figures=False).read_text()
    assert "n = 2 repeats per cell" in md and "n = 4" not in md
    assert "2 finished cells" in md


# --------------------------------------------------------------------------------------------
# docs/reliability.md is generated from these tests
# --------------------------------------------------------------------------------------------


def test_reliability_table_is_current():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import reliability_table
    finally:
        sys.path.pop(0)
    text = reliability_table.render()
    assert text.count("\n| ") >= 40, "fewer than 40 rows"
    committed = (REPO / "docs" / "reliability.md").read_text()
    assert committed == text, "docs/reliability.md is stale: run python tools/reliability_table.py"
