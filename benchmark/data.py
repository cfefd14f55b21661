"""Stage 1 — data: find the images of a Kaggle-layout folder and decode them once.

Layout read (as the Kaggle "chest-xray-pneumonia" archive unzips)::

    DIR/train/<class>/*      pooled for cross-validation
    DIR/val/<class>/*        optional, pooled into train
    DIR/test/<class>/*       optional, the held-out set (never used for CV)

A folder holding only ``<class>/`` subfolders is accepted too (no held-out set).
A wrapper folder (``chest_xray/chest_xray/``), ``__MACOSX/``, ``._*``, ``.DS_Store``
and ``Thumbs.db`` are skipped.

Decoded pixels are cached on disk as one ``.npy`` per (file list, image size,
channels), memory-mapped on load, so a run decodes each image once, never per
fold or per architecture.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark import UsageError
from benchmark.files import atomic_path, read_json, write_json

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}
JUNK_DIRS = {"__macosx"}
SPLIT_NAMES = ("train", "val", "test")
DEFAULT_POSITIVE = "PNEUMONIA"
CACHE_FORMAT = 1  # bump when decoding changes, so old caches are not reused

KAGGLE_HINT = (
    "The chest X-ray data is Kermany et al. 2018, published on Kaggle as "
    "'paultimothymooney/chest-xray-pneumonia' and on Mendeley Data (doi:10.17632/rscbjbr9sj); "
    "unzip it and pass the folder holding train/ (and test/) with --data DIR, set BENCHMARK_DATA, "
    "or add 'data = DIR' under [tool:benchmark] in setup.cfg."
)


@dataclass(frozen=True)
class ImageSet:
    """The files of one split: paths relative to the data root, labels 1 = positive."""

    paths: tuple[str, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> list[int]:
        """[negatives, positives]."""
        return np.bincount(self.labels, minlength=2).tolist()


@dataclass(frozen=True)
class Dataset:
    """A two-class image folder: ``classes`` is (negative, positive); paths are relative to ``root``."""

    root: Path
    classes: tuple[str, str]
    train: ImageSet
    test: ImageSet | None = None


@dataclass(frozen=True)
class Images:
    """Decoded pixels (uint8, N×H×W×C, memory-mapped) of the readable files of an ImageSet."""

    pixels: np.ndarray
    labels: np.ndarray
    paths: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)  # path → reason

    def __reduce__(self):
        # Sent to a worker process (joblib, Dask), a memory-mapped cache travels as its path and the
        # worker maps the same file: no copy of the pixels, and workers read the data from a shared path.
        filename = getattr(self.pixels, "filename", None)
        if filename is None:
            return Images, (self.pixels, self.labels, self.paths, self.skipped)
        return _mapped_images, (str(filename), self.labels, self.paths, self.skipped)


def _mapped_images(filename: str, labels: np.ndarray, paths: tuple[str, ...], skipped: dict) -> Images:
    return Images(np.load(filename, mmap_mode="r"), labels, paths, skipped)


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in JUNK_NAMES


def _subdirs(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_dir() and not _is_junk(p.name) and p.name.lower() not in JUNK_DIRS
    )


def _find_root(folder: Path) -> Path:
    """Descend through wrapper folders (``chest_xray/chest_xray/``) to the one holding the data.

    A lone subfolder is a wrapper only if it has subfolders itself; otherwise it is a class folder.
    """
    while True:
        subdirs = _subdirs(folder)
        if any(p.name.lower() == "train" for p in subdirs) or len(subdirs) != 1 or not _subdirs(subdirs[0]):
            return folder
        folder = subdirs[0]


def _image_files(class_dir: Path, root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not _is_junk(d) and d.lower() not in JUNK_DIRS)
        for name in sorted(filenames):
            if not _is_junk(name) and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(dirpath, name).relative_to(root).as_posix())
    return found


def _class_files(split_dirs: list[Path], root: Path) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    for split_dir in split_dirs:
        for class_dir in _subdirs(split_dir):
            files.setdefault(class_dir.name, []).extend(_image_files(class_dir, root))
    return files


def discover(data_dir: str | Path, positive: str | None = None) -> Dataset:
    """Find the classes and files of ``data_dir``.

    >>> ds = discover("../shared/data/chest_xray_224")
    >>> ds.classes, ds.train.counts(), ds.test.counts()
    (('NORMAL', 'PNEUMONIA'), [1341, 3875], [234, 390])
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UsageError(f"--data {data_dir}: no such folder. {KAGGLE_HINT}")
    root = _find_root(data_dir)
    splits = {p.name.lower(): p for p in _subdirs(root)}
    # Paths are kept relative to data_dir (what the user gave), even when the data sits in a wrapper folder.
    if "train" in splits:
        train_files = _class_files([splits[s] for s in ("train", "val") if s in splits], data_dir)
        test_files = _class_files([splits["test"]], data_dir) if "test" in splits else None
    else:
        train_files, test_files = _class_files([root], data_dir), None

    n_images = sum(len(f) for f in train_files.values())
    if n_images == 0:
        raise UsageError(
            f"--data {data_dir}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))} files "
            f"in <class>/ subfolders of {root / 'train' if 'train' in splits else root}). {KAGGLE_HINT}"
        )
    empty = sorted(c for c, f in train_files.items() if not f)
    if len(train_files) != 2 or empty:
        found = ", ".join(f"{c} ({len(f)} images)" for c, f in sorted(train_files.items()))
        problem = f"an empty class folder ({', '.join(empty)})" if empty else f"{len(train_files)} class(es)"
        raise UsageError(
            f"--data {data_dir}: the training images must be in exactly two non-empty class folders "
            f"(e.g. NORMAL/ and PNEUMONIA/); found {problem}: {found}. Put each class's images in its own folder."
        )
    classes = sorted(train_files)
    if positive is None:
        positive = DEFAULT_POSITIVE if DEFAULT_POSITIVE in classes else classes[1]
    if positive not in classes:
        raise UsageError(f"--positive {positive}: not a class of {data_dir}; the classes are {', '.join(classes)}.")
    negative = classes[0] if classes[1] == positive else classes[1]

    def image_set(files: dict[str, list[str]]) -> ImageSet:
        paths = files.get(negative, []) + files.get(positive, [])
        labels = np.array([0] * len(files.get(negative, [])) + [1] * len(files.get(positive, [])), dtype=np.int8)
        return ImageSet(tuple(paths), labels)

    test = image_set(test_files) if test_files and any(test_files.values()) else None
    return Dataset(root=data_dir, classes=(negative, positive), train=image_set(train_files), test=test)


