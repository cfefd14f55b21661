import errno
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark import UsageError
from benchmark.data import images as data_module
from benchmark.data.images import decode, discover, file_table, fingerprint, load_images, warn_skipped
from tests.conftest import REAL_224, REAL_FULLRES, ROOT, link_kaggle_subset, real_files, write_image


@pytest.mark.realdata
def test_discover_reads_the_real_kaggle_split():
    ds = discover(REAL_224)
    assert ds.classes == ("NORMAL", "PNEUMONIA")
    assert ds.train.counts() == [1341, 3875]
    assert ds.test.counts() == [234, 390]
    assert all(p.startswith("train/") for p in ds.train.paths)


@pytest.mark.realdata
def test_wrapper_folder_and_archive_junk_are_skipped(tmp_path):
    data = link_kaggle_subset(tmp_path, {"NORMAL": 4, "PNEUMONIA": 5}, test_per_class=2)
    ds = discover(data)
    assert ds.train.counts() == [4, 5] and ds.test.counts() == [2, 2]
    assert all(p.startswith("chest_xray/chest_xray/train/") for p in ds.train.paths)
    assert not any("__MACOSX" in p or "/._" in p or "DS_Store" in p or "Thumbs" in p for p in ds.train.paths)


def test_val_is_pooled_into_train_and_classes_without_train_split(synthetic_folder, tmp_path):
    root = synthetic_folder({"NORMAL": 3, "PNEUMONIA": 4})
    synthetic_folder({"NORMAL": 1, "PNEUMONIA": 2}, split="val", root=root)
    ds = discover(root)
    assert ds.train.counts() == [4, 6] and ds.test is None
    flat = synthetic_folder({"cats": 3, "dogs": 5}, split=None, root=tmp_path / "flat")
    ds = discover(flat)
    assert ds.classes == ("cats", "dogs")  # no PNEUMONIA: the second class in sorted order is positive
    assert ds.train.labels.tolist() == [0] * 3 + [1] * 5
    assert discover(flat, positive="cats").classes == ("dogs", "cats")


@pytest.mark.parametrize(
    "counts, message",
    [
        ({}, "no images found"),
        ({"NORMAL": 3}, "two or more non-empty class folders"),
        ({"NORMAL": 3, "PNEUMONIA": 0}, "an empty class folder \\(PNEUMONIA\\)"),
    ],
)
def test_bad_folders_give_clear_errors(synthetic_folder, tmp_path, counts, message):
    root = synthetic_folder(counts)
    with pytest.raises(UsageError, match=message):
        discover(root)


def test_a_lone_class_folder_is_not_mistaken_for_a_wrapper(synthetic_folder, tmp_path):
    with pytest.raises(UsageError, match="found 1 class\\(es\\): NORMAL \\(4 images\\)"):
        discover(synthetic_folder({"NORMAL": 4}, split=None))


def test_missing_folder_and_unknown_positive(synthetic_folder, tmp_path):
    with pytest.raises(UsageError, match="no such folder.*Kaggle"):
        discover(tmp_path / "nope")
    with pytest.raises(UsageError, match="--positive COVID: not a class"):
        discover(synthetic_folder({"NORMAL": 2, "PNEUMONIA": 2}), positive="COVID")


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16"])
def test_decode_modes_to_one_grey_channel(tmp_path, mode):
    path = write_image(tmp_path / "x.png", size=40, mode=mode, value=None if mode != "I;16" else 65535)
    pixels = decode(path, 16)
    assert pixels.shape == (16, 16, 1) and pixels.dtype == np.uint8
    if mode == "I;16":
        assert pixels.min() == 255  # full 16-bit white stays white
    assert decode(path, 16, channels=3).shape == (16, 16, 3)


def test_cmyk_jpeg_loads(tmp_path):
    path = tmp_path / "cmyk.jpeg"
    Image.new("CMYK", (30, 30), (0, 0, 0, 0)).save(path)
    assert decode(path, 8).mean() > 250  # no ink is white


@pytest.mark.realdata
def test_real_fullres_sample_matches_the_224_copy():
    """The same X-rays decoded from full resolution and from the 224 px copy agree at 64 px."""
    full = sorted((REAL_FULLRES / "train" / "NORMAL").iterdir())[:5]
    modes = {Image.open(p).mode for p in sorted((REAL_FULLRES / "train").rglob("*.jpeg"))}
    assert modes == {"L", "RGB"}
    for path in full:
        a = decode(path, 64).astype(float)
        b = decode(REAL_224 / "train" / "NORMAL" / path.name, 64).astype(float)
        assert np.abs(a - b).mean() < 6, path.name


