"""Shared set-up for the benchmark scripts: the real data, the assignment transforms, timing."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from course_lib.augment import eval_transforms, train_transforms
from course_lib.data import channel_stats, load_cifar10, make_loaders
from course_lib.train import TrainConfig

RESULTS = Path(__file__).parent / "results"
BATCH_SIZE = TrainConfig().batch_size  # what `make train` uses


def loaders(batch_size: int = BATCH_SIZE, num_workers: int = 0, seed: int = 0):
    data = load_cifar10(verbose=False)
    stats = channel_stats(data.x_train)
    mean, std = stats["mean"].tolist(), stats["std"].tolist()
    return make_loaders(
        data,
        train_transforms(mean, std, seed=seed),
        eval_transforms(mean, std),
        batch_size=batch_size,
        num_workers=num_workers,
        seed=seed,
    )


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def machine() -> dict:
    return {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
    }


def save(name: str, result: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({**result, "environment": machine()}, indent=1))
    return path
