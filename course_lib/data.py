"""CIFAR-10 in memory: loading (offline copy, cache, torchvision download), statistics, loaders.

Plumbing: images stay uint8 NHWC, albumentations does the per-image work. Used in lessons 03-06.
"""

from __future__ import annotations

import hashlib
import os
import random
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

ENV_VAR = "CIFAR10_NPZ"
CACHE_NAME = "cifar10_uint8.npz"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
KEYS = "x_train, y_train, x_test, y_test, classes"
# sha256 (first 16 hex digits) of the test images of copies that are not the original pixels:
# the offline copy (CIFAR10_NPZ in CI) was decoded from JPEGs, so its accuracies are its own.
KNOWN_COPIES = {"b7018a062865e934": "CIFAR-10 (JPEG copy)"}


class Cifar10(NamedTuple):
    """CIFAR-10 as arrays: images uint8 (N, 32, 32, 3) RGB, labels int64 (N,). Lessons 03-06."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    label: str = "CIFAR-10"  # how results name this data: see ``dataset_label``


class DatasetNotFoundError(RuntimeError):
    """No CIFAR-10 copy could be found or downloaded."""


def dataset_label(x_test: np.ndarray, from_torchvision: bool) -> str:
    """How results name the data, from its test images: a known copy, "CIFAR-10" for
    torchvision's md5-checked download, else the images' sha256 (never passed off as real)."""
    digest = hashlib.sha256(np.ascontiguousarray(x_test).tobytes()).hexdigest()[:16]
    unknown = "CIFAR-10" if from_torchvision else f"CIFAR-10 (unverified copy {digest})"
    return KNOWN_COPIES.get(digest, unknown)


def default_data_root() -> Path:
    """The checkout's ``data/`` (lessons run inside ``lessons/``), else ``./data`` (Colab)."""
    repo = Path(__file__).resolve().parents[1]
    return repo / "data" if (repo / "pyproject.toml").is_file() else Path("data")


def load_cifar10(root: str | Path | None = None, verbose: bool = True) -> Cifar10:
    """CIFAR-10 from ``$CIFAR10_NPZ``, else the cache ``root/cifar10_uint8.npz``, else a
    torchvision download (then cached). ``verbose`` prints the source in one line."""
    root = Path(root) if root is not None else default_data_root()
    if root.is_file():
        raise DatasetNotFoundError(f"'{root}' is a file; pass a folder (--data-root)")
    cache, env_path = root / CACHE_NAME, os.environ.get(ENV_VAR)
    if env_path:
        data = _read_npz(Path(env_path), f"the file named by {ENV_VAR} ('{env_path}')")
        source = f"${ENV_VAR}"
    elif cache.is_file():
        data = _read_npz(cache, f"the cache '{cache}' (delete it to rebuild)")
        source = f"cache {CACHE_NAME}"
    else:
        data, source = _from_torchvision(root), f"torchvision, cached to {CACHE_NAME}"
        tmp = cache.with_name(f".{CACHE_NAME}")  # written whole, then renamed: never torn
        try:  # uncompressed: it loads in well under a second
            np.savez(tmp, **data._asdict() | {"classes": np.asarray(data.classes)})
            os.replace(tmp, cache)
        except OSError as e:  # a read-only folder costs speed next time, not this load
            tmp.unlink(missing_ok=True)
            warnings.warn(f"Could not write the cache '{cache}' ({e})", stacklevel=2)
            source = "torchvision"
    data = data._replace(label=dataset_label(data.x_test, from_torchvision=not env_path))
    if verbose:
        n_train, n_test = len(data.x_train), len(data.x_test)
        print(f"{data.label} from {source}: {n_train} train, {n_test} test images")
    return data


def _read_npz(path: Path, origin: str) -> Cifar10:
    if not zipfile.is_zipfile(path):  # np.load would call a text file "pickled data"
        what = "not an .npz archive" if path.exists() else "no such file"
        raise DatasetNotFoundError(f"Could not read {origin}: {what} (np.savez of {KEYS}).")
    with np.load(path, allow_pickle=False) as f:
        arrays = dict(f)
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise ValueError(f"{origin} lacks key(s) {missing}; it has {sorted(arrays)}.")
    out = {}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.shape[1:] != (32, 32, 3) or y.shape != (len(x),):
            raise ValueError(f"{origin}: x_{split} must be uint8 (N, 32, 32, 3) and y_{split} its "
                             f"N labels, got {x.dtype} {x.shape} and {y.shape}.")
        if not np.isin(y, range(len(CLASSES))).all():
            raise ValueError(f"{origin}: y_{split} must lie in 0-9, got {y.min()}-{y.max()}.")
        out[f"x_{split}"], out[f"y_{split}"] = np.ascontiguousarray(x), y.astype(np.int64)
    return Cifar10(classes=tuple(str(c) for c in arrays.get("classes", CLASSES)), **out)


