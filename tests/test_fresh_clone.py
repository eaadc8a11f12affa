"""A clone without ``../shared``: tests that need real photographs use the crops in tests/data/sr,
tests that need the full SR sets skip with one line saying where to put them."""

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

SHIPPED_SR = Path(__file__).parent / "data" / "sr"  # as tests/conftest.py (not importable by name: tests/gpu has one too)

REPO = Path(__file__).resolve().parents[1]


def test_shipped_photographs_are_small_real_crops():
    files = sorted(p for p in SHIPPED_SR.rglob("*.png"))
    assert {p.parent.name for p in files} == {"CSet14", "CBSD68"} and len(files) == 5
    assert sum(p.stat().st_size for p in files) < 300_000
    for p in files:
        with Image.open(p) as im:
            assert im.size == (128, 128) and im.mode == "RGB"


def test_tests_run_without_the_shared_folder(tmp_path):
    """Run a fallback test and a full-set test in a fresh pytest with LOSSNET_SHARED pointing nowhere."""
    env = {**os.environ, "LOSSNET_SHARED": str(tmp_path / "nonexistent"), "OMP_NUM_THREADS": "1"}
    tests = ["tests/test_similarity.py::test_similarity_cell_proxy_real_patches",
             "tests/test_sr.py::test_shared_test_sets_and_bicubic_reference"]
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *tests],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "1 passed, 1 skipped" in r.stdout, r.stdout[-3000:]
    skips = [ln for ln in r.stdout.splitlines() if ln.startswith("SKIPPED")]
    assert len(skips) == 1 and "LOSSNET_SHARED" in skips[0] and "nonexistent" in skips[0], skips
