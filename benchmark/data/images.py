"""Data: find the images of a Kaggle-layout folder and decode them once.

Layout read (as the Kaggle "chest-xray-pneumonia" archive unzips)::

    DIR/train/<class>/*      pooled for cross-validation
    DIR/val/<class>/*        optional, pooled into train
    DIR/test/<class>/*       optional, the held-out set (never used for CV)

A folder holding only ``<class>/`` subfolders is accepted too (no held-out set).
A wrapper folder (``chest_xray/chest_xray/``), ``__MACOSX/``, ``._*``, ``.DS_Store``
and ``Thumbs.db`` are skipped.

Decoded pixels are cached on disk as one ``.npy`` per (file list, image size,
channels), memory-mapped on load, so a run decodes each image once, never per
fold or per architecture. Decoding streams into that file in chunks, so memory
stays bounded whatever the number of images. Only content errors (not an image,
truncated, too large, not a regular file) are cached as unreadable; a file-system
error (a vanished file, a permission, a failing disk) is retried and, if it persists,
stops the run with nothing cached. The cache's metadata holds a checksum of its
``.npy``, checked on every read: a cache changed on disk is decoded again, and a digest of
each file's bytes, taken while decoding (:attr:`Images.content`): a copy of the data that
keeps the bytes but not the modification times is recognised by it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from filelock import FileLock
from PIL import Image

from benchmark import UsageError
from benchmark.store.files import atomic_path, read_json, write_json

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}
JUNK_DIRS = {"__macosx"}
DEFAULT_POSITIVE = "PNEUMONIA"
MAX_CLASSES = 127  # labels are int8
CACHE_FORMAT = 4  # bump when decoding, the cache key or its metadata change, so old caches are not reused
CHUNK = 256  # images decoded per batch of work: bounds the decoded pixels held in memory
RETRY_SECONDS = (0.5, 2.0, 5.0)  # back-off before each retry of files that failed with a file-system error
HASH_BLOCK = 1 << 24  # bytes read at a time when checksumming a cache file

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

    def counts(self, n_classes: int = 2) -> list[int]:
        """Images per class, in label order ([negatives, positives] with two classes)."""
        return np.bincount(self.labels, minlength=n_classes).tolist()


@dataclass(frozen=True)
class Dataset:
    """An image folder of K ≥ 2 classes; with two, ``classes`` is (negative, positive), else sorted.
    Paths are relative to ``root``; a label is an index into ``classes``."""

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
    content: dict[str, str] = field(default_factory=dict)  # path → digest of the file's bytes (every file read)

    def __reduce__(self):
        # Sent to a worker process (joblib, Dask), a memory-mapped cache travels as its path and the
        # worker maps the same file: no copy of the pixels, and workers read the data from a shared path.
        filename = getattr(self.pixels, "filename", None)
        if filename is None:
            return Images, (self.pixels, self.labels, self.paths, self.skipped, self.content)
        return _mapped_images, (str(filename), self.labels, self.paths, self.skipped, self.content)


def _mapped_images(filename: str, labels: np.ndarray, paths: tuple[str, ...], skipped: dict, content: dict) -> Images:
    return Images(np.load(filename, mmap_mode="r"), labels, paths, skipped, content)


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


def _image_files(class_dir: Path, root: Path, given: str = "--data") -> list[str]:
    """The image files under ``class_dir`` (links followed, each folder once: a link loop ends there), relative
    to ``root``; ``given`` names where the folder came from in an error."""
    found, seen = [], set()

    def unreadable(err: OSError):
        raise UsageError(
            f"{given} {root}: cannot list the folder {err.filename} ({err.strerror}). "
            "Make it readable (or remove it) and run again."
        )

    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True, onerror=unreadable):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:  # reached again through a link: a loop, or a second way in
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not _is_junk(d) and d.lower() not in JUNK_DIRS)
        for name in sorted(filenames):
            if not _is_junk(name) and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(dirpath, name).relative_to(root).as_posix())
    return found


def unlabelled(paths: list[str | Path]) -> ImageSet:
    """The images given as files or folders (searched recursively, as class folders are), unlabelled (0), each
    path absolute so that :func:`load_images` reads them from any root. A name that is neither is a UsageError.

    >>> images = unlabelled(["../shared/data/chest_xray_224/test/NORMAL"])
    >>> len(images), Path(images.paths[0]).is_absolute()
    (234, True)
    """
    found = []
    for given in map(Path, paths):
        if given.is_dir():
            found += [str(given.absolute() / p) for p in _image_files(given, given, given="images")]
        elif given.exists():
            found.append(str(given.absolute()))  # named explicitly: decoded whatever its suffix, or skipped
        else:
            raise UsageError(f"images {given}: no such file or folder. Give image files or folders holding them.")
    unique = tuple(dict.fromkeys(found))  # a file named twice (a folder and a file in it) is predicted once
    return ImageSet(unique, np.zeros(len(unique), dtype=np.int8))


def _class_files(split_dirs: list[Path], root: Path) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    for split_dir in split_dirs:
        for class_dir in _subdirs(split_dir):
            files.setdefault(class_dir.name, []).extend(_image_files(class_dir, root))
    return files


def discover(data_dir: str | Path, positive: str | None = None, label_from: str | None = None) -> Dataset:
    """Find the classes and files of ``data_dir``.

    >>> ds = discover("../shared/data/chest_xray_224")
    >>> ds.classes, ds.train.counts(), ds.test.counts()
    (('NORMAL', 'PNEUMONIA'), [1341, 3875], [234, 390])
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UsageError(f"--data {data_dir}: no such folder. {KAGGLE_HINT}")
    try:
        return _discover(data_dir, positive, label_from)
    except OSError as err:  # a folder that cannot be listed
        raise UsageError(
            f"--data {data_dir}: cannot list {err.filename or data_dir} ({err.strerror or err}). "
            "Make it readable and run again."
        ) from None


