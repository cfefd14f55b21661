"""A second labelled set for `benchmark evaluate` (docs/results.md, issue 24), built from the official test
split with another acquisition look, since no second hospital's images are at hand:

    python -m tests.perf.shifted_site OUT

Every image of ``../shared/data/chest_xray_224/test/<class>/`` is written to ``OUT/<class>/`` (same name,
``.jpeg``) after, in this order: a lower native resolution (224 → 112 px, bilinear), a flatter and brighter
exposure (contrast × 0.8 around the image mean, then gamma 0.8) and a coarser JPEG re-encoding (quality 40).
Training images are never used (the test split only), and nothing is written inside ../shared/data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.perf.common import DATA_224

SIZE, CONTRAST, GAMMA, QUALITY = 112, 0.8, 0.8, 40


def shifted(path: Path) -> Image.Image:
    """One test image with the other look (greyscale, SIZE px)."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L").resize((SIZE, SIZE), Image.Resampling.BILINEAR), dtype=np.float64)
    flatter = pixels.mean() + CONTRAST * (pixels - pixels.mean())
    brighter = 255.0 * (np.clip(flatter, 0, 255) / 255.0) ** GAMMA
    return Image.fromarray(brighter.round().astype(np.uint8))


def main(out: Path) -> None:
    test = DATA_224 / "test"
    if DATA_224.resolve() in out.resolve().parents or out.resolve() == DATA_224.resolve():
        raise SystemExit(f"{out}: inside the data; give a folder outside {DATA_224}.")
    count = 0
    for class_dir in sorted(p for p in test.iterdir() if p.is_dir()):
        (out / class_dir.name).mkdir(parents=True, exist_ok=True)
        for path in sorted(class_dir.glob("*.jpeg")):
            shifted(path).save(out / class_dir.name / path.name, quality=QUALITY)
            count += 1
    print(f"wrote {count} images to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
