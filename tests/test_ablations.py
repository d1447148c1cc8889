import dataclasses
import json
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from course_lib import ablations, links, plots
from course_lib.ablations import (
    EXPERIMENTS,
    FULL_SCHEDULE,
    VARIANTS,
    Schedule,
    architecture,
    format_summary,
    load_results,
    run_ablations,
    summarise,
    train_variant,
)
from course_lib.links import REPO_ROOT
from course_lib.models import build_model, count_parameters
from course_lib.train import TrainConfig

from .conftest import make_synthetic_cifar

TINY = Schedule(epochs=1, train_size=100, test_size=50, seeds=(0, 1))


@pytest.fixture(scope="module")
def synthetic():
    from course_lib.data import Cifar10

    arrays = make_synthetic_cifar(200, 100)
    return Cifar10(
        arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
        tuple(arrays["classes"]),
    )  # fmt: skip


def test_every_experiment_label_names_a_variant_and_includes_the_final_model():
    for experiment, labels in EXPERIMENTS.items():
        assert set(labels.values()) <= set(VARIANTS), experiment
        assert "final" in labels.values(), experiment


def test_the_final_variant_is_the_published_model():
    assert architecture("final")["parameters"] == count_parameters(build_model("dilated"))


def test_downsampling_variants_share_the_parameter_budget_but_not_the_receptive_field():
    archs = [architecture(v) for v in ("maxpool", "strided", "final")]
    assert len({a["parameters"] for a in archs}) == 1
    assert len({a["receptive_field"] for a in archs}) == 3


def test_standard_convs_in_the_separable_slots_cost_more_parameters_and_mult_adds():
    standard, separable = architecture("standard"), architecture("final")
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


def test_train_variant_returns_the_final_epoch_row(synthetic):
    row = train_variant("ricap", 0, Schedule(epochs=2, train_size=100, test_size=50), synthetic)
    assert row["variant"] == "ricap" and row["seed"] == 0
    assert len(row["history"]) == 2
    assert row["test_acc"] == row["history"][-1]["test_acc"]
    assert 0 <= row["test_acc"] <= 1 and row["seconds_per_epoch"] > 0


def test_unknown_variant_is_a_clear_error(synthetic):
    with pytest.raises(ValueError, match="unknown variant 'resnet'"):
        train_variant("resnet", 0, TINY, synthetic)


def test_run_ablations_saves_after_each_run_and_continues_an_interrupted_sweep(
    synthetic, tmp_path, monkeypatch
):
    out = tmp_path / "ablations.json"
    first = run_ablations(synthetic, TINY, ["final"], save_to=out, progress=False)
    assert [(r["variant"], r["seed"]) for r in first["rows"]] == [("final", 0), ("final", 1)]
    assert json.loads(out.read_text())["rows"] == json.loads(json.dumps(first["rows"]))

    trained = []
    real = ablations.train_variant

    def counting(name, seed, schedule, data, **kw):
        trained.append((name, seed))
        return real(name, seed, schedule, data, **kw)

    monkeypatch.setattr(ablations, "train_variant", counting)
    second = run_ablations(synthetic, TINY, ["final", "strided"], save_to=out, progress=False)
    assert trained == [("strided", 0), ("strided", 1)]
    assert len(second["rows"]) == 4


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
    assert final.seconds_per_epoch == pytest.approx(11.0)
    assert standard.spread == 0
    table = format_summary([standard, final])
    assert "72.00%" in table and "2.00%" in table


def test_summarise_partial_leaves_out_variants_without_runs_but_not_a_whole_experiment():
    results = _fake_results()
    results["rows"] = [r for r in results["rows"] if r["variant"] == "final"]
    (final,) = summarise(results, "separable", partial=True)
    assert final.label == "depthwise-separable" and len(final.accs) == 2
    results["rows"] = []
    with pytest.raises(ValueError, match="no runs of any variant of 'separable'"):
        summarise(results, "separable", partial=True)


def test_summarise_reports_the_measured_cpu_cost_or_a_borrowed_one_over_run_times():
    results = _fake_results()
    results["cpu_seconds_per_epoch"] = {"final": 99.0}
    standard, final = summarise(results, "separable")
    assert final.seconds_per_epoch == 99.0
    assert standard.seconds_per_epoch == 20.0  # not measured: the runs' own epoch time
    standard, final = summarise(results, "separable", cpu_seconds={"standard": 7.0})
    assert (standard.seconds_per_epoch, final.seconds_per_epoch) == (7.0, 11.0)


