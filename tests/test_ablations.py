"""Lesson 06's statistics (course_lib.ablations) and its loop (benchmarks/experiments.py)."""

import dataclasses
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from course_lib import ablations, links
from course_lib.ablations import Summary, compare, load_results, noise_floor, summarise, threshold
from course_lib.augment import AugmentConfig
from course_lib.links import REPO_ROOT
from course_lib.models import build_model, count_parameters
from course_lib.train import TrainConfig

from .conftest import make_synthetic_cifar

# benchmarks/ is no package: load the exported copy of lesson 06's loop by its path
_spec = importlib.util.spec_from_file_location(
    "experiments", REPO_ROOT / "benchmarks/experiments.py"
)
experiments = importlib.util.module_from_spec(_spec)
sys.modules["experiments"] = experiments  # dataclasses look their module up there
_spec.loader.exec_module(experiments)
VARIANTS, EXPERIMENTS = experiments.VARIANTS, experiments.EXPERIMENTS
TINY = experiments.Schedule(epochs=1, train_size=100, test_size=50, seeds=(0, 1))


@pytest.fixture(scope="module")
def synthetic():
    from course_lib.data import Cifar10

    arrays = make_synthetic_cifar(200, 100)
    return Cifar10(
        arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
        tuple(arrays["classes"]),
    )  # fmt: skip


def _architecture(name):
    return experiments.architecture(VARIANTS[name].plan)


# ---------------------------------------------------------------------------- the variants


def test_every_experiment_label_names_a_variant_and_includes_the_final_model():
    for experiment, labels in EXPERIMENTS.items():
        assert set(labels.values()) <= set(VARIANTS), experiment
        assert "final" in labels.values(), experiment


def test_the_final_variant_is_the_published_model_trained_with_the_trainers_pipeline():
    assert _architecture("final")["parameters"] == count_parameters(build_model("dilated"))
    assert VARIANTS["final"].augment == AugmentConfig(cutout_p=TrainConfig().cutout_p)
    assert VARIANTS["final"].batch_aug == TrainConfig().batch_aug


def test_downsampling_variants_share_the_parameter_budget_but_not_the_receptive_field():
    archs = [_architecture(v) for v in ("maxpool", "strided", "final")]
    assert len({a["parameters"] for a in archs}) == 1
    assert len({a["receptive_field"] for a in archs}) == 3


def test_standard_convs_in_the_separable_slots_cost_more_parameters_and_mult_adds():
    standard, separable = _architecture("standard"), _architecture("final")
    assert standard["parameters"] > separable["parameters"]
    assert standard["mult_adds"] > separable["mult_adds"]


def test_augmentation_variants_differ_from_the_final_model_in_augmentation_only():
    final = VARIANTS["final"]
    for name in ("no_augment", "flip_shift", "cutout", "ricap"):
        assert VARIANTS[name].plan == final.plan
        assert (VARIANTS[name].augment, VARIANTS[name].batch_aug) != (
            final.augment,
            final.batch_aug,
        )
    assert VARIANTS["no_augment"].augment.flip_p == 0 == VARIANTS["no_augment"].augment.cutout_p


def test_probe_nets_differ_from_their_variants_only_in_the_residual_dilation():
    for probe, plan in experiments.PROBE_PLANS.items():
        variant = VARIANTS[probe.removesuffix("_probe")].plan
        assert dataclasses.replace(plan, res_dilation=variant.res_dilation) == variant
        assert plan.res_dilation != variant.res_dilation


# ---------------------------------------------------------------------------- the loop


def test_train_variant_returns_the_final_epoch_row(synthetic):
    schedule = experiments.Schedule(epochs=2, train_size=100, test_size=50)
    row = experiments.train_variant("ricap", 0, schedule, synthetic)
    assert row["variant"] == "ricap" and row["seed"] == 0
    assert len(row["history"]) == 2
    assert row["test_acc"] == row["history"][-1]["test_acc"]
    assert 0 <= row["test_acc"] <= 1 and row["seconds_per_epoch"] > 0


