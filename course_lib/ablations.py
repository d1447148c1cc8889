"""Lesson 06's committed experiment records, and the statistics that judge them.

``load_results`` reads a record that ``benchmarks/ablations.py`` or
``benchmarks/architecture_probes.py`` committed under ``benchmarks/results/`` (downloaded once
on Colab). ``summarise``, ``noise_floor``, ``threshold`` and ``compare`` are written and
explained in lesson 06. Used in lessons 02 and 06.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import links

RESULTS = "benchmarks/results/ablations.json"  # the 4-epoch sweep: every variant, two seeds
AUGMENT_CHECK = "benchmarks/results/ablations_15ep_augmentation.json"  # 15 epochs, 4 variants
PROBES = "benchmarks/results/architecture_probes.json"  # 15-epoch runs, keyed by probe name


def load_results(path: str | Path | None = None, *, committed: str = RESULTS) -> dict[str, Any]:
    """The JSON record at ``path``; without it, the committed file ``committed``.

    In a checkout that file sits under ``benchmarks/results/``; on Colab, where only the
    library is installed, ``links.fetch_committed`` downloads it once.
    """
    if path is None:
        in_checkout = (links.REPO_ROOT / "pyproject.toml").is_file()
        path = links.fetch_committed(
            committed, links.REPO_ROOT / committed if in_checkout else Path(committed)
        )
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; run `python benchmarks/ablations.py`")
    return json.loads(path.read_text())


# >>> written in the lessons' #@save cells: edit the lesson, then run `make export`


# from lessons/06_ablations.ipynb


@dataclass
class Summary:
    """One variant's results over its runs (accuracies as fractions) and its network's costs."""

    label: str
    variant: str
    accs: list[float] = field(default_factory=list)
    train_accs: list[float] = field(default_factory=list)  # on augmented images, final epoch
    seconds_per_epoch: float = 0.0  # CPU, forward + backward, if measured
    parameters: int = 0
    mult_adds: int = 0
    receptive_field: int = 0
    mean = property(lambda self: statistics.mean(self.accs))
    train_mean = property(lambda self: statistics.mean(self.train_accs))
    spread = property(lambda self: (max(self.accs) - min(self.accs)) / 2)


def summarise(results: dict[str, Any], experiment: str, *, partial=False) -> list[Summary]:
    """One ``Summary`` per variant of ``experiment``; with ``partial``, variants without runs
    are left out."""
    if experiment not in results["experiments"]:
        known = sorted(results["experiments"])
        raise ValueError(f"unknown experiment {experiment!r}; the results hold {known}")
    cpu, out = results.get("cpu_seconds_per_epoch", {}), []
    for label, name in results["experiments"][experiment].items():
        rows = [r for r in results["rows"] if r["variant"] == name]
        if not rows and not partial:
            raise ValueError(f"no runs of variant {name!r} ({experiment}: {label}) in the results")
        if rows:
            seconds = cpu.get(name) or statistics.mean(r["seconds_per_epoch"] for r in rows)
            accs, train = [r["test_acc"] for r in rows], [r["train_acc"] for r in rows]
            out.append(Summary(label, name, accs, train, seconds, **results["architecture"][name]))
    if not out:
        raise ValueError(f"no runs of any variant of {experiment!r} in the results")
    return out


def noise_floor(results: dict[str, Any]) -> float:
    """Run-to-run noise: the median gap between two runs of the same variant."""
    gaps = []
    for name in {r["variant"] for r in results["rows"]}:
        accs = [r["test_acc"] for r in results["rows"] if r["variant"] == name]
        gaps += [abs(x - y) for x, y in itertools.combinations(accs, 2)]
    if not gaps:
        raise ValueError("noise_floor needs at least one variant run with two or more seeds")
    return statistics.median(gaps)


def threshold(a: Summary, b: Summary, noise: float) -> float:
    """The smallest difference of means between ``a`` and ``b`` that ``compare`` calls
    measurable: twice ``noise`` for two runs against two."""
    return 2 * noise * math.sqrt(1 / len(a.accs) + 1 / len(b.accs))


def compare(a: Summary, b: Summary, noise: float) -> str:
    """One line: the difference of mean accuracy ``a - b`` and whether it is measurable."""
    diff, line = a.mean - b.mean, threshold(a, b, noise)
    verdict = "measurable" if abs(diff) > line else "no measurable difference"
    return (
        f"{a.label} - {b.label}: {100 * diff:+.2f} points (threshold {100 * line:.2f}); {verdict}"
    )


# <<< end of the lessons' code