def _discover(data_dir: Path, positive: str | None, label_from: str | None) -> Dataset:
    root = _find_root(data_dir)
    splits = {p.name.lower(): p for p in _subdirs(root)}
    # Paths are kept relative to data_dir (what the user gave), even when the data sits in a wrapper folder.
    if "train" in splits:
        found = {s: _class_files([splits[s]], data_dir) for s in ("train", "val", "test") if s in splits}
    else:
        found = {"train": _class_files([root], data_dir)}
    if label_from:
        found = {s: relabel(files, label_from) for s, files in found.items()}
    train_files = {c: list(f) for c, f in found["train"].items()}
    for c, files in found.get("val", {}).items():  # val/ is pooled into train
        train_files.setdefault(c, []).extend(files)
    classes = _check_classes(data_dir, root, splits, train_files)
    for split in ("val", "test"):  # a class that train/ lacks would be learnt from val/ alone, or never scored
        _check_split_classes(data_dir, split, found.get(split, {}), sorted(found["train"]))
    test_files = found.get("test")
    if len(classes) == 2:  # (negative, positive)
        if positive is None:
            positive = DEFAULT_POSITIVE if DEFAULT_POSITIVE in classes else classes[1]
        if positive not in classes:
            raise UsageError(f"--positive {positive}: not a class of {data_dir}; the classes are {', '.join(classes)}.")
        classes = [classes[0] if classes[1] == positive else classes[1], positive]
    elif positive is not None:
        raise UsageError(
            f"--positive {positive}: a positive class belongs to two-class tasks; {data_dir} has {len(classes)} "
            f"classes ({', '.join(classes)}). Leave --positive out."
        )

    def image_set(files: dict[str, list[str]]) -> ImageSet:
        paths = [p for c in classes for p in files.get(c, [])]
        labels = np.array([i for i, c in enumerate(classes) for _ in files.get(c, [])], dtype=np.int8)
        return ImageSet(tuple(paths), labels)

    test = image_set(test_files) if test_files and any(test_files.values()) else None
    return Dataset(root=data_dir, classes=tuple(classes), train=image_set(train_files), test=test)