def test_run_ablations_saves_after_each_run_and_continues_an_interrupted_sweep(
    synthetic, tmp_path, monkeypatch
):
    out = tmp_path / "ablations.json"
    first = experiments.run_ablations(synthetic, TINY, ["final"], save_to=out)
    assert [(r["variant"], r["seed"]) for r in first["rows"]] == [("final", 0), ("final", 1)]
    assert json.loads(out.read_text())["rows"] == json.loads(json.dumps(first["rows"]))

    trained = []
    real = experiments.train_variant

    def counting(name, seed, schedule, data, **kw):
        trained.append((name, seed))
        return real(name, seed, schedule, data, **kw)

    monkeypatch.setattr(experiments, "train_variant", counting)
    second = experiments.run_ablations(synthetic, TINY, ["final", "strided"], save_to=out)
    assert trained == [("strided", 0), ("strided", 1)]
    assert len(second["rows"]) == 4
    # another schedule starts over instead of mixing runs of two schedules
    longer = dataclasses.replace(TINY, epochs=2, seeds=(0,))
    third = experiments.run_ablations(synthetic, longer, ["final"], save_to=out)
    assert trained[2:] == [("final", 0)] and len(third["rows"]) == 1


# ---------------------------------------------------------------------------- the statistics


def _fake_results():
    rows = [
        {"variant": v, "seed": s, "test_acc": acc, "train_acc": acc - 0.1, "seconds_per_epoch": sec}
        for v, s, acc, sec in [
            ("final", 0, 0.70, 10.0),
            ("final", 1, 0.74, 12.0),
            ("standard", 0, 0.75, 20.0),
        ]
    ]
    arch = {"parameters": 1, "mult_adds": 2, "receptive_field": 3}
    return {
        "experiments": {"separable": {"standard": "standard", "depthwise-separable": "final"}},
        "architecture": {"final": arch, "standard": arch},
        "rows": rows,
    }


def test_summarise_gives_mean_and_half_range_per_variant_in_experiment_order():
    standard, final = summarise(_fake_results(), "separable")
    assert (standard.label, final.label) == ("standard", "depthwise-separable")
    assert final.mean == pytest.approx(0.72) and final.spread == pytest.approx(0.02)
    assert final.train_mean == pytest.approx(0.62)
    assert standard.spread == 0 and final.receptive_field == 3


def test_summarise_reports_the_measured_cpu_cost_else_the_runs_own_epoch_time():
    results = _fake_results()
    results["cpu_seconds_per_epoch"] = {"final": 99.0}
    standard, final = summarise(results, "separable")
    assert final.seconds_per_epoch == 99.0
    assert standard.seconds_per_epoch == 20.0


def test_summarise_partial_leaves_out_variants_without_runs_but_not_a_whole_experiment():
    results = _fake_results()
    results["rows"] = [r for r in results["rows"] if r["variant"] == "final"]
    (final,) = summarise(results, "separable", partial=True)
    assert final.label == "depthwise-separable" and len(final.accs) == 2
    results["rows"] = []
    with pytest.raises(ValueError, match="no runs of any variant of 'separable'"):
        summarise(results, "separable", partial=True)


def test_summarise_names_what_is_missing():
    with pytest.raises(ValueError, match="unknown experiment 'pooling'"):
        summarise(_fake_results(), "pooling")
    results = _fake_results()
    results["rows"] = results["rows"][:2]
    with pytest.raises(ValueError, match="no runs of variant 'standard'"):
        summarise(results, "separable")


def test_noise_floor_is_the_median_pairwise_gap_not_the_range():
    rows = [
        {"variant": "final", "seed": s, "test_acc": a} for s, a in enumerate([0.80, 0.81, 0.84])
    ]
    rows.append({"variant": "standard", "seed": 0, "test_acc": 0.9})  # one run: no gap
    # gaps 0.01, 0.04, 0.03: the typical gap between two runs is 0.03; the range, 0.04, is not
    assert noise_floor({"rows": rows}) == pytest.approx(0.03)
    with pytest.raises(ValueError, match="two or more seeds"):
        noise_floor({"rows": rows[-1:]})


