"""Lesson 06's ablations: downsampling, depthwise-separable convs, augmentation, two seeds each.

    python benchmarks/ablations.py [--jobs 10 --workers 1]   # train every variant and seed
    python benchmarks/ablations.py --cpu-timing              # add CPU seconds per epoch

Every variant of ``course_lib.ablations.VARIANTS`` is trained with the course's trainer for
the same short schedule (4 epochs on all 50,000 training images, tested on all 10,000) and
each seed; the results go to results/ablations.json, which lesson 06 reads. The file is
rewritten after every run, and a rerun with the same schedule continues where an
interrupted one stopped (delete the file to start over). ``--jobs N`` trains N runs at once
in separate processes, which fills a GPU; ``--cpu-timing`` times each variant's forward and
backward passes on this machine's CPU and stores them next to the accuracies.

Measured (CIFAR-10 JPEG copy): the 9 variants x 2 seeds trained in 7 minutes on one H100
with 16 CPU cores (``--jobs 10 --workers 1``, four other 15-epoch runs sharing the machine);
``--cpu-timing`` took 90 s on the 2-core CPU machine. The figures are in lesson 06.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS

from course_lib.ablations import (
    FULL_SCHEDULE,
    VARIANTS,
    Schedule,
    cpu_seconds_per_epoch,
    run_ablations,
    save_results,
)
from course_lib.data import load_cifar10


def _parallel(args: argparse.Namespace, schedule: Schedule) -> None:
    """Each (variant, seed) in its own process, ``args.jobs`` at a time; rows merged into out."""
    out = Path(args.out)
    record = json.loads(out.read_text()) if out.exists() else None
    done = {(r["variant"], r["seed"]) for r in record["rows"]} if record else set()
    todo = [(v, s) for s in schedule.seeds for v in args.variants if (v, s) not in done]
    with tempfile.TemporaryDirectory() as tmp:
        running: list[tuple[subprocess.Popen, Path]] = []
        while todo or running:
            while todo and len(running) < args.jobs:
                variant, seed = todo.pop(0)
                part = Path(tmp) / f"{variant}_{seed}.json"
                cmd = [sys.executable, __file__, "--variants", variant, "--seeds", str(seed)]
                cmd += ["--epochs", str(schedule.epochs), "--train-size", str(schedule.train_size)]
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
                save_results(record, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--epochs", type=int, default=FULL_SCHEDULE.epochs)
    parser.add_argument("--train-size", type=int, default=FULL_SCHEDULE.train_size)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(FULL_SCHEDULE.seeds))
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once")
    parser.add_argument("--workers", type=int, default=None, help="data workers per run")
    parser.add_argument("--cpu-timing", action="store_true", help="only time each variant on CPU")
    parser.add_argument("--out", default=str(RESULTS / "ablations.json"))
    args = parser.parse_args()

    start = time.perf_counter()
    if args.cpu_timing:
        record = json.loads(Path(args.out).read_text())
        record["cpu_seconds_per_epoch"] = {v: cpu_seconds_per_epoch(v) for v in args.variants}
        save_results(record, args.out)
        print(json.dumps(record["cpu_seconds_per_epoch"], indent=1))
        return
    schedule = Schedule(
        epochs=args.epochs,
        train_size=args.train_size,
        test_size=FULL_SCHEDULE.test_size,
        seeds=tuple(args.seeds),
    )
    if args.jobs > 1:
        _parallel(args, schedule)
    else:
        run_ablations(
            load_cifar10(), schedule, args.variants, save_to=args.out, num_workers=args.workers
        )
    print(f"saved to {args.out} ({(time.perf_counter() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
