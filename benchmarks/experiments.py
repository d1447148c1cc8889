"""Lesson 06's experiment loop for the benchmark scripts: variants, schedules, the sweep.

The code below is written and explained in lesson 06 and copied here by ``make export``;
``ablations.py`` and ``architecture_probes.py`` import it. Lesson 06 runs on Colab, where
benchmarks/ is not installed, so it runs its own cells and never imports this file.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course_lib.augment import AugmentConfig
from course_lib.data import Cifar10
from course_lib.device import default_device
from course_lib.models import PLANS, FourBlockNet, NetPlan, count_parameters, summary
from course_lib.receptive_field import receptive_field
from course_lib.train import TrainConfig, environment_info, fit, seed_everything, training_loaders

# >>> written in the lessons' #@save cells: edit the lesson, then run `make export`


# from lessons/06_ablations.ipynb


@dataclass(frozen=True)
class Variant:
    """One trained configuration: a network plan, a per-image pipeline, a batch regulariser."""

    plan: NetPlan = PLANS["dilated"]
    augment: AugmentConfig = AugmentConfig()  # the trainer's own pipeline
    batch_aug: str = "none"  # TrainConfig.batch_aug: "none" | "cutout" | "ricap"


VARIANTS = {
    "final": Variant(),
    **{name: Variant(plan=PLANS[name]) for name in ("halving", "strided", "maxpool", "standard")},
    "no_augment": Variant(augment=AugmentConfig(flip_p=0.0, affine_p=0.0, cutout_p=0.0)),
    "flip_shift": Variant(augment=AugmentConfig(scale=0.0, rotate=0.0, cutout_p=0.0)),
    "cutout": Variant(batch_aug="cutout"),
    "ricap": Variant(batch_aug="ricap"),
}


EXPERIMENTS = {
    "downsampling": {
        "max-pooling": "maxpool",
        "stride 2": "strided",
        "dilation, halving": "halving",
        "dilation, trimming": "final",
    },
    "separable": {"standard": "standard", "depthwise-separable": "final"},
    "augmentation": {
        "none": "no_augment",
        "flip + shift": "flip_shift",
        "assignment": "final",
        "+ CutOut": "cutout",
        "+ RICAP": "ricap",
    },
}


@dataclass(frozen=True)
class Schedule:
    """What every variant is trained on; size 0 means the whole split."""

    epochs: int = 4
    train_size: int = 0  # else a class-stratified subset of the 50,000 training images
    test_size: int = 0  # else a subset of the 10,000 test images
    seeds: tuple[int, ...] = (0, 1)


FULL_SCHEDULE = Schedule()
FAST_SCHEDULE = Schedule(epochs=1, train_size=500, test_size=200, seeds=(0,))


def architecture(plan: NetPlan) -> dict[str, int]:
    """Parameters, multiply-adds per 32x32 image and receptive field of a plan's network."""
    model = FourBlockNet(plan)
    return {
        "parameters": count_parameters(model),
        "mult_adds": int(summary(model).total_mult_adds),
        "receptive_field": receptive_field(model),
    }


def train_variant(name: str, seed: int, schedule: Schedule, data: Cifar10, *, num_workers=None):
    """Train variant ``name`` for one seed on ``schedule``: its final-epoch row, with history."""
    variant = VARIANTS[name]
    cfg = TrainConfig(
        model=name, epochs=schedule.epochs, batch_aug=variant.batch_aug,
        cutout_p=variant.augment.cutout_p, train_size=schedule.train_size,
        test_size=schedule.test_size, seed=seed, num_workers=num_workers,
    )  # fmt: skip
    seed_everything(seed)
    train_loader, test_loader, _ = training_loaders(cfg, data, variant.augment)
    start = time.perf_counter()
    model = FourBlockNet(variant.plan)
    history = fit(model, train_loader, test_loader, cfg, progress=False).history
    return {
        "variant": name, "seed": seed,
        "test_acc": history[-1]["test_acc"], "train_acc": history[-1]["train_acc"],
        "seconds_per_epoch": statistics.mean(h["seconds"] for h in history),
        "wall_seconds": time.perf_counter() - start, "history": history,
    }  # fmt: skip


def new_record(schedule: Schedule) -> dict[str, Any]:
    """A sweep's record before its first run: everything but the rows."""
    return {
        "schedule": dataclasses.asdict(schedule),
        "trainer": dataclasses.asdict(TrainConfig()),
        "experiments": EXPERIMENTS,
        "variants": {name: dataclasses.asdict(v) for name, v in VARIANTS.items()},
        "architecture": {name: architecture(v.plan) for name, v in VARIANTS.items()},
        "environment": environment_info(default_device()),
        "cpu_seconds_per_epoch": {},  # filled by `benchmarks/ablations.py --cpu-timing`
        "rows": [],
    }


def resumed_rows(path: Path | None, schedule: Schedule) -> list[dict[str, Any]]:
    """The runs already saved at ``path`` for the same schedule: a rerun skips them."""
    if path is None or not path.exists():
        return []
    saved = json.loads(path.read_text())
    as_json = json.loads(json.dumps(dataclasses.asdict(schedule)))  # tuples become lists
    return saved["rows"] if saved["schedule"] == as_json else []


def run_ablations(
    data: Cifar10, schedule: Schedule, variants=None, *, save_to=None, num_workers=None
) -> dict[str, Any]:
    """Train each variant (default: all) for each seed; saved to ``save_to`` after every run."""
    path = Path(save_to) if save_to else None
    record = {**new_record(schedule), "rows": resumed_rows(path, schedule)}
    done = {(row["variant"], row["seed"]) for row in record["rows"]}
    for name in variants or VARIANTS:
        for seed in [s for s in schedule.seeds if (name, s) not in done]:
            row = train_variant(name, seed, schedule, data, num_workers=num_workers)
            record["rows"].append(row)
            print(f"{name:<11} seed {seed}: test accuracy {row['test_acc']:.1%}")
            if path:
                path.write_text(json.dumps(record, indent=1))
    return record


PROBE_PLANS = {  # the 15-epoch probes' stride and max-pooling nets
    name + "_probe": dataclasses.replace(PLANS[name], res_dilation=(1, 1, 1, 1))
    for name in ("strided", "maxpool")
}


# <<< end of the lessons' code
