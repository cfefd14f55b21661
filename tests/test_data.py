import numpy as np
import pytest
from PIL import Image

from benchmark import UsageError
from benchmark.data import decode, discover, load_images, warn_skipped
from tests.conftest import REAL_224, REAL_FULLRES, link_kaggle_subset, write_image


def test_discover_reads_the_real_kaggle_split():
    ds = discover(REAL_224)
    assert ds.classes == ("NORMAL", "PNEUMONIA")
    assert ds.train.counts() == [1341, 3875]
    assert ds.test.counts() == [234, 390]
    assert all(p.startswith("train/") for p in ds.train.paths)


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
        ({"NORMAL": 3}, "exactly two non-empty class folders"),
        ({"NORMAL": 3, "PNEUMONIA": 0}, "an empty class folder \\(PNEUMONIA\\)"),
        ({"A": 2, "B": 2, "C": 2}, "found 3 class\\(es\\)"),
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
    assert len(logs) == 1
    np.testing.assert_array_equal(again.pixels, expected)