def _check_classes(data_dir: Path, root: Path, splits: dict, train_files: dict[str, list[str]]) -> list[str]:
    """The sorted class names; a UsageError without images, with one class or with an empty one."""
    if sum(len(f) for f in train_files.values()) == 0:
        raise UsageError(
            f"--data {data_dir}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))} files "
            f"in <class>/ subfolders of {root / 'train' if 'train' in splits else root}). {KAGGLE_HINT}"
        )
    empty = sorted(c for c, f in train_files.items() if not f)
    if len(train_files) < 2 or empty:
        found = ", ".join(f"{c} ({len(f)} images)" for c, f in sorted(train_files.items()))
        problem = f"an empty class folder ({', '.join(empty)})" if empty else f"{len(train_files)} class(es)"
        raise UsageError(
            f"--data {data_dir}: the training images must be in two or more non-empty class folders "
            f"(e.g. NORMAL/ and PNEUMONIA/); found {problem}: {found}. Put each class's images in its own folder."
        )
    if len(train_files) > MAX_CLASSES:
        raise UsageError(f"--data {data_dir}: {len(train_files)} classes; at most {MAX_CLASSES} are supported.")
    return sorted(train_files)


def _check_split_classes(data_dir: Path, split: str, files: dict[str, list[str]], classes: list[str]) -> None:
    """A UsageError when ``split`` (test or val) holds images of a class that train/ lacks."""
    extra = sorted(c for c, f in files.items() if f and c not in classes)
    if not extra:
        return
    where = ", ".join(
        f"{PurePosixPath(files[c][0]).parent}/ ({c}, {len(files[c])} image{'s' * (len(files[c]) != 1)})" for c in extra
    )
    why = {
        "test": "The models learn only the training classes, so these test images could not be scored",
        "val": "val/ is pooled into the training images, so they would add a class that train/ does not have",
    }[split]
    raise UsageError(
        f"--data {data_dir}: {split}/ holds images of class(es) that train/ lacks: {where}; the training classes "
        f"are {', '.join(classes)}. {why}. Move these images into a train/<class>/ folder (to learn the class), "
        "rename the folder to a training class, or move it out of --data, then run again."
    )


def relabel(files: dict[str, list[str]], pattern: str) -> dict[str, list[str]]:
    """``--label-from``: each file's class is the first capture group of ``pattern`` searched in its
    name, or its folder's name when the pattern does not match (no file is copied or moved).

    >>> relabel({"NORMAL": ["train/NORMAL/IM-1.jpeg"], "PNEUMONIA": ["train/PNEUMONIA/person1_virus_2.jpeg"]},
    ...         r"_(bacteria|virus)_")
    {'NORMAL': ['train/NORMAL/IM-1.jpeg'], 'virus': ['train/PNEUMONIA/person1_virus_2.jpeg']}
    """
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise UsageError(f"--label-from {pattern}: not a regular expression ({err}).") from None
    if regex.groups < 1:
        raise UsageError(f"--label-from {pattern}: give one capture group, the part of a file name that is its class.")
    out: dict[str, list[str]] = {}
    for folder, paths in files.items():
        for path in paths:
            match = regex.search(PurePosixPath(path).name)
            out.setdefault(match.group(1) if match else folder, []).append(path)
    return out


class NotARegularFile(ValueError):
    """A FIFO, socket or device under an image's name: opening a FIFO would wait for a writer forever."""


SPECIAL_FILES = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)


