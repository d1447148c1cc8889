"""CIFAR-10 in memory: loading (offline copy, cache, torchvision download), statistics, loaders.

Images stay uint8 NHWC in memory; albumentations does the per-image work.
Used in lessons 03, 04 and 05.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

ENV_VAR = "CIFAR10_NPZ"
CACHE_NAME = "cifar10_uint8.npz"
TORCHVISION_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TORCHVISION_ARCHIVE = "cifar-10-python.tar.gz"
TORCHVISION_FOLDER = "cifar-10-batches-py"
CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")


class Cifar10(NamedTuple):
    """CIFAR-10 as arrays: images uint8 (N, 32, 32, 3) RGB, labels int64 (N,).

    Used in lesson 03.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    label: str = "CIFAR-10"  # how results name this data: see ``dataset_label``


# sha256 (first 16 hex digits) of the test images of copies that are not the original pixels.
# The offline copy (CIFAR10_NPZ in CI) was decoded from JPEGs, so its accuracies are its own.
KNOWN_COPIES = {"b7018a062865e934": "CIFAR-10 (JPEG copy)"}


def fingerprint(images: np.ndarray) -> str:
    """The first 16 hex digits of the sha256 of the images' bytes (``KNOWN_COPIES`` keys)."""
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:16]


def dataset_label(x_test: np.ndarray, from_torchvision: bool) -> str:
    """How results name the data, decided from its test images, not from where it was read.

    A known copy gets its own name; torchvision's download (md5-checked, and the cache written
    from it) is "CIFAR-10"; any other file is named with its fingerprint, so a table never
    passes off unknown pixels as the real test set.
    """
    digest = fingerprint(x_test)
    if digest in KNOWN_COPIES:
        return KNOWN_COPIES[digest]
    return "CIFAR-10" if from_torchvision else f"CIFAR-10 (unverified copy {digest})"


class DatasetNotFoundError(RuntimeError):
    """No CIFAR-10 copy could be found or downloaded. Used in lesson 03."""


def default_data_root() -> Path:
    """``data/`` of the repository when the course runs from a checkout, else ``./data``.

    Lessons run with their own folder as working directory, so a relative "data" would
    land in ``lessons/data``; on Colab (a pip install) ``./data`` is the natural place.
    """
    repo = Path(__file__).resolve().parents[1]
    return repo / "data" if (repo / "pyproject.toml").is_file() else Path("data")


def load_cifar10(root: str | Path | None = None, verbose: bool = True) -> Cifar10:
    """Load CIFAR-10, from the first source that has it.

    1. the file named by the environment variable ``CIFAR10_NPZ``
       (keys x_train, y_train, x_test, y_test, classes);
    2. the cache ``root/cifar10_uint8.npz`` (``root`` defaults to ``default_data_root()``);
    3. ``torchvision.datasets.CIFAR10(root, download=True)``, then written to the cache.

    ``verbose`` prints one line naming the source (no machine paths, so notebook output is
    stable). Raises ``DatasetNotFoundError`` when every source fails. Used in lessons 03-06.
    """
    root = Path(root) if root is not None else default_data_root()
    if root.exists() and not root.is_dir():
        raise DatasetNotFoundError(
            f"the data folder '{root}' is a file; pass a folder (--data-root)"
        )
    cache = root / CACHE_NAME
    env_path = os.environ.get(ENV_VAR)

    if env_path:
        path = Path(env_path)
        if not path.is_file():
            raise DatasetNotFoundError(
                f"{ENV_VAR} is set to '{path}', but no file exists there. Point it to a CIFAR-10 "
                f".npz (keys {', '.join(_ARRAY_KEYS)}, classes) or unset it."
            )
        data = _read_npz(path, f"the file named by {ENV_VAR} ('{path}')")
        source = f"${ENV_VAR}"
    elif cache.is_file():
        data = _read_npz(cache, f"the cache '{cache}' (delete it to rebuild)")
        source = f"cache {CACHE_NAME}"
    else:
        data = _from_torchvision(root)
        source = f"torchvision, cached to {CACHE_NAME}"
        try:
            _write_cache(data, cache)
        except OSError as e:  # a read-only folder costs speed next time, not this load
            warnings.warn(
                f"Could not write the cache '{cache}' ({e}); the next load "
                "decodes the torchvision files again.",
                stacklevel=2,
            )
            source = "torchvision"

    data = data._replace(label=dataset_label(data.x_test, from_torchvision=not env_path))
    if verbose:
        print(
            f"{data.label} from {source}: {len(data.x_train)} train, {len(data.x_test)} test images"
        )
    return data


