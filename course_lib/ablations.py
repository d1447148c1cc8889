"""Lesson 06's ablations: what each design choice of the final model buys, measured.

Three experiments, each a set of variants that differ from the final model in one thing:

- ``"downsampling"``: max-pooling (which the assignment rules out), stride 2 (which it asks
  for) or dilation (its bonus) at the end of every block, the same plan and the same
  parameter count (``models.NetPlan.downsampling``); ``"halving"`` is the one dilated net
  whose dilations 8, 4, 2, 1 halve the map;
- ``"separable"``: the final model's depthwise-separable convs against standard convs in the
  same slots;
- ``"augmentation"``: none; flip and shift; the assignment's pipeline; that plus batch CutOut;
  that plus RICAP.

Every variant is trained with the course's trainer (``train.fit``, ``TrainConfig`` defaults)
on a fixed short ``Schedule`` for each seed, and reported with its parameters, multiply-adds,
receptive field, CPU seconds per epoch and final-epoch test accuracy. ``python
benchmarks/ablations.py`` runs them all and writes ``benchmarks/results/ablations.json``,
which lesson 06 reads; ``summarise`` reduces the per-seed rows to mean and spread. A second
committed file, ``AUGMENT_CHECK``, holds a check of the augmentation experiment on the full
15-epoch schedule (one seed, four variants); ``load_results(committed=AUGMENT_CHECK)`` reads it.
``long_schedule_results`` gathers every committed 15-epoch run with the trainer's defaults
(that check, the architecture probes and the published checkpoint's record) into the same
format; its seven runs of the final recipe give the noise floor at the length that matters.
Accuracy can come from a GPU machine; the CPU cost always comes from ``cpu_seconds_per_epoch``
on a CPU, since a shared GPU's timings say little about the 2-core machine students use.

Used in lesson 06.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .augment import AugmentConfig
from .data import Cifar10
from .device import autocast, prepare
from .models import PLANS, FourBlockNet, NetPlan, count_parameters, summary
from .receptive_field import receptive_field
from .train import TrainConfig, environment_info, fit, seed_everything, training_loaders

RESULTS = "benchmarks/results/ablations.json"  # committed; written by benchmarks/ablations.py
# committed: no_augment, flip_shift, final, cutout for 15 epochs, seed 0 (same record format)
AUGMENT_CHECK = "benchmarks/results/ablations_15ep_augmentation.json"
# committed: 15-epoch runs on an H100 by benchmarks/architecture_probes.py, keyed by probe name
PROBES = "benchmarks/results/architecture_probes.json"
# The probes' stride and max-pooling nets are the variants with dilation 1 in C4's residual
# pair too (the variants dilate it by 2), so they get names of their own. "halving_old_final"
# (the earlier final model: dilations 8, 4, 2, 2, the last padded, no residual dilation) is
# not the "halving" variant and is left out.
PROBE_PLANS = {
    "strided_probe": NetPlan(downsampling="strided", res_dilation=(1, 1, 1, 1)),
    "maxpool_probe": NetPlan(downsampling="maxpool", res_dilation=(1, 1, 1, 1)),
}
# probe name in PROBES -> the network it trained: a variant or a PROBE_PLANS name
PROBE_VARIANTS = {"trimming": "final", "strided": "strided_probe", "maxpool": "maxpool_probe"}
# Reported, not measured here: the public write-up of the same assignment by A. Adil,
# Krithiga, S. Dhanraaj and S. Kandarp (residual blocks; 55.8k parameters for its best net)
# gives one test accuracy for each of two unnamed configurations ("case 1", "case 2") per
# regulariser. It states neither the epochs nor whether the numbers are final- or best-epoch.
REPORTED_ELSEWHERE = {"cutout": (0.8531, 0.8731), "ricap": (0.8626, 0.8762)}
ASSIGNMENT_AUGMENT = AugmentConfig()  # the trainer's settings, from their one source


@dataclass(frozen=True)
class Variant:
    """One trained configuration: a network plan, a per-image pipeline, a batch regulariser."""

    plan: NetPlan = NetPlan()
    augment: AugmentConfig = ASSIGNMENT_AUGMENT
    batch_aug: str = "none"  # TrainConfig.batch_aug: "none" | "cutout" | "ricap"

    def build(self) -> nn.Module:
        return FourBlockNet(self.plan)


VARIANTS: dict[str, Variant] = {
    "final": Variant(),
    **{name: Variant(plan=PLANS[name]) for name in ("halving", "strided", "maxpool", "standard")},
    "no_augment": Variant(augment=AugmentConfig(flip_p=0.0, affine_p=0.0, cutout_p=0.0)),
    "flip_shift": Variant(augment=AugmentConfig(scale=0.0, rotate=0.0, cutout_p=0.0)),
    "cutout": Variant(batch_aug="cutout"),
    "ricap": Variant(batch_aug="ricap"),
}

# experiment -> {label shown in lesson 06: variant name}; "final" is shared, trained once.
EXPERIMENTS: dict[str, dict[str, str]] = {
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


# the experiments that have 15-epoch runs, as long_schedule_results labels them
LONG_EXPERIMENTS: dict[str, dict[str, str]] = {
    "downsampling": {
        "max-pool (res d=1)": "maxpool_probe",
        "stride 2 (res d=1)": "strided_probe",
        "dilation, trimming": "final",
    },
    "augmentation": EXPERIMENTS["augmentation"],
}


@dataclass(frozen=True)
class Schedule:
    """The fixed short schedule every variant gets: far from converged, equal for all."""

    epochs: int = 4
    train_size: int = 0  # 0 = all 50,000; else a class-stratified subset
    test_size: int = 0  # 0 = all 10,000 test images
    seeds: tuple[int, ...] = (0, 1)


FULL_SCHEDULE = Schedule()
FAST_SCHEDULE = Schedule(epochs=1, train_size=500, test_size=200, seeds=(0,))


def architecture(variant: str) -> dict[str, int]:
    """Parameters, multiply-adds per 32x32 image and receptive field of a variant's network.

    ``variant`` may also name one of ``PROBE_PLANS``.
    """
    if variant in PROBE_PLANS:
        model: nn.Module = FourBlockNet(PROBE_PLANS[variant])
    else:
        model = VARIANTS[_check_variant(variant)].build()
    return {
        "parameters": count_parameters(model),
        "mult_adds": int(summary(model).total_mult_adds),
        "receptive_field": receptive_field(model),
    }


def cpu_seconds_per_epoch(
    variant: str, *, steps: int = 8, batch_size: int = 256, train_images: int = 50_000
) -> float:
    """CPU seconds of forward and backward passes for one epoch of ``variant``, extrapolated.

    Times ``steps`` SGD steps on random batches with the trainer's CPU settings (bf16
    autocast, channels_last) after two warm-up steps; data loading is not included.
    """
    model = prepare(VARIANTS[_check_variant(variant)].build(), torch.device("cpu")).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,))

    def step() -> None:
        with autocast(torch.device("cpu")):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    per_step = (time.perf_counter() - t0) / steps
    return per_step * math.ceil(train_images / batch_size)


def train_variant(
    variant: str,
    seed: int,
    schedule: Schedule,
    data: Cifar10,
    *,
    num_workers: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train one variant for one seed on ``schedule``; its final-epoch row, with history."""
    spec = VARIANTS[_check_variant(variant)]
    cfg = TrainConfig(
        model=variant,
        epochs=schedule.epochs,
        batch_aug=spec.batch_aug,
        cutout_p=spec.augment.cutout_p,
        train_size=schedule.train_size,
        test_size=schedule.test_size,
        seed=seed,
        num_workers=num_workers,
    )
    seed_everything(seed)
    train_loader, test_loader, _ = training_loaders(cfg, data, spec.augment)
    model = spec.build()
    t0 = time.perf_counter()
    result = fit(model, train_loader, test_loader, cfg, progress=progress)
    last = result.history[-1]
    return {
        "variant": variant,
        "seed": seed,
        "test_acc": last["test_acc"],
        "train_acc": last["train_acc"],
        "seconds_per_epoch": statistics.mean(h["seconds"] for h in result.history),
        "wall_seconds": time.perf_counter() - t0,
        "history": result.history,
    }