def decode(path: str | Path, image_size: int, channels: int = 1) -> np.ndarray:
    """One image as uint8 ``image_size × image_size × channels``, squashed (no crop) like the Kaggle 224 px copy."""
    mode = "L" if channels == 1 else "RGB"
    with Image.open(path) as img:
        img.draft(mode, (image_size, image_size))  # JPEG: let libjpeg decode at a reduced scale
        if img.mode.startswith("I"):  # 16/32-bit integer greyscale: scale the 16-bit range to 8 bits
            img = Image.fromarray((np.asarray(img, dtype=np.float32) / 257.0).clip(0, 255).astype(np.uint8))
        img = img.convert(mode).resize((image_size, image_size), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8).reshape(image_size, image_size, channels)


def _try_decode(args) -> np.ndarray | str:
    path, image_size, channels = args
    try:
        return decode(path, image_size, channels)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return f"{type(err).__name__}: {err}"


def _cache_key(root: Path, images: ImageSet, image_size: int, channels: int) -> str:
    h = hashlib.sha256(json.dumps([CACHE_FORMAT, image_size, channels]).encode())
    for rel in images.paths:
        st = (root / rel).stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("cnn-benchmark"))


def load_images(
    root: Path,
    images: ImageSet,
    image_size: int,
    channels: int = 1,
    cache_dir: Path | None = None,
    workers: int | None = None,
    log=print,
) -> Images:
    """Decode ``images`` (or reuse the cache) and return them memory-mapped.

    Unreadable files are left out and listed in ``Images.skipped``.
    """
    root = Path(root)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = _cache_key(root, images, image_size, channels)
    npy, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    meta = read_json(meta_path)  # written last: its presence means the .npy is complete
    if meta is not None and npy.exists():
        try:
            pixels = np.load(npy, mmap_mode="r")
            if pixels.shape == (len(meta["kept"]), image_size, image_size, channels):
                return _images(images, pixels, meta)
        except (OSError, ValueError):
            pass  # truncated or foreign file: decode again

    log(f"decoding {len(images)} images at {image_size} px into the cache {cache_dir} (once) ...")
    tasks = [(root / rel, image_size, channels) for rel in images.paths]
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count()) as pool:  # PIL releases the GIL
        decoded = list(pool.map(_try_decode, tasks, chunksize=32))
    kept = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
    skipped = {images.paths[i]: d for i, d in enumerate(decoded) if isinstance(d, str)}
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(npy) as tmp:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(kept), image_size, image_size, channels)
        )
        for j, i in enumerate(kept):
            out[j] = decoded[i]
        out.flush()
        del out
    meta = {"kept": kept, "skipped": skipped, "image_size": image_size, "channels": channels}
    write_json(meta_path, meta)
    return _images(images, np.load(npy, mmap_mode="r"), meta)


def _images(images: ImageSet, pixels: np.ndarray, meta: dict) -> Images:
    kept = np.asarray(meta["kept"], dtype=np.int64)
    return Images(
        pixels=pixels,
        labels=images.labels[kept],
        paths=tuple(images.paths[i] for i in kept),
        skipped=dict(meta["skipped"]),
    )


def warn_skipped(skipped: dict[str, str], strict: bool, log=lambda m: print(m, file=sys.stderr)) -> None:
    """One warning listing every unreadable file; with ``strict`` it is an error."""
    if not skipped:
        return
    listing = "; ".join(f"{p} ({why})" for p, why in skipped.items())
    if strict:
        raise UsageError(
            f"{len(skipped)} image(s) could not be read: {listing}. "
            "Remove or replace them, or drop --strict to skip them."
        )
    log(f"warning: skipped {len(skipped)} unreadable image(s): {listing}")