def _check_regular(path: str | Path) -> None:
    """Raise NotARegularFile unless ``path`` (after links) is a regular file."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in SPECIAL_FILES if test(mode)), "another kind of file")
        raise NotARegularFile(f"{kind}, not a regular file; only regular files are read")


def decode(source: str | Path | bytes, image_size: int, channels: int = 1) -> np.ndarray:
    """One image (a file, or its bytes) as uint8 ``image_size × image_size × channels``, squashed (no crop) like
    the Kaggle 224 px copy."""
    if not isinstance(source, bytes):
        _check_regular(source)
    mode = "L" if channels == 1 else "RGB"
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
        img.draft(mode, (image_size, image_size))  # JPEG: let libjpeg decode at a reduced scale
        if img.mode.startswith("I"):  # 16/32-bit integer greyscale: scale the 16-bit range to 8 bits
            img = Image.fromarray((np.asarray(img, dtype=np.float32) / 257.0).clip(0, 255).astype(np.uint8))
        img = img.convert(mode).resize((image_size, image_size), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8).reshape(image_size, image_size, channels)


class ReadFailure(Exception):
    """A file that could not be read for a reason outside it (vanished, permission, I/O error)."""


def _try_decode(path: Path, image_size: int, channels: int) -> tuple[np.ndarray | str, str | None] | ReadFailure:
    """(The pixels, or the reason (a string) when the file's content is not a readable image; the digest of its
    bytes, None when none were read); or a ReadFailure when the file system failed, which says nothing about
    the image and is retried. The bytes are read once, for both."""
    digest = None
    try:
        data = read_file(path)
        digest = content_digest(data)
        return decode(data, image_size, channels), digest
    except OSError as err:
        # The file system reports with an errno (ENOENT, EACCES, EIO, ...); Pillow's content errors
        # (unidentified, truncated) are OSErrors without one.
        if err.errno is not None:
            return ReadFailure(f"{type(err).__name__}: {err.strerror or err}")
        return f"{type(err).__name__}: {err}", digest
    except (SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return f"{type(err).__name__}: {err}", digest


def read_file(path: Path) -> bytes:
    """A regular file's bytes (NotARegularFile for a FIFO, a socket, a device: reading a FIFO waits forever)."""
    _check_regular(path)
    return path.read_bytes()


