import gzip

import numpy as np
import pytest

from fmnist import dataset
from fmnist.stage_runner import StageError
from stages import preprocess
from tests.conftest import idx_bytes, synthetic_split, write_idx


@pytest.fixture
def split_files(tmp_path):
    images, labels = synthetic_split(30, seed=0)
    write_idx(tmp_path / "images.gz", images)
    write_idx(tmp_path / "labels.gz", labels)
    return tmp_path / "images.gz", tmp_path / "labels.gz", images, labels


def test_read_split_round_trips(split_files):
    images_path, labels_path, images, labels = split_files
    x, y = dataset.read_split(images_path, labels_path)
    assert x.shape == (30, 28, 28, 1) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[..., 0], images)
    np.testing.assert_array_equal(y, labels)


def expect_error(split_files, match, images_path=None, labels_path=None):
    with pytest.raises(StageError, match=match):
        dataset.read_split(images_path or split_files[0], labels_path or split_files[1])


def test_wrong_magic_number(split_files, tmp_path):
    data = bytearray(idx_bytes(split_files[2]))
    data[2] = 0x0D  # float32 instead of ubyte
    (tmp_path / "bad.gz").write_bytes(gzip.compress(bytes(data)))
    expect_error(split_files, r"bad.gz: bad IDX magic number 0x00000d03, expected 0x00000803", tmp_path / "bad.gz")


def test_labels_given_as_images(split_files):
    expect_error(split_files, "bad IDX magic number", images_path=split_files[1])


def test_wrong_image_size(split_files, tmp_path):
    write_idx(tmp_path / "small.gz", np.zeros((30, 14, 14), np.uint8))
    expect_error(split_files, r"images are \(14, 14\), expected \(28, 28\)", tmp_path / "small.gz")


def test_count_mismatch(split_files, tmp_path):
    write_idx(tmp_path / "few.gz", split_files[3][:20])
    expect_error(split_files, "has 30 images but .*few.gz has 20 labels", labels_path=tmp_path / "few.gz")


def test_label_out_of_range(split_files, tmp_path):
    labels = split_files[3].copy()
    labels[7] = 10
    write_idx(tmp_path / "labels.gz", labels)
    expect_error(split_files, r"label 10 at index 7 is outside 0..9", labels_path=tmp_path / "labels.gz")


def test_truncated_payload(split_files, tmp_path):
    (tmp_path / "short.gz").write_bytes(gzip.compress(idx_bytes(split_files[2])[:-100]))
    expect_error(
        split_files, r"header says dimensions \(30, 28, 28\) \(23520 bytes\), file has 23420", tmp_path / "short.gz"
    )


def test_truncated_gzip_stream(split_files, tmp_path):
    (tmp_path / "cut.gz").write_bytes(split_files[0].read_bytes()[:500])
    expect_error(split_files, "cut.gz: not a readable gzip file", tmp_path / "cut.gz")


def test_not_gzip(split_files, tmp_path):
    (tmp_path / "plain").write_bytes(idx_bytes(split_files[2]))
    expect_error(split_files, "plain: not a readable gzip file", tmp_path / "plain")


def test_split_is_seeded_disjoint_and_complete():
    x = np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1)
    y = np.arange(100) % 10
    (train, val) = preprocess.split_validation(x, y, 0.2, seed=7)
    again = preprocess.split_validation(x, y, 0.2, seed=7)
    other = preprocess.split_validation(x, y, 0.2, seed=8)
    assert len(val[0]) == 20 and len(train[0]) == 80
    assert sorted(np.concatenate([train[0], val[0]]).ravel()) == list(range(100))
    np.testing.assert_array_equal(val[0], again[1][0])
    assert not np.array_equal(val[0], other[1][0])


def test_arrays_round_trip_without_pickle(tmp_path):
    x, y = synthetic_split(12, seed=3)
    dataset.save_arrays(tmp_path / "a.npz", x, y)
    x2, y2 = dataset.load_arrays(tmp_path / "a.npz")
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


def test_truncated_array_file_is_a_clear_error(tmp_path):
    x, y = synthetic_split(12, seed=3)
    dataset.save_arrays(tmp_path / "a.npz", x, y)
    data = (tmp_path / "a.npz").read_bytes()
    (tmp_path / "a.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(StageError, match=r"a\.npz: not a readable prepared-array file"):
        dataset.load_arrays(tmp_path / "a.npz")


def test_sample_grid_png(tmp_path):
    from fmnist.figures import image_grid, save_png

    x, y = synthetic_split(16, seed=4)
    save_png(image_grid(x[..., None], dataset.class_names(y)), tmp_path / "grid.png")
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