def test_summarise_names_what_is_missing():
    with pytest.raises(ValueError, match="unknown experiment 'pooling'"):
        summarise(_fake_results(), "pooling")
    results = _fake_results()
    results["rows"] = results["rows"][:2]
    with pytest.raises(ValueError, match="no runs of variant 'standard'"):
        summarise(results, "separable")


def test_noise_floor_is_the_median_seed_range_and_compare_applies_twice_it_to_two_seeds():
    results = _fake_results()
    results["rows"].append(
        {
            "variant": "standard",
            "seed": 1,
            "test_acc": 0.76,
            "train_acc": 0.7,
            "seconds_per_epoch": 1,
        }
    )
    assert ablations.noise_floor(results) == pytest.approx(0.025)  # ranges 0.04 and 0.01
    standard, final = summarise(results, "separable")
    assert ablations.compare(standard, final, 0.01) == (
        "standard - depthwise-separable: +3.50 points (threshold 2.00); measurable"
    )
    assert "no measurable difference" in ablations.compare(standard, final, 0.02)
    results["rows"] = [r for r in results["rows"] if r["seed"] == 0]
    with pytest.raises(ValueError, match="two or more seeds"):
        ablations.noise_floor(results)


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


def test_ablation_plots_draw_one_bar_and_one_point_per_variant():
    rows = summarise(_fake_results(), "separable")
    fig = plots.plot_ablation(rows, title="separable")
    assert isinstance(fig, Figure) and len(fig.axes[0].patches) == 2
    fig = plots.plot_accuracy_vs_compute({"separable": rows})
    assert len(fig.axes) == 2 and all(len(ax.containers) == 2 for ax in fig.axes)
    with pytest.raises(ValueError):
        plots.plot_ablation([])


def test_accuracy_vs_compute_draws_a_variant_shared_by_two_experiments_once():
    results = _fake_results()
    results["experiments"]["downsampling"] = {"final only": "final"}
    experiments = {e: summarise(results, e) for e in ("separable", "downsampling")}
    fig = plots.plot_accuracy_vs_compute(experiments)
    assert all(len(ax.containers) == 2 for ax in fig.axes)  # standard, final: not 3
    assert "final" in [t.get_text() for t in fig.axes[0].texts]


def test_noise_floor_of_many_runs_is_the_median_pairwise_gap_not_the_range():
    rows = [
        {"variant": "final", "seed": s, "test_acc": a} for s, a in enumerate([0.80, 0.81, 0.84])
    ]
    # gaps 0.01, 0.04, 0.03: the typical gap between two runs is 0.03; the range, 0.04, is not
    assert ablations.noise_floor({"rows": rows}) == pytest.approx(0.03)


def _summary(label, accs):
    return ablations.Summary(label=label, variant=label, accs=accs)


def test_compare_asks_more_of_single_runs_than_of_two_seed_means():
    noise = 0.005  # two means over two seeds each: measurable above 1.0 point
    two_a, two_b = _summary("a", [0.812, 0.812]), _summary("b", [0.800, 0.800])
    assert ablations.compare(two_a, two_b, noise).endswith("; measurable")
    one_a, one_b = _summary("a", [0.812]), _summary("b", [0.800])
    # the same 1.2-point gap between two single runs is under 2 x 0.5 x sqrt(2) = 1.41 points
    assert ablations.threshold(one_a, one_b, noise) == pytest.approx(0.01 * 2**0.5)
    assert ablations.compare(one_a, one_b, noise).endswith("no measurable difference")
    seven = _summary("b", [0.800] * 7)
    assert ablations.threshold(one_a, seven, noise) == pytest.approx(0.01 * (8 / 7) ** 0.5)


def test_ablation_plot_noise_band_is_the_compare_threshold_around_the_final_model():
    rows = summarise(_fake_results(), "separable")  # final: two seeds; standard: one
    fig = plots.plot_ablation(rows, noise=0.01)
    (band,) = [c for c in fig.axes[0].collections if "threshold" in c.get_label()]
    ys = band.get_paths()[0].vertices[:, 1]
    half = 100 * ablations.threshold(rows[0], rows[1], 0.01)
    assert (ys.min(), ys.max()) == pytest.approx((72.0 - half, 72.0 + half))
    assert len(fig.axes[0].patches) == 2


def test_ablation_plot_marks_the_break_when_the_bars_do_not_start_at_zero():
    rows = summarise(_fake_results(), "separable")
    ax = plots.plot_ablation(rows).axes[0]
    assert ax.get_ylim()[0] > 0
    assert [line for line in ax.lines if line.get_gid() == "axis-break"]
    assert "axis from" in ax.get_ylabel()