def test_cache_is_written_once_and_corrupt_files_are_skipped(synthetic_folder, tmp_path):
    root = synthetic_folder({"NORMAL": 3, "PNEUMONIA": 3})
    (root / "train" / "NORMAL" / "truncated.jpeg").write_bytes(
        (root / "train" / "NORMAL" / "NORMAL-0.png").read_bytes()[:40]
    )
    (root / "train" / "PNEUMONIA" / "empty.jpeg").write_bytes(b"")
    (root / "train" / "PNEUMONIA" / "text.jpeg").write_text("not an image")
    ds = discover(root)
    logs = []
    images = load_images(root, ds.train, 8, cache_dir=tmp_path / "cache", log=logs.append)
    assert images.pixels.shape == (6, 8, 8, 1)
    assert isinstance(images.pixels, np.memmap)
    assert sorted(images.skipped) == [
        "train/NORMAL/truncated.jpeg",
        "train/PNEUMONIA/empty.jpeg",
        "train/PNEUMONIA/text.jpeg",
    ]
    assert images.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(logs) == 1  # decoded once
    again = load_images(root, ds.train, 8, cache_dir=tmp_path / "cache", log=logs.append)
    assert len(logs) == 1  # ... and read from the cache the second time
    np.testing.assert_array_equal(again.pixels, images.pixels)
    load_images(root, ds.train, 12, cache_dir=tmp_path / "cache", log=logs.append)
    assert len(logs) == 2  # another image size is another cache entry

    warnings = []
    warn_skipped(images.skipped, strict=False, log=warnings.append)
    assert warnings[0].startswith("warning: skipped 3 unreadable image(s): train/NORMAL/truncated.jpeg")
    with pytest.raises(UsageError, match="3 image\\(s\\) could not be read.*drop --strict"):
        warn_skipped(images.skipped, strict=True)


def test_truncated_cache_file_is_redone(synthetic_folder, tmp_path):
    root = synthetic_folder({"NORMAL": 3, "PNEUMONIA": 3})
    ds = discover(root)
    first = load_images(root, ds.train, 8, cache_dir=tmp_path / "cache", log=lambda m: None)
    expected = np.array(first.pixels)
    npy = next((tmp_path / "cache").glob("*.npy"))
    npy.write_bytes(npy.read_bytes()[:100])
    logs = []
    again = load_images(root, ds.train, 8, cache_dir=tmp_path / "cache", log=logs.append)
    assert "changed on disk" in logs[0] and logs[1].startswith("decoding 6 images") and len(logs) == 2
    np.testing.assert_array_equal(again.pixels, expected)


@pytest.mark.realdata
def test_a_cache_overwritten_in_place_is_decoded_again(tmp_path):
    """Same size, same name, other bytes: only the checksum in the metadata can tell."""
    data = link_kaggle_subset(tmp_path / "data", {"NORMAL": 4, "PNEUMONIA": 4}, wrapper=False)
    ds = discover(data)
    expected = np.array(load_images(data, ds.train, 32, cache_dir=tmp_path / "cache", log=lambda m: None).pixels)
    npy = next((tmp_path / "cache").glob("*.npy"))
    size, mtime = npy.stat().st_size, npy.stat().st_mtime_ns
    with open(npy, "r+b") as f:  # the pixels (after the .npy header) overwritten with noise, in place
        f.seek(size - expected.nbytes)
        f.write(np.random.default_rng(0).integers(0, 256, expected.nbytes, dtype=np.uint8).tobytes())
    os.utime(npy, ns=(mtime, mtime))
    assert npy.stat().st_size == size and not np.array_equal(np.load(npy), expected)
    logs = []
    again = load_images(data, ds.train, 32, cache_dir=tmp_path / "cache", log=logs.append)
    assert len(logs) == 2 and logs[0].startswith(f"the decoded-image cache {npy} changed on disk")
    assert logs[1].startswith("decoding 8 images")
    np.testing.assert_array_equal(again.pixels, expected)
    np.testing.assert_array_equal(again.pixels[0], decode(real_files("train", "NORMAL", 1)[0], 32))
    logs.clear()
    load_images(data, ds.train, 32, cache_dir=tmp_path / "cache", log=logs.append)
    assert logs == []  # the cache decoded again is whole: read without a word