def _read_npz(path: Path, origin: str) -> Cifar10:
    if not zipfile.is_zipfile(path):
        what = "an empty file" if path.stat().st_size == 0 else "not an .npz archive"
        raise ValueError(
            f"Could not read {origin}: it is {what}; expected np.savez output with keys "
            f"{', '.join(_ARRAY_KEYS)}, classes."
        )
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
    except Exception as e:  # a zip, pickle or I/O error all mean the same to the user
        raise ValueError(f"Could not read {origin} as .npz: {e}") from e
    return _validate(arrays, origin)


def _validate(arrays: Mapping[str, np.ndarray], origin: str) -> Cifar10:
    missing = [key for key in _ARRAY_KEYS if key not in arrays]
    if missing:
        raise ValueError(f"{origin} lacks key(s) {missing}; it has {sorted(arrays)}.")
    out = {}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
            raise ValueError(
                f"{origin}: x_{split} must be uint8 of shape (N, 32, 32, 3), "
                f"got {x.dtype} {x.shape}."
            )
        if not np.issubdtype(y.dtype, np.integer) or y.shape != (len(x),):
            raise ValueError(
                f"{origin}: y_{split} must be integer labels of shape ({len(x)},), "
                f"got {y.dtype} {y.shape}."
            )
        if len(y) and (y.min() < 0 or y.max() >= len(CLASSES)):
            raise ValueError(f"{origin}: y_{split} must lie in 0-9, got {y.min()}-{y.max()}.")
        out[f"x_{split}"] = np.ascontiguousarray(x)
        out[f"y_{split}"] = y.astype(np.int64)
    classes = tuple(str(c) for c in arrays["classes"]) if "classes" in arrays else CLASSES
    if len(classes) != len(CLASSES):
        raise ValueError(f"{origin}: classes must have 10 names, got {len(classes)}.")
    return Cifar10(classes=classes, **out)


def _from_torchvision(root: Path) -> Cifar10:
    from torchvision.datasets import CIFAR10

    # what does not exist yet, deepest first: torchvision creates root and its parents
    candidates = (root / TORCHVISION_ARCHIVE, root / TORCHVISION_FOLDER, root, *root.parents)
    new = [p for p in candidates if not p.exists()]
    try:
        train = CIFAR10(str(root), train=True, download=True)
        test = CIFAR10(str(root), train=False, download=True)
    except Exception as e:  # URLError, a bad checksum, a broken archive: the fix is the same
        _remove_new(new)
        raise DatasetNotFoundError(
            f"CIFAR-10 not found, and the download failed ({type(e).__name__}: {e}).\n"
            f"Tried, in order:\n"
            f"  1. the environment variable {ENV_VAR}: not set\n"
            f"  2. the cache '{root / CACHE_NAME}': not there\n"
            f"  3. torchvision.datasets.CIFAR10 download from {TORCHVISION_URL}: failed\n"
            f"Fix it with one of:\n"
            f"  - set {ENV_VAR}=/path/to/cifar10.npz (keys {', '.join(_ARRAY_KEYS)}, classes)\n"
            f"  - put {CACHE_NAME}, or torchvision's '{TORCHVISION_FOLDER}' folder, into '{root}'"
        ) from None
    arrays = {
        "x_train": train.data,
        "y_train": np.asarray(train.targets),
        "x_test": test.data,
        "y_test": np.asarray(test.targets),
        "classes": np.asarray(train.classes),
    }
    return _validate(arrays, "torchvision's CIFAR10")


def _remove_new(new: list[Path]) -> None:
    """Delete what a failed download created: a partial archive, a half-extracted folder."""
    for path in new:
        if path.is_dir():
            # the extracted folder goes whole; root and its parents only if empty
            if path.name == TORCHVISION_FOLDER:
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.rmdir()
        else:
            path.unlink(missing_ok=True)


