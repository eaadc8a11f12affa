"""Every ```python block of README.md and of docs/*.md runs as written.

Each block runs in a fresh interpreter (so a block's global settings cannot leak into other
tests) in a temporary folder holding a few images in ``my_images/``. A block whose first line is
``# doctest: skip`` (it needs a data set or a long run) is skipped; keep those rare.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SKIP = "# doctest: skip"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    """The source of every ```python block of the markdown file ``path``, in order."""
    return FENCE.findall(path.read_text(encoding="utf-8"))


DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCKS = [(p, i, b) for p in DOCS for i, b in enumerate(python_blocks(p))]


def test_blocks_are_found_and_skips_are_rare():
    readme = [b for p, _, b in BLOCKS if p.name == "README.md"]
    assert len(readme) >= 3 and not any(b.startswith(SKIP) for b in readme)
    assert len({p for p, _, _ in BLOCKS}) >= 4  # README and docs
    skipped = [b for _, _, b in BLOCKS if b.startswith(SKIP)]
    assert len(skipped) <= len(BLOCKS) // 2, "most documented examples must run"


def test_python_blocks_finds_fenced_blocks_only(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("text\n```python\nx = 1\n```\n```bash\nls\n```\n    ```python\nindented\n```\n```python\ny = 2\n```\n")
    assert python_blocks(md) == ["x = 1\n", "y = 2\n"]


@pytest.mark.parametrize("path, i, block", BLOCKS, ids=[f"{p.relative_to(REPO)}:{i}" for p, i, _ in BLOCKS])
def test_block_runs(path, i, block, tmp_path):
    if block.startswith(SKIP):
        pytest.skip(f"{path.name} block {i} is marked '{SKIP}'")
    rng = np.random.default_rng(0)
    (tmp_path / "my_images").mkdir()
    for k in range(8):
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(tmp_path / "my_images" / f"{k}.png")
    script = tmp_path / f"block_{i}.py"
    script.write_text(block, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    r = subprocess.run([sys.executable, script.name], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, f"{path.name} block {i} failed:\n{r.stdout[-2000:]}{r.stderr[-4000:]}"
