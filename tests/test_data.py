"""Tests for course_lib.data: loading, cache, errors, statistics, subsets and loaders.

Unit tests use small synthetic arrays. The real-data tests run only when CIFAR10_NPZ is set.
"""

import hashlib
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from course_lib import data as cd
from course_lib.augment import AugmentConfig, eval_transforms, train_transforms
from course_lib.data import (
    AugmentedDataset,
    Cifar10,
    DatasetNotFoundError,
    channel_stats,
    dataset_stats,
    load_cifar10,
    make_loaders,
    subset,
)

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def synthetic_arrays(n_train: int = 40, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 10).astype(np.uint8),
        "classes": np.array(cd.CLASSES),
    }


def synthetic_data(n_train: int = 40, n_test: int = 20) -> Cifar10:
    a = synthetic_arrays(n_train, n_test)
    return Cifar10(
        a["x_train"],
        a["y_train"].astype(np.int64),
        a["x_test"],
        a["y_test"].astype(np.int64),
        cd.CLASSES,
    )


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(cd.ENV_VAR, raising=False)


class FakeTorchvisionCIFAR10:
    """Stands in for torchvision.datasets.CIFAR10 after a successful download."""

    classes = list(cd.CLASSES)

    def __init__(self, root, train=True, download=False):
        a = synthetic_arrays()
        split = "train" if train else "test"
        self.data, self.targets = a[f"x_{split}"], a[f"y_{split}"].tolist()


# --- loading --------------------------------------------------------------------------------


def test_load_reads_the_npz_named_by_cifar10_npz(tmp_path, monkeypatch, capsys):
    np.savez(tmp_path / "c.npz", **synthetic_arrays())
    monkeypatch.setenv(cd.ENV_VAR, str(tmp_path / "c.npz"))
    data = load_cifar10(tmp_path / "unused")
    assert data.x_train.shape == (40, 32, 32, 3) and data.x_train.dtype == np.uint8
    assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    assert data.classes == cd.CLASSES and isinstance(data.classes[0], str)
    # one line naming the source, and no machine path in it (notebook output stays stable)
    # an unknown file is named by its fingerprint, never passed off as the real test set
    label = f"CIFAR-10 (unverified copy {fingerprint(data.x_test)})"
    assert data.label == label
    assert capsys.readouterr().out == f"{label} from $CIFAR10_NPZ: 40 train, 20 test images\n"
    assert not (tmp_path / "unused").exists()


def fingerprint(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:16]


def test_cifar10_npz_pointing_nowhere_names_the_variable_and_path(tmp_path, monkeypatch):
    missing = tmp_path / "nope.npz"
    monkeypatch.setenv(cd.ENV_VAR, str(missing))
    message = f"Could not read the file named by CIFAR10_NPZ \\('{missing}'\\): no such file"
    with pytest.raises(DatasetNotFoundError, match=message):
        load_cifar10(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.pop("y_test"), r"lacks key\(s\) \['y_test'\]"),
        (lambda a: a.update(x_train=a["x_train"].astype(np.float32)), r"x_train must be uint8"),
        (lambda a: a.update(x_test=a["x_test"][..., :1]), r"\(N, 32, 32, 3\).*\(20, 32, 32, 1\)"),
        (lambda a: a.update(y_train=a["y_train"][:5]), r"y_train its N labels, got .* \(5,\)"),
        (lambda a: a.update(y_test=a["y_test"] + 5), r"y_test must lie in 0-9, got 5-14"),
    ],
)
def test_malformed_cifar10_npz_is_refused_with_a_message(tmp_path, monkeypatch, change, message):
    arrays = synthetic_arrays()
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    monkeypatch.setenv(cd.ENV_VAR, str(tmp_path / "bad.npz"))
    with pytest.raises(ValueError, match=f"CIFAR10_NPZ.*{message}"):
        load_cifar10(tmp_path)


@pytest.mark.parametrize("content", [b"not a zip file", b""])
def test_a_file_that_is_not_an_npz_is_named_as_such_not_as_pickled_data(
    tmp_path, monkeypatch, content
):
    (tmp_path / "c.npz").write_bytes(content)
    monkeypatch.setenv(cd.ENV_VAR, str(tmp_path / "c.npz"))
    message = "Could not read the file named by CIFAR10_NPZ .*: not an .npz archive"
    with pytest.raises(DatasetNotFoundError, match=message):
        load_cifar10(tmp_path)