def _write_cache(data: Cifar10, cache: Path) -> None:
    # Same folder + os.replace: readers see the old state or the whole file, never a torn one.
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=f".{cache.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            # uncompressed: loading the 180 MB cache then takes well under a second
            np.savez(f, **data._asdict() | {"classes": np.asarray(data.classes)})
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a cache is as readable as data
        os.replace(tmp, cache)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def channel_stats(x: np.ndarray, chunk_size: int = 2048) -> dict[str, np.ndarray]:
    """Per-channel mean, std, var, min and max of NHWC images, in 0-1 units, as float64.

    uint8 images are divided by 255; float images are taken as already 0-1. Works through
    ``chunk_size`` images at a time, so 50,000 images need little memory. Used in lesson 03.
    """
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"x must be non-empty NHWC images, got shape {x.shape}.")
    chunks = [x[i : i + chunk_size].reshape(-1, x.shape[3]) for i in range(0, len(x), chunk_size)]
    if x.dtype == np.uint8:
        # A 256-bin histogram per channel holds everything exactly, and bincount is 8x faster
        # than converting 150 M values to float64 (0.4 s against 3.3 s for CIFAR-10's train).
        hist = sum(
            np.stack([np.bincount(c[:, ch], minlength=256) for ch in range(c.shape[1])])
            for c in chunks
        )
        values = np.arange(256) / 255.0
        n = hist.sum(axis=1)
        mean = hist @ values / n
        var = (hist * (values - mean[:, None]) ** 2).sum(axis=1) / n
        seen = hist > 0
        low, high = values[seen.argmax(axis=1)], values[255 - seen[:, ::-1].argmax(axis=1)]
    else:
        n = len(x) * x.shape[1] * x.shape[2]
        mean = sum(c.sum(axis=0, dtype=np.float64) for c in chunks) / n
        var = sum(((c - mean) ** 2).sum(axis=0) for c in chunks) / n  # two passes: no cancellation
        low = np.min([c.min(axis=0) for c in chunks], axis=0).astype(np.float64)
        high = np.max([c.max(axis=0) for c in chunks], axis=0).astype(np.float64)
    return {"mean": mean, "std": np.sqrt(var), "var": var, "min": low, "max": high}


def dataset_stats(data: Cifar10) -> dict[str, dict[str, np.ndarray]]:
    """``channel_stats`` of the train and the test images. Used in lesson 03."""
    return {"train": channel_stats(data.x_train), "test": channel_stats(data.x_test)}


def format_stats(stats: Mapping[str, Any]) -> str:
    """A fixed-width text table (4 decimals) of ``dataset_stats`` or ``channel_stats`` output.

    Used in lesson 03.
    """
    nested = all(isinstance(v, Mapping) for v in stats.values())
    splits = dict(stats) if nested else {"": stats}
    lines = [f"{'split':<6}{'stat':<6}{'R':>8}{'G':>8}{'B':>8}"]
    for split, s in splits.items():
        for name in ("mean", "std", "var", "min", "max"):
            values = "".join(f"{v:>8.4f}" for v in np.asarray(s[name], dtype=np.float64))
            lines.append(f"{split:<6}{name:<6}{values}")
    return "\n".join(lines)


