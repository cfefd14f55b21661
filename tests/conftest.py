"""Shared fixtures: the real data beside the repository, and small folders made from it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
REAL_224 = SHARED / "chest_xray_224"
REAL_FULLRES = SHARED / "chest_xray_fullres_sample"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def real_files(split: str, cls: str, n: int, root: Path = REAL_224) -> list[Path]:
    """The first ``n`` real images of a class, in sorted order (the same every run)."""
    return sorted((root / split / cls).iterdir())[:n]


def link_kaggle_subset(dest: Path, per_class: dict[str, int], test_per_class: int = 0, wrapper: bool = True) -> Path:
    """A Kaggle-layout folder of symlinks to real images, as a user unzips it:
    ``chest_xray/chest_xray/train/<class>/`` with ``__MACOSX/``, ``._*`` and ``.DS_Store`` junk.
    Returns the folder to pass as ``--data``."""
    base = dest / "chest_xray" / "chest_xray" if wrapper else dest
    for cls, n in per_class.items():
        for split, count in (("train", n), ("test", test_per_class)):
            if not count:
                continue
            folder = base / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for f in real_files(split, cls, count):
                (folder / f.name).symlink_to(f)
            (folder / ".DS_Store").write_bytes(b"junk")
            (folder / "Thumbs.db").write_bytes(b"junk")
            (folder / f"._{f.name}").write_bytes(b"junk")
    if wrapper:
        (dest / "chest_xray" / "__MACOSX" / "train" / "NORMAL").mkdir(parents=True)
        (dest / "chest_xray" / "__MACOSX" / "train" / "NORMAL" / "._x.jpeg").write_bytes(b"junk")
    return dest


def spied(call, *methods: str):
    """Run ``call()`` with ``keras.Model``'s ``methods`` (fit, evaluate, predict) spied on where they act:
    (its result, each method's calls, each a dict of its keyword arguments with ``x`` however it was given)."""
    import keras

    calls, real = {m: [] for m in methods}, {m: getattr(keras.Model, m) for m in methods}

    def spy(method):
        def wrapped(model, *args, **kwargs):
            calls[method].append({**kwargs, "x": kwargs.get("x", args[0] if args else None)})
            return real[method](model, *args, **kwargs)

        return wrapped

    with pytest.MonkeyPatch.context() as patch:
        for m in methods:
            patch.setattr(keras.Model, m, spy(m))
        return call(), calls


def write_image(path: Path, size: int = 20, mode: str = "L", value: int | None = None, seed: int = 0) -> Path:
    """A small synthetic image file (random pixels unless ``value`` is given)."""
    rng = np.random.default_rng(seed)
    shape = (size, size) if mode in ("L", "I;16") else (size, size, len(mode))
    if mode == "I;16":
        data = np.full(shape, value if value is not None else 40000, dtype=np.uint16)
    else:
        data = (
            np.full(shape, value, dtype=np.uint8) if value is not None else rng.integers(0, 256, shape, dtype=np.uint8)
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data).save(path)  # uint16 arrays become mode I;16
    return path


@pytest.fixture
def synthetic_folder(tmp_path):
    """Make ``train/<class>/`` folders of random images: ``synthetic_folder({"A": 6, "B": 8})``."""

    def make(counts: dict[str, int], split: str | None = "train", root: Path | None = None, size: int = 20) -> Path:
        root = root or tmp_path / "data"
        root.joinpath(*([split] if split else [])).mkdir(parents=True, exist_ok=True)
        for cls, n in counts.items():
            folder = root.joinpath(*([split, cls] if split else [cls]))
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                write_image(folder / f"{cls}-{i}.png", size=size, seed=i + 100 * len(cls))
        return root

    return make
