"""Throughput of the data pipeline alone: the assignment's albumentations transforms + DataLoader.

    python benchmarks/data_throughput.py [--workers 0 1 2] [--epochs 2]

Measured on the 2-core CPU machine, batch 256, the loader alone (no model competing for the
cores): 0 workers 4,658 images/s, 1 worker 3,973, 2 workers 7,852 (results/data_throughput.json).
While training, the model needs both cores, so the trainer keeps 0 workers on CPU.
"""

from __future__ import annotations

import argparse

from _common import BATCH_SIZE, loaders, median_seconds, save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per setting (median)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    args = parser.parse_args()

    result = {}
    for workers in args.workers:
        train, _ = loaders(args.batch_size, workers)
        seconds = median_seconds(lambda train=train: sum(len(y) for _, y in train), args.epochs)
        result[f"workers_{workers}_images_per_s"] = len(train.dataset) / seconds
        print(
            f"{workers} workers: {len(train.dataset) / seconds:8.0f} images/s  ({seconds:.1f} s/epoch)"
        )
    print(f"saved to {save('data_throughput', result).name}")


if __name__ == "__main__":
    main()