def _from_torchvision(root: Path) -> Cifar10:
    from torchvision.datasets import CIFAR10

    try:  # torchvision checks the md5 and downloads again over a broken archive
        train, test = (CIFAR10(str(root), train=t, download=True) for t in (True, False))
    except Exception as e:  # URLError, a bad checksum, a file as root: the fix is the same
        raise DatasetNotFoundError(
            f"CIFAR-10 not found: {ENV_VAR} is not set, there is no cache '{root / CACHE_NAME}', "
            f"and torchvision's download failed ({type(e).__name__}: {e}).\n"
            f"Set {ENV_VAR}=/path/to/cifar10.npz (keys {KEYS}), or put {CACHE_NAME} or "
            f"torchvision's 'cifar-10-batches-py' folder into '{root}'."
        ) from None
    labels = [np.asarray(split.targets, dtype=np.int64) for split in (train, test)]
    return Cifar10(train.data, labels[0], test.data, labels[1], tuple(train.classes))


def channel_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel mean and std of uint8 NHWC images, in 0-1 units (float64)."""
    if x.ndim != 4 or len(x) == 0 or x.dtype != np.uint8:
        raise ValueError(f"x must be non-empty uint8 NHWC images, got {x.dtype} {x.shape}.")
    # exact 256-bin histograms: 8x faster than converting 150 M values to float64
    hist = np.stack([np.bincount(x[..., c].ravel(), minlength=256) for c in range(3)])
    values = np.arange(256) / 255.0
    mean = hist @ values / hist.sum(axis=1)
    var = (hist * (values - mean[:, None]) ** 2).sum(axis=1) / hist.sum(axis=1)
    return {"mean": mean, "std": np.sqrt(var)}


def dataset_stats(data: Cifar10) -> dict[str, dict[str, np.ndarray]]:
    """``channel_stats`` of the train and the test images. Used in lesson 03."""
    return {"train": channel_stats(data.x_train), "test": channel_stats(data.x_test)}


class AugmentedDataset(Dataset):
    """uint8 NHWC images and labels; ``dataset[i]`` is (CHW float tensor, int label) after the
    albumentations ``transform`` (without one, pixels scaled to 0-1). Lessons 03-05."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable | None = None):
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 NHWC, got {images.dtype} {images.shape}.")
        self.images, self.labels, self.transform = images, np.asarray(labels), transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.transform is None:
            image = torch.from_numpy(self.images[i].transpose(2, 0, 1) / 255)
        else:
            image = self.transform(image=self.images[i])["image"]
        return image.float(), int(self.labels[i])

    def reseed(self, seed: int) -> None:
        """Give the transform a fresh random stream (what each DataLoader worker needs)."""
        if hasattr(self.transform, "set_random_state"):
            self.transform.set_random_state(np.random.default_rng(seed), random.Random(seed))


def _seed_worker(worker_id: int) -> None:
    # each forked worker would repeat the pipeline's draws: reseed it from torch's worker seed
    info = torch.utils.data.get_worker_info()
    if info is not None and hasattr(info.dataset, "reseed"):
        info.dataset.reseed(info.seed)


def subset(data: Cifar10, n_train: int | None, n_test: int | None, seed: int = 0) -> Cifar10:
    """A random subset with each class in its full-split proportion; ``None`` keeps a split."""
    rng, splits = np.random.default_rng(seed), {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if n is not None:
            if not 0 < n <= len(y):
                raise ValueError(f"n_{split} must be between 1 and {len(y)}, got {n}.")
            classes, counts = np.unique(y, return_counts=True)
            quota = counts * n / len(y)
            take = np.floor(quota).astype(int)
            # largest remainder: the leftover images go to the classes closest to one more
            take[np.argsort(-(quota - take), kind="stable")[: n - take.sum()]] += 1
            pools = [np.flatnonzero(y == c) for c in classes]
            picks = [rng.choice(p, k, replace=False) for p, k in zip(pools, take, strict=True)]
            keep = np.sort(np.concatenate(picks))
            x, y = x[keep], y[keep]
        splits |= {f"x_{split}": x, f"y_{split}": y}
    return data._replace(**splits)


def make_loaders(data: Cifar10, train_transform: Callable | None, test_transform: Callable | None,
                 batch_size: int = 512, num_workers: int | None = None, seed: int = 0,
                 test_batch_size: int | None = None) -> tuple[DataLoader, DataLoader]:
    """Train (shuffled from ``seed``, last short batch kept) and test DataLoaders. ``num_workers``
    defaults to 0 on CPU, min(8, cores - 1) on CUDA. Train workers restart (and reseed) each
    epoch, from the generator ``train.fit`` reseeds, so a resumed run draws as an unbroken one."""
    cuda, workers = torch.cuda.is_available(), num_workers
    if workers is None:  # on CPU the model, not loading, is the bottleneck: no worker processes
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        workers = min(8, (cores or 1) - 1) if cuda else 0
    common = {"num_workers": workers, "pin_memory": cuda, "worker_init_fn": _seed_worker}
    shuffle = {"shuffle": True, "generator": torch.Generator().manual_seed(seed)}
    train = DataLoader(AugmentedDataset(data.x_train, data.y_train, train_transform),
                       batch_size, **shuffle, **common)
    test = DataLoader(AugmentedDataset(data.x_test, data.y_test, test_transform),
                      test_batch_size or batch_size, persistent_workers=workers > 0, **common)
    return train, test