def content_digest(data: bytes) -> str:
    """A digest of a file's bytes (BLAKE2b, 16 bytes: fast, and no two different images share one in practice)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def listing(root: Path, images: ImageSet) -> list[tuple[str, int, int]]:
    """(path, size in bytes, modification time in ns) of each file: what the cache key and the
    dataset fingerprint are made of."""
    rows = []
    for rel in images.paths:
        st = (root / rel).stat()
        rows.append((rel, st.st_size, st.st_mtime_ns))
    return rows


def file_table(dataset: Dataset) -> list[tuple[str, str, int, int]]:
    """(path, class, size, modification time in ns) of every file of ``dataset``, sorted by path.

    Paths are relative to ``--data``, so the table is the same whichever way the folder is reached
    (a relative or absolute spelling, a link, a move) and whichever class is positive.
    """
    rows = []
    for images in (dataset.train, dataset.test):
        if images is not None:
            names = [dataset.classes[label] for label in images.labels]
            rows += [
                (rel, name, size, mtime)
                for (rel, size, mtime), name in zip(listing(dataset.root, images), names, strict=True)
            ]
    return sorted(rows)


def class_counts(classes: tuple[str, ...], labels) -> dict[str, int]:
    """Images per class, by name.

    >>> class_counts(("NORMAL", "PNEUMONIA"), np.array([1, 1, 0]))
    {'NORMAL': 1, 'PNEUMONIA': 2}
    """
    return dict(zip(classes, np.bincount(np.asarray(labels), minlength=len(classes)).tolist(), strict=True))


def fingerprint(rows: list[tuple]) -> str:
    """A short digest of :func:`file_table`: equal fingerprints, equal data."""
    return _digest(rows)


def table_diff(saved: list[tuple], current: list[tuple]) -> dict[str, list[str]]:
    """The paths added, removed and changed (class, size or time) between two file tables.

    >>> table_diff([("a", "X", 1, 5), ("b", "X", 2, 5)], [("a", "X", 1, 6), ("c", "Y", 3, 5)])
    {'added': ['c'], 'removed': ['b'], 'changed': ['a']}
    """
    before, after = {r[0]: tuple(r[1:]) for r in saved}, {r[0]: tuple(r[1:]) for r in current}
    return {
        "added": sorted(after.keys() - before.keys()),
        "removed": sorted(before.keys() - after.keys()),
        "changed": sorted(p for p in before.keys() & after.keys() if before[p] != after[p]),
    }


def same_bytes(root: Path, saved: list[tuple], paths: list[str]) -> list[str]:
    """Those of ``paths`` that still have the bytes whose digest ``saved`` (files.csv's rows, the digest last)
    holds, read now: where only the modification times changed (a copy made without ``cp -p``, a re-provisioned
    share). A file without a saved digest, or unreadable now, is not among them."""
    digests = {row[0]: row[-1] for row in saved}

    def same(path: str) -> bool:
        try:
            return bool(digests.get(path)) and content_digest(read_file(root / path)) == digests[path]
        except (OSError, NotARegularFile):  # gone, unreadable, or now a FIFO (whose read would never end)
            return False

    return [p for p in paths if same(p)]


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def _cache_key(rows: list[tuple[str, int, int]], image_size: int, channels: int) -> str:
    return _digest(CACHE_FORMAT, image_size, channels, rows)


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
    what: str = "images",
) -> Images:
    """Decode ``images`` (or reuse the cache) and return them memory-mapped; ``what`` names them in the
    progress line (``training images``, ``test images``).

    Files whose content is unreadable, and names that are not regular files, are left out
    and listed in ``Images.skipped``. Runs that share ``cache_dir`` decode a file list once:
    the first holds the key's lock while it decodes, the others wait for it and read its cache.
    A cache that fails its checksum is decoded again, with a line on ``log``.
    """
    root = Path(root)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = _cache_key(listing(root, images), image_size, channels)
    npy, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(cache_dir / f"{key}.lock"):
            cached = _read_cache(npy, meta_path, image_size, channels, log)
            if cached is not None:
                return _images(images, *cached)
            _check_space(cache_dir, len(images), image_size, channels)
            log(f"decoding {len(images)} {what} at {image_size} px into the cache {cache_dir} (once) ...")
            meta = _decode_into(npy, root, images, image_size, channels, workers)
            meta["sha256"] = _file_hash(npy)
            write_json(meta_path, meta)  # last: its presence means the .npy is complete
    except OSError as err:
        raise UsageError(
            f"--cache-dir {cache_dir}: could not write the decoded-image cache ({err.strerror or err}"
            f"{': ' + str(err.filename) if err.filename else ''}). Nothing half-written was kept. Free disk "
            "space or choose another --cache-dir, then run the same command again."
        ) from None
    return _images(images, np.load(npy, mmap_mode="r"), meta)


def _read_cache(npy: Path, meta_path: Path, image_size: int, channels: int, log) -> tuple[np.ndarray, dict] | None:
    """The cached pixels and metadata, or None to decode again (said on ``log`` when a cache was damaged)."""
    meta = read_json(meta_path)
    if meta is None or not npy.exists():
        return None
    try:
        # Reading the whole file for its checksum also brings it into the page cache, which the
        # folds read from anyway.
        pixels = np.load(npy, mmap_mode="r") if _file_hash(npy) == meta.get("sha256") else None
    except (OSError, ValueError):
        pixels = None  # unreadable, or not an .npy
    if pixels is None or pixels.shape != (len(meta["kept"]), image_size, image_size, channels):
        log(f"the decoded-image cache {npy} changed on disk since it was written (its checksum or shape does not "
            "match); decoding again")  # fmt: skip
        return None
    return pixels, meta


def _file_hash(path: Path) -> str:
    """SHA-256 of a file, read a block at a time (measured: 0.02 s for the 5,216 training images at 56 px,
    0.23 s at 224 px, on two shared cores)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _check_space(cache_dir: Path, n_images: int, image_size: int, channels: int) -> None:
    """A UsageError, before any decoding, when the cache could not fit on its disk: an unreasonable
    --image-size is then named as such, not reported as a full disk half-way."""
    need, free = n_images * image_size**2 * channels, shutil.disk_usage(cache_dir).free
    if need > free:
        raise UsageError(
            f"--image-size {image_size}: the decoded-image cache would need {need / 1e9:,.1f} GB ({n_images} images "
            f"× {image_size}² pixels × {channels} channel(s), one byte each) but --cache-dir {cache_dir} has "
            f"{free / 1e9:,.1f} GB free. Choose a smaller --image-size (the default is 56 px) or a --cache-dir on a "
            "disk with room, then run again."
        )


def _decode_into(npy: Path, root: Path, images: ImageSet, image_size: int, channels: int, workers) -> dict:
    """Decode every file into ``npy`` (written atomically), chunk by chunk; return the cache's metadata.

    Raises UsageError, leaving nothing behind, when files still fail with a file-system error
    after the retries.
    """
    shape = (image_size, image_size, channels)
    skipped: dict[str, str] = {}
    content: dict[str, str] = {}
    with atomic_path(npy) as tmp, ThreadPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        out = _new_memmap(tmp, (len(images), *shape))
        pending = list(range(len(images)))
        for pause in (0.0, *RETRY_SECONDS):  # a moment's outage (a remount, an NFS hiccup) passes
            time.sleep(pause)
            failed = _decode_chunks(pool, root, images, pending, out, skipped, content)
            pending = sorted(failed)
            if not pending:
                break
        if pending:
            listed = "; ".join(f"{images.paths[i]} ({failed[i]})" for i in pending[:10])
            more = f" and {len(pending) - 10} more" if len(pending) > 10 else ""
            raise UsageError(
                f"{len(pending)} image(s) of --data {root} could not be read after {len(RETRY_SECONDS)} retries: "
                f"{listed}{more}. These are file-system errors (a moved or unmounted folder, permissions, a failing "
                "disk), not bad images, so nothing was cached. Fix access to the files and run again."
            )
        out.flush()
        kept = [i for i, rel in enumerate(images.paths) if rel not in skipped]
        if len(kept) < len(images):  # drop the unreadable files' slots, chunk by chunk
            with atomic_path(tmp) as compact_path:
                compact = _new_memmap(compact_path, (len(kept), *shape))
                for start in range(0, len(kept), CHUNK):
                    compact[start : start + CHUNK] = out[kept[start : start + CHUNK]]
                compact.flush()
    return {"kept": kept, "skipped": skipped, "image_size": image_size, "channels": channels, "content": content}


def _new_memmap(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A uint8 ``.npy`` of ``shape`` at ``path``, its disk space reserved now: a full disk is then an
    OSError here, not a crash (SIGBUS) when a page of the mapping is first written."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    if hasattr(os, "posix_fallocate"):  # Linux and most Unixes
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, os.path.getsize(path))
    return out


def _decode_chunks(
    pool, root: Path, images: ImageSet, indices: list[int], out: np.ndarray, skipped: dict, content: dict
) -> dict:
    """Decode ``images.paths[indices]`` into ``out``, CHUNK at a time; add content errors to ``skipped`` and each
    file's digest to ``content``. Returns the file-system failures by index."""
    _, size, _, channels = out.shape
    failed = {}
    for start in range(0, len(indices), CHUNK):
        chunk = indices[start : start + CHUNK]
        # PIL releases the GIL while decoding: threads use every core.
        decoded = pool.map(lambda i: _try_decode(root / images.paths[i], size, channels), chunk)
        for i, got in zip(chunk, decoded, strict=True):
            if isinstance(got, ReadFailure):
                failed[i] = got
                continue
            pixels, digest = got
            if digest is not None:
                content[images.paths[i]] = digest
            if isinstance(pixels, str):
                skipped[images.paths[i]] = pixels
            else:
                out[i] = pixels
    return failed


def _images(images: ImageSet, pixels: np.ndarray, meta: dict) -> Images:
    kept = np.asarray(meta["kept"], dtype=np.int64)
    return Images(
        pixels=pixels,
        labels=images.labels[kept],
        paths=tuple(images.paths[i] for i in kept),
        skipped=dict(meta["skipped"]),
        content=dict(meta["content"]),
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