def _long_inputs():
    check = {
        "schedule": {"epochs": 15},
        "environment": {"device_name": "GPU"},
        "rows": [{"variant": "no_augment", "seed": 0, "test_acc": 0.83, "train_acc": 0.9}],
    }
    config = dataclasses.asdict(TrainConfig())

    def probe(name, acc, **extra):
        return {
            "probe": name,
            "seed": 0,
            "final_test_acc": acc,
            "final_train_acc": 0.9,
            "test_acc_per_epoch": [acc] * config["epochs"],
            **extra,
        }

    probes = {
        "runs": {
            "a": probe("trimming", 0.85),
            "b": probe("trimming", 0.84, overrides={"cutout_p": 0.1}),
            "c": probe("trimming", 0.80, test_acc_per_epoch=[0.8] * 10),
            "d": probe("strided", 0.849),
            "e": probe("halving_old_final", 0.81),
            "f": probe("trimming", 0.83, config={**config, "weight_decay": 0.0}),
        }
    }
    published = {
        "config": config,
        "seed": 0,
        "final_test_acc": 0.851,
        "history": [{"train_acc": 0.9}],
        "environment": {"device": "cpu", "cpu_count": 2},
    }
    return check, probes, published


def test_long_schedule_results_keep_only_full_length_runs_of_the_default_recipe():
    check, probes, published = _long_inputs()
    cpu = {name: 1.0 for name in VARIANTS}
    long = ablations.long_schedule_results(cpu, check=check, probes=probes, published=published)
    got = sorted((r["variant"], r["test_acc"]) for r in long["rows"])
    # no override, no 10-epoch run, no changed recipe, and the earlier final model is no variant
    assert got == [
        ("final", 0.85),
        ("final", 0.851),
        ("no_augment", 0.83),
        ("strided_probe", 0.849),
    ]
    (stride, final) = summarise(long, "downsampling", partial=True)
    assert final.accs == [0.85, 0.851] and stride.label.startswith("stride 2")
    assert ablations.noise_floor(long) == pytest.approx(0.001)


def test_long_schedule_probes_borrow_their_variants_cpu_cost():
    check, probes, published = _long_inputs()
    cpu = {name: float(i) for i, name in enumerate(VARIANTS)}
    long = ablations.long_schedule_results(cpu, check=check, probes=probes, published=published)
    assert long["cpu_seconds_per_epoch"]["strided_probe"] == cpu["strided"]


def test_probe_nets_differ_from_their_variants_only_in_the_residual_dilation():
    for probe, plan in ablations.PROBE_PLANS.items():
        variant = VARIANTS[probe.removesuffix("_probe")].plan
        assert dataclasses.replace(plan, res_dilation=variant.res_dilation) == variant
        assert plan.res_dilation != variant.res_dilation


def _check_committed(results, variants):
    """Every variant x seed of the schedule ran once, and the stored networks are today's."""
    seeds = tuple(results["schedule"]["seeds"])
    ran = [(r["variant"], r["seed"]) for r in results["rows"]]
    assert sorted(ran) == sorted((v, s) for v in variants for s in seeds)
    for name in VARIANTS:
        assert results["architecture"][name] == architecture(name), name
    return seeds


@pytest.mark.skipif(not (REPO_ROOT / ablations.RESULTS).exists(), reason="no committed results")
def test_committed_results_cover_every_variant_and_seed_and_match_the_code():
    results = load_results()
    seeds = _check_committed(results, VARIANTS)
    assert len(seeds) >= 2
    assert results["schedule"] == json.loads(json.dumps(dataclasses.asdict(FULL_SCHEDULE)))
    for experiment in EXPERIMENTS:
        assert all(len(s.accs) == len(seeds) for s in summarise(results, experiment))


@pytest.mark.skipif(
    not (REPO_ROOT / ablations.AUGMENT_CHECK).exists(), reason="no committed 15-epoch check"
)
def test_committed_15_epoch_check_reruns_part_of_the_augmentation_experiment_at_full_length():
    check = load_results(committed=ablations.AUGMENT_CHECK)
    variants = ["no_augment", "flip_shift", "final", "cutout"]
    assert _check_committed(check, variants) == (0,)
    assert check["schedule"]["epochs"] == TrainConfig().epochs > FULL_SCHEDULE.epochs
    assert check["schedule"]["train_size"] == check["schedule"]["test_size"] == 0
    rows = summarise(check, "augmentation", partial=True)
    assert [s.variant for s in rows] == [
        v for v in EXPERIMENTS["augmentation"].values() if v in variants
    ]
