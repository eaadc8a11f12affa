"""Regenerate ``tests/data/sr``: 128x128 centre crops of a few photographs of ``$LOSSNET_SHARED/data/sr``.

    python tests/data/make_sr_crops.py [SHARED_SR_DIR]

The crops are what the tests fall back to on a clone without ``../shared`` (tests/conftest.py).
"""

import os
import sys
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
CROPS = {"CSet14": ["flowers", "monarch", "zebra"], "CBSD68": ["101087", "108005"]}
SIZE = 128


def main(src: Path) -> None:
    for folder, names in CROPS.items():
        (HERE / "sr" / folder).mkdir(parents=True, exist_ok=True)
        for n in names:
            with Image.open(src / folder / f"{n}.png") as im:
                w, h = im.size
                left, top = (w - SIZE) // 2, (h - SIZE) // 2
                crop = im.convert("RGB").crop((left, top, left + SIZE, top + SIZE))
            crop.save(HERE / "sr" / folder / f"{n}.png", optimize=True)


if __name__ == "__main__":
    default = Path(os.environ.get("LOSSNET_SHARED", HERE.parents[2] / "shared")) / "data" / "sr"
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
