"""Lesson 06's ablations: downsampling, depthwise-separable convs, augmentation, two seeds each.

    python benchmarks/ablations.py [--jobs 10 --workers 1]   # train every variant and seed
    python benchmarks/ablations.py --cpu-timing              # add CPU seconds per epoch
    python benchmarks/ablations.py --fast --out /tmp/a.json  # the loop on 500 images, 1 epoch

Every variant of lesson 06's ``VARIANTS`` (``experiments.py``, exported from the lesson) is
trained with the course's trainer for the same short schedule (4 epochs on all 50,000
training images, tested on all 10,000) and each seed; the results go to
results/ablations.json, which lesson 06 reads. The file is rewritten after every run, and a
rerun with the same schedule continues where an interrupted one stopped (delete the file to
start over). ``--jobs N`` trains N runs at once in separate processes, which fills a GPU;
``--cpu-timing`` times each variant's forward and backward passes on this machine's CPU and
stores them next to the accuracies.

Measured (CIFAR-10 JPEG copy): the 9 variants x 2 seeds trained in 7 minutes on one H100
with 16 CPU cores (``--jobs 10 --workers 1``, four other 15-epoch runs sharing the machine);
``--cpu-timing`` took 90 s on the 2-core CPU machine. The figures are in lesson 06.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import RESULTS
from experiments import FAST_SCHEDULE, FULL_SCHEDULE, VARIANTS, Schedule, run_ablations

from course_lib.data import load_cifar10
from course_lib.device import autocast, prepare
from course_lib.models import FourBlockNet


def cpu_seconds_per_epoch(variant: str, *, steps: int = 8, batch_size: int = 256) -> float:
    """CPU seconds of forward and backward passes for one epoch of 50,000 images, extrapolated.

    Times ``steps`` SGD steps on random batches with the trainer's CPU settings (bf16
    autocast, channels_last) after two warm-up steps; data loading is not included.
    """
    cpu = torch.device("cpu")
    model = prepare(FourBlockNet(VARIANTS[variant].plan), cpu).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,))

    def step() -> None:
        with autocast(cpu):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * math.ceil(50_000 / batch_size)


def _save(record: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=1))


def _parallel(args: argparse.Namespace, schedule: Schedule) -> None:
    """Each (variant, seed) in its own process, ``args.jobs`` at a time; rows merged into out."""
    out = Path(args.out)
    record = json.loads(out.read_text()) if out.exists() else None
    done = {(r["variant"], r["seed"]) for r in record["rows"]} if record else set()
    todo = [(v, s) for s in schedule.seeds for v in args.variants if (v, s) not in done]
    sizes = ["--train-size", str(schedule.train_size), "--test-size", str(schedule.test_size)]
    with tempfile.TemporaryDirectory() as tmp:
        running: list[tuple[subprocess.Popen, Path]] = []
        while todo or running:
            while todo and len(running) < args.jobs:
                variant, seed = todo.pop(0)
                part = Path(tmp) / f"{variant}_{seed}.json"
                cmd = [sys.executable, __file__, "--variants", variant, "--seeds", str(seed)]
                cmd += ["--epochs", str(schedule.epochs), *sizes]
                cmd += ["--workers", str(args.workers), "--out", str(part)]
                running.append((subprocess.Popen(cmd), part))
            time.sleep(1)
            for proc, part in [r for r in running if r[0].poll() is not None]:
                running.remove((proc, part))
                if proc.returncode != 0:
                    raise SystemExit(f"{part.stem} failed with exit code {proc.returncode}")
                piece = json.loads(part.read_text())
                if record is None:
                    record = piece
                else:
                    record["rows"] += piece["rows"]
                record["runner"] = {"jobs": args.jobs, "workers_per_job": args.workers}
                _save(record, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--epochs", type=int, default=FULL_SCHEDULE.epochs)
    parser.add_argument("--train-size", type=int, default=FULL_SCHEDULE.train_size)
    parser.add_argument("--test-size", type=int, default=FULL_SCHEDULE.test_size)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(FULL_SCHEDULE.seeds))
    parser.add_argument("--fast", action="store_true", help="FAST_SCHEDULE: a smoke test")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once")
    parser.add_argument("--workers", type=int, default=None, help="data workers per run")
    parser.add_argument("--cpu-timing", action="store_true", help="only time each variant on CPU")
    parser.add_argument("--out", default=str(RESULTS / "ablations.json"))
    args = parser.parse_args()

    start = time.perf_counter()
    if args.cpu_timing:
        record = json.loads(Path(args.out).read_text())
        record["cpu_seconds_per_epoch"] = {v: cpu_seconds_per_epoch(v) for v in args.variants}
        _save(record, args.out)
        print(json.dumps(record["cpu_seconds_per_epoch"], indent=1))
        return
    schedule = Schedule(args.epochs, args.train_size, args.test_size, tuple(args.seeds))
    schedule = FAST_SCHEDULE if args.fast else schedule
    if args.jobs > 1:
        _parallel(args, schedule)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        run_ablations(
            load_cifar10(), schedule, args.variants, save_to=args.out, num_workers=args.workers
        )
    print(f"saved to {args.out} ({(time.perf_counter() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