def test_compare_calls_a_gap_of_two_seed_means_measurable_above_twice_the_noise():
    standard, final = Summary("a", "a", [0.75, 0.76]), Summary("b", "b", [0.70, 0.74])
    assert compare(standard, final, 0.01) == (
        "a - b: +3.50 points (threshold 2.00); measurable"
    )
    assert compare(standard, final, 0.02).endswith("; no measurable difference")


def test_threshold_asks_more_of_single_runs_and_less_of_many():
    noise = 0.005
    one_a, one_b = Summary("a", "a", [0.812]), Summary("b", "b", [0.800])
    # a 1.2-point gap between two single runs is under 2 x 0.5 x sqrt(2) = 1.41 points
    assert threshold(one_a, one_b, noise) == pytest.approx(0.01 * 2**0.5)
    assert compare(one_a, one_b, noise).endswith("no measurable difference")
    two_a, two_b = Summary("a", "a", [0.812] * 2), Summary("b", "b", [0.800] * 2)
    assert compare(two_a, two_b, noise).endswith("; measurable")
    seven = Summary("b", "b", [0.800] * 7)
    assert threshold(one_a, seven, noise) == pytest.approx(0.01 * (8 / 7) ** 0.5)


# ---------------------------------------------------------------------------- the records


def test_load_results_explains_how_to_produce_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="benchmarks/ablations.py"):
        load_results(tmp_path / "nothing.json")


@pytest.mark.parametrize("committed", [ablations.RESULTS, ablations.AUGMENT_CHECK])
def test_load_results_outside_a_checkout_downloads_the_named_committed_file(
    committed, tmp_path, monkeypatch
):
    """On Colab there is no repository: the file comes from its address, once."""
    fetched = []

    def fake_fetch(path, target):
        fetched.append((path, Path(target)))
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text('{"rows": []}')
        return Path(target)

    monkeypatch.setattr(links, "REPO_ROOT", tmp_path / "site-packages")
    monkeypatch.setattr(links, "fetch_committed", fake_fetch)
    monkeypatch.chdir(tmp_path)
    assert load_results(committed=committed) == {"rows": []}
    assert fetched == [(committed, Path(committed))]


def _check_committed(results, variants):
    """Every variant x seed of the schedule ran once, and the stored networks are today's."""
    seeds = tuple(results["schedule"]["seeds"])
    ran = [(r["variant"], r["seed"]) for r in results["rows"]]
    assert sorted(ran) == sorted((v, s) for v in variants for s in seeds)
    for name in VARIANTS:
        assert results["architecture"][name] == _architecture(name), name
    return seeds


def test_committed_sweep_covers_every_variant_and_seed_and_matches_the_code():
    results = load_results()
    seeds = _check_committed(results, VARIANTS)
    assert len(seeds) >= 2
    schedule = dataclasses.asdict(experiments.FULL_SCHEDULE)
    assert results["schedule"] == json.loads(json.dumps(schedule))
    assert results["experiments"] == EXPERIMENTS
    for experiment in EXPERIMENTS:
        assert all(len(s.accs) == len(seeds) for s in summarise(results, experiment))


def test_committed_15_epoch_check_reruns_part_of_the_augmentation_experiment_at_full_length():
    check = load_results(committed=ablations.AUGMENT_CHECK)
    variants = ["no_augment", "flip_shift", "final", "cutout"]
    assert _check_committed(check, variants) == (0,)
    assert check["schedule"]["epochs"] == TrainConfig().epochs > experiments.FULL_SCHEDULE.epochs
    assert check["schedule"]["train_size"] == check["schedule"]["test_size"] == 0
    rows = summarise(check, "augmentation", partial=True)
    assert [s.variant for s in rows] == [
        v for v in EXPERIMENTS["augmentation"].values() if v in variants
    ]



def test_lesson_06_runs_its_own_cells_and_never_imports_benchmarks():
    # On Colab only course_lib is installed: the lesson defines the loop it runs.
    cells = json.loads((REPO_ROOT / "lessons/06_ablations.ipynb").read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    imports = re.compile(r"^\s*(from|import)\s+(benchmarks|experiments)\b", re.M)
    assert not [s for s in sources if imports.search(s)]
    assert any(s.startswith("#@save benchmarks/experiments.py") for s in sources)
