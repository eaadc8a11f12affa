"""Every Python block of the README runs as written (in a folder with a few images in my_images/)."""

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_block_runs(i, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    (tmp_path / "my_images").mkdir()
    for k in range(8):
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(tmp_path / "my_images" / f"{k}.png")
    exec(compile(BLOCKS[i], f"README.md block {i}", "exec"), {"__name__": f"readme_{i}"})