def run_ablations(
    data: Cifar10,
    schedule: Schedule = FULL_SCHEDULE,
    variants: Iterable[str] | None = None,
    *,
    save_to: str | Path | None = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train every variant (default: all of ``VARIANTS``) for every seed of ``schedule``.

    Returns the record that ``benchmarks/ablations.py`` writes as JSON: the schedule, the
    trainer's config, the environment, each variant's settings and architecture, and one row
    per (variant, seed). With ``save_to`` the record is rewritten after every run, and runs
    already in that file (same schedule) are kept, so an interrupted sweep continues.
    """
    from .device import default_device

    names = [_check_variant(v) for v in (variants if variants is not None else VARIANTS)]
    rows: list[dict[str, Any]] = []
    if save_to is not None and Path(save_to).exists():
        previous = json.loads(Path(save_to).read_text())
        if previous["schedule"] == json.loads(json.dumps(dataclasses.asdict(schedule))):
            rows = previous["rows"]
    done = {(r["variant"], r["seed"]) for r in rows}
    record = {
        "schedule": dataclasses.asdict(schedule),
        "trainer": dataclasses.asdict(TrainConfig()),
        "experiments": EXPERIMENTS,
        "variants": {name: _describe(VARIANTS[name]) for name in VARIANTS},
        "architecture": {name: architecture(name) for name in VARIANTS},
        "environment": environment_info(default_device()),
        "cpu_seconds_per_epoch": {},
        "rows": rows,
    }
    jobs = [(n, seed) for n in names for seed in schedule.seeds if (n, seed) not in done]
    for name, seed in tqdm(jobs, desc="ablations", unit="run", disable=not progress):
        rows.append(train_variant(name, seed, schedule, data, num_workers=num_workers))
        if progress:
            tqdm.write(f"{name:<11} seed {seed}: {rows[-1]['test_acc']:.2%}")
        if save_to is not None:
            save_results(record, save_to)
    return record


@dataclass
class Summary:
    """One variant's figures over its seeds (accuracies as fractions)."""

    label: str
    variant: str
    accs: list[float] = field(default_factory=list)
    train_accs: list[float] = field(default_factory=list)  # on augmented images, final epoch
    seconds_per_epoch: float = 0.0  # CPU, forward + backward (see cpu_seconds_per_epoch)
    parameters: int = 0
    mult_adds: int = 0
    receptive_field: int = 0

    @property
    def mean(self) -> float:
        return statistics.mean(self.accs)

    @property
    def train_mean(self) -> float:
        return statistics.mean(self.train_accs)

    @property
    def spread(self) -> float:
        """Half the range over seeds (0 for a single seed)."""
        return (max(self.accs) - min(self.accs)) / 2


def summarise(
    results: dict[str, Any],
    experiment: str,
    *,
    partial: bool = False,
    cpu_seconds: dict[str, float] | None = None,
) -> list[Summary]:
    """One ``Summary`` per variant of ``experiment``, in the order of ``EXPERIMENTS``.

    A variant without runs is an error, unless ``partial``: then it is left out, for a check
    that trained only some variants (``AUGMENT_CHECK``); an experiment with no runs at all is
    still an error. ``cpu_seconds`` (variant -> CPU seconds per epoch) replaces the results'
    own ``cpu_seconds_per_epoch``: the cost depends on the network, not on the schedule, so a
    check can borrow the main sweep's measurement.
    """
    if experiment not in results["experiments"]:
        raise ValueError(
            f"unknown experiment {experiment!r}; the results hold {sorted(results['experiments'])}"
        )
    measured = results.get("cpu_seconds_per_epoch", {}) if cpu_seconds is None else cpu_seconds
    out = []
    for label, name in results["experiments"][experiment].items():
        rows = [r for r in results["rows"] if r["variant"] == name]
        if not rows and partial:
            continue
        if not rows:
            raise ValueError(f"no runs of variant {name!r} ({experiment}: {label}) in the results")
        out.append(
            Summary(
                label=label,
                variant=name,
                accs=[r["test_acc"] for r in rows],
                train_accs=[r["train_acc"] for r in rows],
                seconds_per_epoch=_cpu_seconds(measured, rows),
                **results["architecture"][name],
            )
        )
    if not out:
        raise ValueError(f"no runs of any variant of {experiment!r} in the results")
    return out


def noise_floor(results: dict[str, Any]) -> float:
    """Run-to-run noise: the median gap between two runs of the same variant.

    Every pair of runs of a variant gives one gap (two seeds give one, seven runs 21); the
    median over all of them is the typical gap between two runs that differ only by chance.
    A variant's range would overstate it as runs are added.
    """
    gaps = []
    for name in {r["variant"] for r in results["rows"]}:
        accs = [r["test_acc"] for r in results["rows"] if r["variant"] == name]
        gaps += [abs(x - y) for x, y in itertools.combinations(accs, 2)]
    if not gaps:
        raise ValueError("noise_floor needs at least one variant run with two or more seeds")
    return statistics.median(gaps)


def threshold(a: Summary, b: Summary, noise: float) -> float:
    """The smallest difference of means between ``a`` and ``b`` that ``compare`` calls measurable.

    Twice the noise floor for two means over two runs each, the sweep's case. The noise of a
    mean shrinks with the square root of its runs, so the line is scaled by
    ``sqrt(1/n_a + 1/n_b)``: two single runs need about 1.4x as much, a single run against
    seven about 1.07x.
    """
    return 2 * noise * math.sqrt(1 / len(a.accs) + 1 / len(b.accs))


def compare(a: Summary, b: Summary, noise: float) -> str:
    """One line: the difference of mean accuracy ``a - b`` and whether it is measurable.

    Measurable means larger than ``threshold`` (twice the ``noise_floor`` for two seeds
    against two); otherwise the line says there is no measurable difference.
    """
    diff = a.mean - b.mean
    line = threshold(a, b, noise)
    verdict = "measurable" if abs(diff) > line else "no measurable difference"
    return (
        f"{a.label} - {b.label}: {100 * diff:+.2f} points (threshold {100 * line:.2f}); {verdict}"
    )


def format_summary(rows: Sequence[Summary]) -> str:
    """A fixed-width table: parameters, multiply-adds, RF, CPU s/epoch, accuracy mean ± spread."""
    lines = [
        f"{'variant':<20} {'params':>8} {'mult-adds':>9} {'RF':>4} {'CPU s/ep':>8} "
        f"{'test acc':>9} {'± half-range':>12} {'runs':>5}"
    ]
    for r in rows:
        lines.append(
            f"{r.label:<20} {r.parameters:>8,} {r.mult_adds / 1e6:>8.1f}M {r.receptive_field:>4} "
            f"{r.seconds_per_epoch:>8.1f} {r.mean:>9.2%} {r.spread:>12.2%} {len(r.accs):>5}"
        )
    return "\n".join(lines)


def save_results(results: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    return path


def load_results(path: str | Path | None = None, *, committed: str = RESULTS) -> dict[str, Any]:
    """The JSON written by ``benchmarks/ablations.py``; by default a committed one.

    Without ``path``, reads the committed file ``committed`` (``RESULTS``, the sweep,
    ``AUGMENT_CHECK``, the 15-epoch augmentation check, or ``PROBES``). In a checkout it sits
    under ``benchmarks/results/``; on Colab it is downloaded from the repository once
    (``links.fetch_committed``).
    """
    from .links import REPO_ROOT, fetch_committed

    if path is None:
        in_checkout = (REPO_ROOT / "pyproject.toml").is_file()
        local = REPO_ROOT / committed if in_checkout else Path(committed)
        try:
            path = fetch_committed(committed, local)
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"{err}; run `python benchmarks/ablations.py` to produce it"
            ) from None
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; run `python benchmarks/ablations.py`")
    return json.loads(path.read_text())


def long_schedule_results(
    cpu_seconds: dict[str, float] | None = None,
    *,
    check: dict[str, Any] | None = None,
    probes: dict[str, Any] | None = None,
    published: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every committed run on the full schedule with the trainer's defaults, as one record.

    Gathers the runs of ``VARIANTS`` that trained for ``TrainConfig().epochs`` with nothing
    overridden: the 15-epoch augmentation check (``AUGMENT_CHECK``), the architecture probes
    (``PROBES``, see ``PROBE_VARIANTS``) and the published checkpoint's record (the final
    model, trained on the 2-core CPU). Its experiments are ``LONG_EXPERIMENTS``: the
    downsampling probes differ from the sweep's variants in C4's residual dilation, so they
    carry names of their own. The result has the format of ``load_results``, so
    ``summarise(..., partial=True)`` and ``noise_floor`` work on it; each row also names its
    ``source`` and ``machine``. The three inputs default to the committed files.
    ``cpu_seconds`` (the sweep's ``cpu_seconds_per_epoch``) becomes the record's CPU cost; a
    probe borrows its variant's (``"strided_probe"`` that of ``"strided"``): a residual
    dilation changes no multiply-add, though the CPU may run it at another speed.

    Used in lesson 06.
    """
    from .evaluate import published_checkpoint

    check = load_results(committed=AUGMENT_CHECK) if check is None else check
    probes = load_results(committed=PROBES) if probes is None else probes
    if published is None:
        published = json.loads(Path(f"{published_checkpoint()}.json").read_text())
    defaults = dataclasses.asdict(TrainConfig())
    epochs = defaults["epochs"]
    rows = []
    if check["schedule"]["epochs"] == epochs:
        machine = check["environment"]["device_name"]
        rows += [{**r, "source": AUGMENT_CHECK, "machine": machine} for r in check["rows"]]
    for key, run in probes["runs"].items():
        variant = PROBE_VARIANTS.get(run["probe"])
        accs = [h["test_acc"] for h in run["history"]] if "history" in run else None
        accs = accs or run["test_acc_per_epoch"]
        if variant is None or len(accs) != epochs or "overrides" in run:
            continue
        if not _trained_with(run.get("config", {}), defaults):
            continue
        train_acc = run["history"][-1]["train_acc"] if "history" in run else run["final_train_acc"]
        rows.append(
            {"variant": variant, "seed": run["seed"], "test_acc": run["final_test_acc"],
             "train_acc": train_acc, "source": f"{PROBES}: {key}",
             "machine": _machine(run["environment"]) if "environment" in run else "NVIDIA H100"}
        )  # fmt: skip
    if published["config"]["epochs"] == epochs and _trained_with(published["config"], defaults):
        rows.append(
            {"variant": "final", "seed": published["seed"],
             "test_acc": published["final_test_acc"],
             "train_acc": published["history"][-1]["train_acc"],
             "source": "published checkpoint", "machine": _machine(published["environment"])}
        )  # fmt: skip
    return {
        "schedule": {"epochs": epochs, "seeds": sorted({r["seed"] for r in rows})},
        "experiments": LONG_EXPERIMENTS,
        "architecture": {name: architecture(name) for name in [*VARIANTS, *PROBE_PLANS]},
        "cpu_seconds_per_epoch": _with_probes(cpu_seconds or {}),
        "rows": rows,
    }


def _with_probes(cpu_seconds: dict[str, float]) -> dict[str, float]:
    """The sweep's CPU cost per variant, each probe borrowing its variant's."""
    if not cpu_seconds:
        return {}
    return {**cpu_seconds, **{p: cpu_seconds[p.removesuffix("_probe")] for p in PROBE_PLANS}}


def _trained_with(config: dict[str, Any], defaults: dict[str, Any]) -> bool:
    """True when a run's config matches the trainer's defaults in everything but bookkeeping."""
    bookkeeping = {"model", "seed", "num_workers"}
    return all(config.get(k, v) == v for k, v in defaults.items() if k not in bookkeeping)


def _machine(env: dict[str, Any]) -> str:
    if env["device"] == "cpu":
        return f"{env['cpu_count']}-core CPU"
    return env["device_name"]


def _cpu_seconds(measured: dict[str, float], rows: list[dict[str, Any]]) -> float:
    """The measured CPU cost if there is one, else the runs' own mean epoch time."""
    name = rows[0]["variant"]
    if name in measured:
        return measured[name]
    return statistics.mean(r["seconds_per_epoch"] for r in rows)


def _describe(variant: Variant) -> dict[str, Any]:
    return {
        "plan": dataclasses.asdict(variant.plan),
        "augment": dataclasses.asdict(variant.augment),
        "batch_aug": variant.batch_aug,
    }


def _check_variant(name: str) -> str:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose one of {sorted(VARIANTS)}")
    return name