@pytest.mark.realdata
def test_an_image_size_whose_cache_cannot_fit_is_refused_before_decoding(tmp_path, monkeypatch):
    data = link_kaggle_subset(tmp_path / "data", {"NORMAL": 2, "PNEUMONIA": 2}, wrapper=False)
    ds = discover(data)
    (tmp_path / "cache").mkdir()
    free = shutil.disk_usage(tmp_path / "cache").free
    size = math.isqrt(free // 2) + 1  # 4 images × size² bytes: twice what the disk holds
    decoded = []
    monkeypatch.setattr(data_module, "decode", lambda *args: decoded.append(args))
    # Were the check missing, the cache's space would be reserved next: fail that as a full disk would,
    # without filling the disk shared with everything else.

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    need = re.escape(f"{4 * size**2 / 1e9:,.1f}")
    with pytest.raises(UsageError, match=rf"^--image-size {size}: the decoded-image cache would need {need} GB \(4 "
                       rf"images × {size}² pixels × 1 channel\(s\), one byte each\) but --cache-dir .*cache has "
                       r"[\d,.]+ GB free\. Choose a smaller --image-size"):  # fmt: skip
        load_images(data, ds.train, size, cache_dir=tmp_path / "cache", log=lambda m: None)
    assert decoded == [] and [p.suffix for p in (tmp_path / "cache").iterdir()] == [".lock"]


def failing_reads(monkeypatch, fail: dict[str, int], error=FileNotFoundError):
    """Make reading fail for the files named in ``fail`` (file name → how many first attempts fail,
    -1: always) with a file-system error, as a vanished folder or a flaky disk would."""
    real = data_module.read_file
    calls = {}

    def flaky(path, *args):
        name = Path(path).name
        calls[name] = calls.get(name, 0) + 1
        if name in fail and (fail[name] < 0 or calls[name] <= fail[name]):
            code = {FileNotFoundError: errno.ENOENT, PermissionError: errno.EACCES, OSError: errno.EIO}[error]
            raise error(code, os.strerror(code), str(path))
        return real(path, *args)

    monkeypatch.setattr(data_module, "read_file", flaky)
    monkeypatch.setattr(data_module, "RETRY_SECONDS", (0.0, 0.0, 0.0))
    return calls


@pytest.mark.parametrize("error", [FileNotFoundError, PermissionError, OSError])
def test_a_transient_read_error_is_retried_and_never_cached(synthetic_folder, tmp_path, monkeypatch, error):
    root = synthetic_folder({"NORMAL": 3, "PNEUMONIA": 3})
    ds = discover(root)
    clean = np.array(load_images(root, ds.train, 8, cache_dir=tmp_path / "clean", log=lambda m: None).pixels)
    calls = failing_reads(monkeypatch, {"NORMAL-1.png": 1, "PNEUMONIA-2.png": 2}, error)
    images = load_images(root, ds.train, 8, cache_dir=tmp_path / "cache", log=lambda m: None)
    assert images.skipped == {} and len(images.paths) == 6
    np.testing.assert_array_equal(images.pixels, clean)
    assert calls["NORMAL-1.png"] == 2 and calls["PNEUMONIA-2.png"] == 3 and calls["NORMAL-0.png"] == 1


def test_a_persistent_read_error_stops_with_nothing_cached(synthetic_folder, tmp_path, monkeypatch):
    root = synthetic_folder({"NORMAL": 3, "PNEUMONIA": 3})
    ds = discover(root)
    calls = failing_reads(monkeypatch, {"NORMAL-1.png": -1})
    with pytest.raises(UsageError, match=r"1 image\(s\) .*could not be read after 3 retries: train/NORMAL/NORMAL-1.png "
                       r"\(FileNotFoundError: No such file or directory\).*nothing was cached"):  # fmt: skip
        load_images(root, ds.train, 8, cache_dir=tmp_path / "cache", log=lambda m: None)
    assert calls["NORMAL-1.png"] == 4
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".lock"]  # no .npy, no .json, no temporary
    monkeypatch.undo()  # the file is readable again: decoded, not skipped
    assert load_images(root, ds.train, 8, cache_dir=tmp_path / "cache", log=lambda m: None).skipped == {}