def test_torchvision_data_is_cached_and_the_cache_is_read_next_time(
    tmp_path, monkeypatch, no_env, capsys
):
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeTorchvisionCIFAR10)
    first = load_cifar10(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [cd.CACHE_NAME]  # no temp file left

    def refuse(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", refuse)
    second = load_cifar10(tmp_path)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert second.y_train.dtype == np.int64 and second.classes == cd.CLASSES
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "CIFAR-10 from torchvision, cached to cifar10_uint8.npz: 40 train, 20 test images",
        "CIFAR-10 from cache cifar10_uint8.npz: 40 train, 20 test images",
    ]
    with np.load(tmp_path / cd.CACHE_NAME) as f:  # uncompressed, so it loads fast
        assert all(info.compress_type == 0 for info in f.zip.infolist())


def test_failed_cache_write_leaves_no_partial_file(tmp_path, monkeypatch, no_env):
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeTorchvisionCIFAR10)

    def savez_then_fail(file, **arrays):
        Path(file).write_bytes(b"half an npz")
        raise OSError("No space left on device")

    monkeypatch.setattr(cd.np, "savez", savez_then_fail)
    with pytest.warns(UserWarning, match="Could not write the cache .*No space left"):
        data = load_cifar10(tmp_path, verbose=False)
    assert len(data.x_train) == 40
    assert list(tmp_path.iterdir()) == []  # no partial cache or temporary file


def partial_download(url, download_root, filename=None, md5=None, **kwargs):
    """What a dropped connection leaves: the folder, part of the archive, then an error."""
    Path(download_root).mkdir(parents=True, exist_ok=True)
    (Path(download_root) / filename).write_bytes(b"\x1f\x8b partial")
    raise urllib.error.URLError("Name or service not known")


@pytest.mark.parametrize("root_exists", [True, False])
def test_no_data_and_failed_download_raise_one_clear_error(
    tmp_path, monkeypatch, no_env, root_exists
):
    monkeypatch.setattr(
        torchvision.datasets.cifar, "download_and_extract_archive", partial_download
    )
    root = tmp_path / "data" if root_exists else tmp_path / "new" / "data"
    if root_exists:
        root.mkdir()
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar10(root)
    message = str(info.value)
    for part in (
        "CIFAR10_NPZ is not set",
        f"there is no cache '{root / 'cifar10_uint8.npz'}'",
        "torchvision's download failed (URLError",
        "Set CIFAR10_NPZ=/path/to/cifar10.npz",
        "put cifar10_uint8.npz or torchvision's 'cifar-10-batches-py' folder into",
    ):
        assert part in message
    assert info.value.__suppress_context__ and info.value.__cause__ is None  # raised from None


# --- statistics -----------------------------------------------------------------------------


def test_channel_stats_on_known_values():
    x = np.zeros((4, 2, 2, 3), dtype=np.uint8)
    x[:2, :, :, 0] = 255  # R: half 0, half 255
    x[:, :, :, 1] = 51  # G: constant 0.2
    x[:, :, :, 2] = np.array([0, 51, 102, 153])[:, None, None]  # B: 0, .2, .4, .6
    s = channel_stats(x)
    np.testing.assert_allclose(s["mean"], [0.5, 0.2, 0.3])
    np.testing.assert_allclose(s["std"], np.sqrt([0.25, 0.0, 0.05]), atol=1e-12)
    assert all(v.dtype == np.float64 and v.shape == (3,) for v in s.values())


