"""Shared fixtures: a tiny synthetic CIFAR-10-format file, and the real-data skip marker."""

import os

import numpy as np
import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

requires_cifar = pytest.mark.skipif(
    not os.environ.get("CIFAR10_NPZ"), reason="set CIFAR10_NPZ to run tests on the real CIFAR-10"
)


def make_synthetic_cifar(n_train: int = 200, n_test: int = 100, seed: int = 0) -> dict:
    """Random images whose class is written into their brightness, so a net can learn it."""
    rng = np.random.default_rng(seed)

    def split(n):
        y = np.arange(n) % 10
        x = rng.integers(0, 64, size=(n, 32, 32, 3)) + (y * 19)[:, None, None, None]
        return x.astype(np.uint8), y.astype(np.uint8)

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    return dict(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, classes=np.array(CLASSES)
    )


def _write_npz(tmp_path, monkeypatch, n_train, n_test):
    path = tmp_path / "synthetic_cifar10.npz"
    np.savez(path, **make_synthetic_cifar(n_train, n_test))
    monkeypatch.setenv("CIFAR10_NPZ", str(path))
    return path


@pytest.fixture
def synthetic_npz(tmp_path, monkeypatch):
    """A small file in the offline-copy format, with CIFAR10_NPZ pointing at it."""
    return _write_npz(tmp_path, monkeypatch, 200, 100)


@pytest.fixture
def synthetic_npz_fast_size(tmp_path, monkeypatch):
    """Large enough for the trainer's --fast subset (2,000 train and 1,000 test images)."""
    return _write_npz(tmp_path, monkeypatch, 2000, 1000)