def test_decoding_streams_in_chunks_and_drops_unreadable_slots(synthetic_folder, tmp_path, monkeypatch):
    root = synthetic_folder({"NORMAL": 5, "PNEUMONIA": 6})
    (root / "train" / "NORMAL" / "NORMAL-2.png").write_text("not an image")
    ds = discover(root)
    whole = load_images(root, ds.train, 8, cache_dir=tmp_path / "whole", log=lambda m: None)
    monkeypatch.setattr(data_module, "CHUNK", 3)
    chunked = load_images(root, ds.train, 8, cache_dir=tmp_path / "chunked", log=lambda m: None)
    assert chunked.pixels.shape == (10, 8, 8, 1) and list(chunked.skipped) == ["train/NORMAL/NORMAL-2.png"]
    np.testing.assert_array_equal(chunked.pixels, whole.pixels)
    assert chunked.paths == whole.paths and "train/NORMAL/NORMAL-2.png" not in chunked.paths
    np.testing.assert_array_equal(chunked.pixels[2], decode(root / "train/NORMAL/NORMAL-3.png", 8))


def test_deleted_cache_files_are_rebuilt(synthetic_folder, tmp_path):
    root = synthetic_folder({"NORMAL": 3, "PNEUMONIA": 3})
    ds = discover(root)
    first = np.array(load_images(root, ds.train, 8, cache_dir=tmp_path / "cache", log=lambda m: None).pixels)
    for f in (tmp_path / "cache").iterdir():
        f.unlink()
    logs = []
    again = load_images(root, ds.train, 8, cache_dir=tmp_path / "cache", log=logs.append)
    assert len(logs) == 1 and logs[0].startswith("decoding 6 images")
    np.testing.assert_array_equal(again.pixels, first)


def test_a_full_cache_disk_stops_cleanly_and_the_next_run_decodes(synthetic_folder, tmp_path, monkeypatch):
    root = synthetic_folder({"NORMAL": 3, "PNEUMONIA": 3})
    ds = discover(root)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(UsageError, match=r"--cache-dir .*cache: could not write the decoded-image cache \(No space "
                       r"left on device\)\. Nothing half-written was kept\. Free disk space"):  # fmt: skip
        load_images(root, ds.train, 8, cache_dir=tmp_path / "cache", log=lambda m: None)
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".lock"]
    monkeypatch.undo()
    assert load_images(root, ds.train, 8, cache_dir=tmp_path / "cache", log=lambda m: None).pixels.shape[0] == 6


@pytest.mark.realdata
def test_two_runs_on_one_cache_key_decode_once(tmp_path):
    data = link_kaggle_subset(tmp_path / "data", {"NORMAL": 40, "PNEUMONIA": 40}, wrapper=False)
    code = (
        "import sys, numpy as np\n"
        "from benchmark.data.images import discover, load_images\n"
        "ds = discover(sys.argv[1])\n"
        "images = load_images(ds.root, ds.train, 64, cache_dir=sys.argv[2], workers=1)\n"
        "print('sum', int(np.asarray(images.pixels, dtype=np.int64).sum()))\n"
    )
    cmd = [sys.executable, "-c", code, str(data), str(tmp_path / "cache")]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sum(out.count("decoding 80 images") for out in outputs) == 1  # one decoded, the other waited
    assert len({out.splitlines()[-1] for out in outputs}) == 1  # and read the same pixels