def test_channel_stats_equals_numpy_over_the_whole_array():
    x = np.random.default_rng(1).integers(0, 256, (37, 8, 8, 3), dtype=np.uint8)
    s = channel_stats(x)
    np.testing.assert_allclose(s["mean"], (x / 255).mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(s["std"], (x / 255).std(axis=(0, 1, 2)), rtol=1e-12)


def test_channel_stats_rejects_a_single_image_with_a_message():
    with pytest.raises(ValueError, match=r"non-empty uint8 NHWC images, got uint8 \(32, 32, 3\)"):
        channel_stats(np.zeros((32, 32, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="non-empty uint8 NHWC images, got float32"):
        channel_stats(np.zeros((2, 32, 32, 3), dtype=np.float32))


def test_dataset_stats_are_the_channel_stats_of_each_split():
    x_train, x_test = np.full((2, 2, 2, 3), 51, np.uint8), np.full((3, 2, 2, 3), 102, np.uint8)
    data = Cifar10(x_train, np.zeros(2, np.int64), x_test, np.zeros(3, np.int64), cd.CLASSES)
    stats = dataset_stats(data)
    np.testing.assert_allclose(stats["train"]["mean"], [0.2] * 3)
    np.testing.assert_allclose(stats["test"]["mean"], [0.4] * 3)
    np.testing.assert_allclose(stats["test"]["std"], [0.0] * 3, atol=1e-12)


# --- subsets, datasets, loaders -------------------------------------------------------------


def test_subset_keeps_the_class_proportions_and_repeats_with_the_seed():
    data = synthetic_data(200, 100)
    small = subset(data, 50, 30, seed=3)
    assert small.x_train.shape == (50, 32, 32, 3) and len(small.y_test) == 30
    assert np.bincount(small.y_train, minlength=10).tolist() == [5] * 10
    assert np.bincount(small.y_test, minlength=10).tolist() == [3] * 10
    assert np.array_equal(small.x_train, subset(data, 50, 30, seed=3).x_train)
    assert not np.array_equal(small.x_train, subset(data, 50, 30, seed=4).x_train)
    # the images travel with their labels
    index = [np.flatnonzero((data.x_train == img).all(axis=(1, 2, 3)))[0] for img in small.x_train]
    assert np.array_equal(data.y_train[index], small.y_train)


def test_subset_of_unbalanced_labels_is_proportional():
    y = np.repeat(np.arange(3), [60, 30, 10])
    x = np.zeros((100, 32, 32, 3), dtype=np.uint8)
    small = subset(Cifar10(x, y, x, y, cd.CLASSES), 10, 20)
    assert np.bincount(small.y_train).tolist() == [6, 3, 1]
    assert np.bincount(small.y_test).tolist() == [12, 6, 2]


def test_subset_larger_than_the_data_is_refused_with_a_message():
    with pytest.raises(ValueError, match="n_test must be between 1 and 20, got 21"):
        subset(synthetic_data(), 10, 21)


def test_augmented_dataset_item_is_chw_float_tensor_and_int_label():
    data = synthetic_data()
    item = AugmentedDataset(data.x_train, data.y_train, train_transforms(MEAN, STD, seed=0))[3]
    assert isinstance(item[0], torch.Tensor) and item[0].dtype == torch.float32
    assert item[0].shape == (3, 32, 32)
    assert type(item[1]) is int and item[1] == 3
    raw = AugmentedDataset(data.x_train, data.y_train)[3][0]
    assert torch.equal(raw, torch.from_numpy(data.x_train[3].transpose(2, 0, 1) / 255).float())


def test_augmented_dataset_rejects_float_images_with_a_message():
    with pytest.raises(ValueError, match="images must be uint8 NHWC, got float32 "):
        AugmentedDataset(np.zeros((2, 32, 32, 3), np.float32), np.zeros(2))


def test_make_loaders_batches_have_the_right_shapes_and_keep_the_last_short_batch():
    data = synthetic_data(40, 20)
    train, test = make_loaders(
        data, train_transforms(MEAN, STD, seed=0), eval_transforms(MEAN, STD), 16, 0
    )
    shapes = [(tuple(x.shape), tuple(y.shape), y.dtype) for x, y in train]
    assert shapes == [((16, 3, 32, 32), (16,), torch.int64)] * 2 + [
        ((8, 3, 32, 32), (8,), torch.int64)
    ]
    assert [len(y) for _, y in test] == [16, 4]
    assert torch.equal(torch.cat([y for _, y in test]), torch.from_numpy(data.y_test))


def test_train_loader_order_repeats_with_the_seed():
    data = synthetic_data(40, 20)

    def labels(seed):
        train, _ = make_loaders(data, None, None, batch_size=8, num_workers=0, seed=seed)
        return torch.cat([y for _, y in train])

    assert torch.equal(labels(0), labels(0)) and not torch.equal(labels(0), labels(1))


def test_loader_workers_draw_different_augmentations_and_repeat_with_the_seed():
    same = np.repeat(synthetic_arrays()["x_train"][:1], 16, axis=0)
    data = Cifar10(same, np.zeros(16, np.int64), same[:4], np.zeros(4, np.int64), cd.CLASSES)
    only_hole = AugmentConfig(flip_p=0.0, affine_p=0.0, cutout_p=1.0)

    def batches():
        pipeline = train_transforms(MEAN, STD, only_hole, seed=0)
        train, _ = make_loaders(data, pipeline, None, batch_size=4, num_workers=2, seed=0)
        return [x for x, _ in train]

    first = batches()
    # worker 0 makes batches 0 and 2, worker 1 batches 1 and 3; unseeded copies would match
    assert not torch.equal(first[0], first[1])
    assert all(torch.equal(a, b) for a, b in zip(first, batches(), strict=True))


def test_default_workers_are_zero_on_cpu_and_leave_a_core_on_cuda(monkeypatch):
    data = synthetic_data()

    def workers(cuda: bool, cores: int) -> list[int]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
        return [loader.num_workers for loader in make_loaders(data, None, None)]

    assert workers(False, 16) == [0, 0]
    assert workers(True, 16) == [8, 8]
    assert workers(True, 2) == [1, 1]
    assert make_loaders(data, None, None, num_workers=2)[0].num_workers == 2


# --- the real CIFAR-10 (only where CIFAR10_NPZ is set) -----------------------------------------


@pytest.fixture(scope="module")
def cifar10():
    if not os.environ.get(cd.ENV_VAR):
        pytest.skip("CIFAR10_NPZ is not set")
    return load_cifar10(verbose=False)


def test_the_label_comes_from_the_test_images_not_from_the_source(monkeypatch):
    x_test = synthetic_arrays()["x_test"]
    assert cd.dataset_label(x_test, from_torchvision=True) == "CIFAR-10"
    monkeypatch.setitem(cd.KNOWN_COPIES, fingerprint(x_test), "CIFAR-10 (some copy)")
    assert cd.dataset_label(x_test, from_torchvision=True) == "CIFAR-10 (some copy)"
    changed = x_test.copy()
    changed[0, 0, 0, 0] ^= 1  # one pixel off is another copy
    assert cd.dataset_label(changed, from_torchvision=False).startswith("CIFAR-10 (unverified")


def test_a_subset_keeps_the_label_of_its_data():
    data = synthetic_data()._replace(label="CIFAR-10 (some copy)")
    assert subset(data, 10, 10).label == "CIFAR-10 (some copy)"


def test_real_offline_copy_is_recognised_as_the_jpeg_copy(cifar10):
    assert cifar10.label == "CIFAR-10 (JPEG copy)"


def test_real_cifar10_has_the_official_shapes(cifar10):
    assert cifar10.x_train.shape == (50000, 32, 32, 3) and cifar10.x_train.dtype == np.uint8
    assert cifar10.x_test.shape == (10000, 32, 32, 3)
    assert cifar10.y_train.shape == (50000,) and cifar10.y_train.dtype == np.int64
    assert cifar10.classes == cd.CLASSES


def test_real_cifar10_test_split_has_1000_images_per_class(cifar10):
    assert np.bincount(cifar10.y_test).tolist() == [1000] * 10
    assert np.bincount(cifar10.y_train).tolist() == [5000] * 10


def test_real_cifar10_train_mean_is_the_known_one(cifar10):
    mean = channel_stats(cifar10.x_train)["mean"]
    np.testing.assert_allclose(mean, [0.4914, 0.4822, 0.4465], atol=0.002)


def test_a_data_root_that_is_a_file_is_refused_before_any_download(tmp_path, monkeypatch):
    monkeypatch.delenv("CIFAR10_NPZ", raising=False)
    root = tmp_path / "data"
    root.write_text("x")
    with pytest.raises(DatasetNotFoundError, match=r"'.*data' is a file; pass a folder"):
        load_cifar10(root)
    assert root.read_text() == "x"


def test_default_data_root_is_the_checkouts_data_folder():
    assert cd.default_data_root() == Path(cd.__file__).resolve().parents[1] / "data"


def test_reseed_repeats_the_pipelines_draws_and_another_seed_changes_them():
    data = synthetic_data()
    only_hole = AugmentConfig(flip_p=0.0, affine_p=0.0, cutout_p=1.0)
    dataset = AugmentedDataset(data.x_train, data.y_train, train_transforms(MEAN, STD, only_hole))

    def draws(seed):
        dataset.reseed(seed)
        return torch.stack([dataset[0][0] for _ in range(4)])

    assert torch.equal(draws(5), draws(5)) and not torch.equal(draws(5), draws(6))