class AugmentedDataset(Dataset):
    """uint8 NHWC images and labels in memory; an albumentations pipeline runs per item.

    ``dataset[i]`` is ``(CHW float tensor, int label)``. Without a transform, pixels are
    scaled to 0-1. Used in lessons 03, 04 and 05.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable | None = None):
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 NHWC, got {images.dtype} of shape {images.shape}."
            )
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels.")
        self.images, self.labels, self.transform = images, np.asarray(labels), transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.images[i]
        if self.transform is not None:
            image = self.transform(image=image)["image"]
        if isinstance(image, np.ndarray):
            scale = 255.0 if image.dtype == np.uint8 else 1.0
            image = torch.from_numpy(image.transpose(2, 0, 1) / scale)
        return image.float(), int(self.labels[i])

    def reseed(self, seed: int) -> None:
        """Give the transform a fresh random stream (what each DataLoader worker needs)."""
        if hasattr(self.transform, "set_random_state"):
            self.transform.set_random_state(np.random.default_rng(seed), random.Random(seed))


def _seed_worker(worker_id: int) -> None:
    # albumentations 2.x keeps its own RNG inside the pipeline and never reseeds it in a
    # worker, so every forked worker would repeat the same augmentations. torch hands each
    # worker seed = base seed (drawn from the loader's generator) + worker id.
    info = torch.utils.data.get_worker_info()
    dataset = info.dataset if info is not None else None
    if hasattr(dataset, "reseed"):
        dataset.reseed(info.seed)


def subset(data: Cifar10, n_train: int | None, n_test: int | None, seed: int = 0) -> Cifar10:
    """A random subset with each class in the proportion it has in the full split.

    ``None`` keeps a split whole (without copying it). For the notebooks' fast mode and
    ``evaluate --test-size``. Used in lessons 03, 04 and 05.
    """
    rng = np.random.default_rng(seed)
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    if n_train is not None:
        train = _stratified(y_train, n_train, rng, "n_train")
        x_train, y_train = x_train[train], y_train[train]
    if n_test is not None:
        test = _stratified(y_test, n_test, rng, "n_test")
        x_test, y_test = x_test[test], y_test[test]
    return data._replace(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def _stratified(y: np.ndarray, n: int, rng: np.random.Generator, name: str) -> np.ndarray:
    if not 0 < n <= len(y):
        raise ValueError(f"{name} must be between 1 and {len(y)}, got {n}.")
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * n / len(y)
    take = np.floor(quota).astype(int)
    # largest remainder: the leftover images go to the classes closest to one more
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: n - take.sum()]] += 1
    picked = [
        rng.choice(np.flatnonzero(y == c), k, replace=False)
        for c, k in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(picked))


# Workers on a 2-core CPU machine shared with other jobs (no GPU). Loader alone, 50,000 train
# images, the assignment's train_transforms, batch 512, median of 3 epochs after a warm-up one
# (two runs):   0 workers: 7,632 / 7,016 img/s   1: 7,575 / 7,017   2: 14,363 / 13,138
#   rerun: python benchmarks/data_throughput.py --workers 0 1 2
# Training a 326k-parameter CNN on the same CPU runs at only 150-380 img/s, so loading is ~5 %
# of a step; across repeated runs of 0/1/2 workers (20 batches each) no setting was faster
# beyond the machine's noise (0: 154, 309, 348; 1: 162, 344, 360; 2: 150, 325, 378 img/s).
# So on CPU the main process loads: no extra processes competing with the model.
_CPU_WORKERS = 0


def default_num_workers(device: str | torch.device) -> int:
    """DataLoader workers that keep ``device`` fed: 0 on CPU, min(8, cores - 1) on CUDA.

    Used in lessons 04 and 05.
    """
    if torch.device(device).type != "cuda":
        return _CPU_WORKERS
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(8, (cores or 1) - 1))


def make_loaders(
    data: Cifar10,
    train_transform: Callable | None,
    test_transform: Callable | None,
    batch_size: int = 512,
    num_workers: int | None = None,
    seed: int = 0,
    test_batch_size: int | None = None,
) -> tuple[DataLoader, DataLoader]:
    """Train and test DataLoaders over ``AugmentedDataset``.

    The train loader shuffles with a generator seeded by ``seed`` and keeps the last short
    batch; each worker reseeds the pipeline from that generator, so runs repeat. Its workers
    are started afresh every epoch (not persistent), so that ``train.fit``, which reseeds the
    generator per epoch, gets the same augmentations in a resumed run as in an unbroken one. ``num_workers``
    defaults to ``default_num_workers`` for the available device. Used in lessons 04 and 05.
    """
    cuda = torch.cuda.is_available()
    if num_workers is None:
        num_workers = default_num_workers("cuda" if cuda else "cpu")
    common = {"num_workers": num_workers, "pin_memory": cuda, "worker_init_fn": _seed_worker}
    train = DataLoader(
        AugmentedDataset(data.x_train, data.y_train, train_transform),
        batch_size=batch_size,
        shuffle=True,
        drop_last=False,
        generator=torch.Generator().manual_seed(seed),
        **common,
    )
    test = DataLoader(
        AugmentedDataset(data.x_test, data.y_test, test_transform),
        batch_size=test_batch_size or batch_size,
        shuffle=False,
        persistent_workers=num_workers > 0,
        **common,
    )
    return train, test