@pytest.mark.realdata
def test_a_fifo_under_an_image_name_is_skipped_and_listed_not_read(tmp_path):
    """Opening a FIFO for reading waits for a writer forever; the run held the cache lock meanwhile."""
    data = link_kaggle_subset(tmp_path / "data", {"NORMAL": 3, "PNEUMONIA": 3}, wrapper=False)
    os.mkfifo(data / "train" / "PNEUMONIA" / "pipe.jpeg")
    (data / "train" / "NORMAL" / "link-to-pipe.png").symlink_to(data / "train" / "PNEUMONIA" / "pipe.jpeg")
    code = (
        "import sys, numpy as np\n"
        "from benchmark.data.images import decode, discover, load_images, warn_skipped\n"
        "ds = discover(sys.argv[1])\n"
        "images = load_images(ds.root, ds.train, 32, cache_dir=sys.argv[2], log=lambda m: None)\n"
        "warn_skipped(images.skipped, strict=False, log=print)\n"
        "print('kept', len(images.paths), images.labels.tolist())\n"
        "print('same', all(np.array_equal(p, decode(ds.root / r, 32)) for p, r in zip(images.pixels, images.paths)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(data), str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    warning, kept, same = proc.stdout.splitlines()
    assert warning == (
        "warning: skipped 2 unreadable image(s): train/NORMAL/link-to-pipe.png (NotARegularFile: a FIFO (named pipe), "
        "not a regular file; only regular files are read); train/PNEUMONIA/pipe.jpeg (NotARegularFile: a FIFO "
        "(named pipe), not a regular file; only regular files are read)"
    )
    assert kept == "kept 6 [0, 0, 0, 1, 1, 1]" and same == "same True"  # the symlinked real images are read


@pytest.mark.realdata
def test_a_test_or_val_class_that_train_lacks_is_an_error(tmp_path):
    data = link_kaggle_subset(tmp_path / "data", {"NORMAL": 3, "PNEUMONIA": 3}, test_per_class=2, wrapper=False)
    (data / "test" / "OTHER").mkdir()
    for f in real_files("test", "NORMAL", 4)[2:]:
        (data / "test" / "OTHER" / f.name).symlink_to(f)
    with pytest.raises(UsageError, match=r"^--data .*data: test/ holds images of class\(es\) that train/ lacks: "
                       r"test/OTHER/ \(OTHER, 2 images\); the training classes are NORMAL, PNEUMONIA\. The models "
                       r"learn only the training classes, so these test images could not be scored\."):  # fmt: skip
        discover(data)
    (data / "test" / "OTHER").rename(data / "val")
    (data / "val" / "OTHER").mkdir()
    for f in (data / "val").glob("*.jpeg"):
        f.rename(data / "val" / "OTHER" / f.name)
    with pytest.raises(UsageError, match=r"val/ holds images of class\(es\) that train/ lacks: val/OTHER/ \(OTHER, "
                       r"2 images\).*pooled into the training images"):  # fmt: skip
        discover(data)
    (data / "val" / "OTHER").rename(data / "val" / "NORMAL")
    shutil.rmtree(data / "test" / "PNEUMONIA")  # a test split without one class is still scored
    ds = discover(data)
    assert ds.train.counts() == [5, 3] and ds.test.counts() == [2, 0]


def test_a_symlink_loop_is_listed_once(synthetic_folder):
    root = synthetic_folder({"NORMAL": 3, "PNEUMONIA": 4})
    (root / "train" / "NORMAL" / "again").symlink_to(root / "train" / "NORMAL")  # a loop onto itself
    write_image(root / "train" / "PNEUMONIA" / "sub" / "deeper.png")
    (root / "train" / "PNEUMONIA" / "sub" / "back").symlink_to(root / "train" / "PNEUMONIA")  # a loop through sub/
    ds = discover(root)
    assert ds.train.counts() == [3, 5]  # every image once, and no hang
    assert "train/PNEUMONIA/sub/deeper.png" in ds.train.paths


def test_a_folder_that_cannot_be_listed_is_an_error(synthetic_folder, monkeypatch):
    root = synthetic_folder({"NORMAL": 3, "PNEUMONIA": 4})
    (root / "train" / "PNEUMONIA" / "more").mkdir()
    write_image(root / "train" / "PNEUMONIA" / "more" / "x.png")
    real = os.scandir

    def denied(path="."):
        if Path(path).name == "more":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", denied)
    with pytest.raises(UsageError, match=r"cannot list the folder .*PNEUMONIA/more \(Permission denied\)"):
        discover(root)


@pytest.mark.realdata
def test_dataset_fingerprint_follows_content_not_spelling(tmp_path, monkeypatch):
    data = link_kaggle_subset(tmp_path / "data", {"NORMAL": 3, "PNEUMONIA": 3}, test_per_class=2, wrapper=False)
    (tmp_path / "link").symlink_to(data)
    rows = file_table(discover(data))
    assert len(rows) == 10 and ("train/NORMAL/" + real_files("train", "NORMAL", 1)[0].name, "NORMAL") in [
        r[:2] for r in rows
    ]
    assert fingerprint(file_table(discover(tmp_path / "link"))) == fingerprint(rows)
    monkeypatch.chdir(tmp_path)
    assert fingerprint(file_table(discover(Path("data")))) == fingerprint(rows)
    data.rename(tmp_path / "moved")
    assert fingerprint(file_table(discover(tmp_path / "moved"))) == fingerprint(rows)
    # Another positive class labels the same files the same way: the table names classes, not 0/1.
    assert fingerprint(file_table(discover(tmp_path / "moved", positive="NORMAL"))) == fingerprint(rows)
    write_image(tmp_path / "moved" / "train" / "NORMAL" / "new.png")
    assert fingerprint(file_table(discover(tmp_path / "moved"))) != fingerprint(rows)
