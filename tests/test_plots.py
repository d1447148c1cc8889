"""Tests for course_lib.plots on small synthetic images (no dataset needed)."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from course_lib import plots

CLASSES = ["airplane", "automobile", "bird", "cat", "deer"]
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def uint8_batch():
    return np.random.default_rng(0).integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8)


def normalize(x_uint8):
    """What A.Normalize + ToTensorV2 do to a uint8 NHWC batch."""
    x = (x_uint8.astype(np.float32) / 255 - np.float32(MEAN)) / np.float32(STD)
    return torch.from_numpy(x).permute(0, 3, 1, 2)


def axes_with_images(fig):
    return [ax for ax in fig.axes if ax.images]


def tile_titles(fig):
    return [ax.get_title() for ax in fig.axes]


# ---------------------------------------------------------------------------- to_display


def test_to_display_round_trips_a_normalized_tensor_to_the_original_uint8(uint8_batch):
    out = plots.to_display(normalize(uint8_batch), mean=MEAN, std=STD)
    assert out.dtype == np.uint8 and out.shape == uint8_batch.shape
    assert np.abs(out.astype(int) - uint8_batch).max() <= 1


def test_to_display_reads_float_nchw_in_0_1_and_single_chw_images(uint8_batch):
    x = torch.from_numpy(uint8_batch).permute(0, 3, 1, 2).float() / 255
    assert np.array_equal(plots.to_display(x), uint8_batch)
    assert np.array_equal(plots.to_display(x[0]), uint8_batch[0])


def test_to_display_keeps_uint8_nhwc_unchanged_even_with_mean_and_std(uint8_batch):
    assert np.array_equal(plots.to_display(uint8_batch, mean=MEAN, std=STD), uint8_batch)
    assert np.array_equal(plots.to_display(uint8_batch[2]), uint8_batch[2])


def test_to_display_rejects_a_shape_without_a_channel_axis():
    with pytest.raises(ValueError, match=r"1 or 3 channels.*\(2, 5, 7, 7\)"):
        plots.to_display(np.zeros((2, 5, 7, 7), np.float32))
    with pytest.raises(ValueError, match=r"must have shape .*got shape \(8, 8\)"):
        plots.to_display(np.zeros((8, 8), np.uint8))


def test_to_display_rejects_mean_with_the_wrong_number_of_channels(uint8_batch):
    with pytest.raises(ValueError, match="mean has 2 values but the images have 3 channels"):
        plots.to_display(normalize(uint8_batch), mean=(0.5, 0.5), std=STD)


def test_to_display_rejects_mean_and_std_given_in_0_255(uint8_batch):
    with pytest.raises(ValueError, match="per-channel 0-1 floats"):
        plots.to_display(normalize(uint8_batch), mean=(125.3, 123.0, 113.9), std=STD)


# ---------------------------------------------------------------------------- image grids


def test_image_grid_titles_tiles_with_class_names_and_drops_empty_cells(uint8_batch):
    fig = plots.image_grid(uint8_batch, labels=[0, 1, 2, 3, 4, 0], classes=CLASSES, ncols=4)
    assert isinstance(fig, Figure)
    assert len(axes_with_images(fig)) == 6 and len(fig.axes) == 6
    assert tile_titles(fig) == [*CLASSES, "airplane"]
    assert all(not ax.get_xticks().size and not ax.get_yticks().size for ax in fig.axes)


def test_image_grid_sets_the_figure_title(uint8_batch):
    fig = plots.image_grid(uint8_batch, title="six samples")
    assert fig.get_suptitle() == "six samples"


def test_image_grid_rejects_labels_of_a_different_length(uint8_batch):
    with pytest.raises(ValueError, match="labels has 5 entries but there are 6 images"):
        plots.image_grid(uint8_batch, labels=[0, 1, 2, 3, 4], classes=CLASSES)


def test_image_grid_rejects_a_class_index_out_of_range(uint8_batch):
    with pytest.raises(ValueError, match=r"class index 7, out of range for 5 classes \(0..4\)"):
        plots.image_grid(uint8_batch, labels=[0, 1, 2, 3, 7, 0], classes=CLASSES)


def test_class_grid_shows_per_class_examples_in_one_row_per_class():
    y = np.repeat(np.arange(5), 4)
    x = np.zeros((20, 8, 8, 3), np.uint8) + y[:, None, None, None].astype(np.uint8) * 50
    fig = plots.class_grid(x, y, CLASSES, per_class=3)
    assert len(axes_with_images(fig)) == 15
    row_labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert row_labels == CLASSES
    # each row shows only its own class (pixel value 50 * class)
    for r in range(5):
        for ax in fig.axes[3 * r : 3 * r + 3]:
            assert ax.images[0].get_array().max() == 50 * r


def test_class_grid_picks_the_same_examples_for_the_same_seed():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(40, 4, 4, 3), dtype=np.uint8)
    y = np.repeat(np.arange(5), 8)

    def picked(seed):
        fig = plots.class_grid(x, y, CLASSES, per_class=2, seed=seed)
        return np.stack([np.asarray(ax.images[0].get_array()) for ax in axes_with_images(fig)])

    assert np.array_equal(picked(0), picked(0))
    assert not np.array_equal(picked(0), picked(1))


def test_class_grid_rejects_x_and_y_of_different_lengths(uint8_batch):
    with pytest.raises(ValueError, match="x has 6 images but y has 4 labels"):
        plots.class_grid(uint8_batch, np.arange(4), CLASSES)


def test_before_after_puts_originals_above_transformed_with_row_names(uint8_batch):
    after = normalize(255 - uint8_batch)
    fig = plots.before_after(
        uint8_batch,
        after,
        labels=[0, 1, 2, 3, 4, 0],
        classes=CLASSES,
        names=("original", "cutout"),
        mean=MEAN,
        std=STD,
    )
    assert len(axes_with_images(fig)) == 12
    assert tile_titles(fig)[:6] == [*CLASSES, "airplane"]
    assert [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()] == ["original", "cutout"]
    bottom = np.asarray(fig.axes[6].images[0].get_array())
    assert np.abs(bottom.astype(int) - (255 - uint8_batch[0])).max() <= 1


def test_before_after_rejects_batches_that_do_not_pair_up(uint8_batch):
    with pytest.raises(ValueError, match="images has 6 entries but transformed has 5"):
        plots.before_after(uint8_batch, uint8_batch[:5])


# ---------------------------------------------------------------------------- training


def make_history(epochs=5):
    return [
        {
            "epoch": e,
            "train_loss": 2.0 / e,
            "train_acc": 0.5 + 0.08 * e,
            "test_loss": 2.2 / e,
            "test_acc": 0.45 + 0.09 * e - (0.10 if e == epochs else 0),
            "lr": 0.4 * min(e / 2, (epochs + 1 - e) / (epochs - 1)),
            "seconds": 10.0,
        }
        for e in range(1, epochs + 1)
    ]


def test_plot_history_has_loss_accuracy_and_lr_panels_with_target_line():
    fig = plots.plot_history(make_history(), title="run 1")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "learning rate"]
    acc_ax = fig.axes[1]
    lines = {line.get_label(): line for line in acc_ax.get_lines()}
    assert set(lines) >= {"train", "test", "target"}
    assert lines["target"].get_ydata()[0] == pytest.approx(85)
    assert lines["test"].get_ydata()[-1] == pytest.approx(80)
    assert fig.get_suptitle() == "run 1"


def test_plot_history_annotates_the_final_not_the_best_test_accuracy():
    history = make_history()  # best test acc 81% at epoch 4, final 80%
    final = 100 * history[-1]["test_acc"]
    best = 100 * max(h["test_acc"] for h in history)
    assert final != best
    texts = [t.get_text() for t in plots.plot_history(history).axes[1].texts]
    assert texts == [f"final test: {final:.2f}%"]


def test_plot_history_names_the_missing_keys():
    history = make_history()
    del history[2]["lr"]
    with pytest.raises(ValueError, match=r"history entry 2 is missing keys: \['lr'\]"):
        plots.plot_history(history)


def test_plot_history_rejects_an_empty_history():
    with pytest.raises(ValueError, match="history is empty"):
        plots.plot_history([])


# ---------------------------------------------------------------------------- evaluation


def test_confusion_matrix_annotates_percent_of_each_true_class():
    cm = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 5]])
    fig = plots.plot_confusion_matrix(cm, CLASSES[:3])
    ax = fig.axes[0]
    assert ax.get_ylabel() == "true" and ax.get_xlabel() == "predicted"
    assert [t.get_text() for t in ax.get_yticklabels()] == CLASSES[:3]
    assert [t.get_text() for t in ax.texts] == ["80", "20", "0", "25", "75", "0", "0", "0", "100"]


def test_confusion_matrix_shows_counts_when_not_normalized():
    cm = np.array([[8, 2], [1, 3]])
    fig = plots.plot_confusion_matrix(cm, CLASSES[:2], normalize=False)
    assert [t.get_text() for t in fig.axes[0].texts] == ["8", "2", "1", "3"]


def test_confusion_matrix_rejects_a_class_list_of_the_wrong_size():
    with pytest.raises(ValueError, match="cm is 3x3 but there are 5 classes"):
        plots.plot_confusion_matrix(np.eye(3, dtype=int), CLASSES)


def test_misclassified_titles_show_true_pred_and_confidence(uint8_batch):
    fig = plots.plot_misclassified(
        normalize(uint8_batch[:3]),
        [3, 0, 1],
        [4, 2, 3],
        [0.93, 0.5, 0.123],
        CLASSES,
        mean=MEAN,
        std=STD,
    )
    assert len(axes_with_images(fig)) == 3
    assert tile_titles(fig) == [
        "true: cat\npred: deer (0.93)",
        "true: airplane\npred: bird (0.50)",
        "true: automobile\npred: cat (0.12)",
    ]


def test_misclassified_says_so_when_there_are_no_mistakes():
    fig = plots.plot_misclassified(np.zeros((0, 8, 8, 3), np.uint8), [], [], [], CLASSES)
    assert [t.get_text() for t in fig.texts] == ["no misclassified examples"]


def test_misclassified_rejects_pred_out_of_range(uint8_batch):
    with pytest.raises(ValueError, match="pred contains class index 5, out of range for 5"):
        plots.plot_misclassified(uint8_batch[:2], [0, 1], [5, 1], [0.9, 0.8], CLASSES)


def test_per_class_accuracy_sorts_bars_with_the_best_class_on_top():
    fig = plots.plot_per_class_accuracy([0.9, 0.5, 0.75, 0.6, 0.95], CLASSES)
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names == ["automobile", "cat", "bird", "airplane", "deer"]  # bottom to top
    assert [t.get_text() for t in ax.texts] == ["50.0%", "60.0%", "75.0%", "90.0%", "95.0%"]


def test_per_class_accuracy_rejects_percentages():
    with pytest.raises(ValueError, match=r"fractions in \[0, 1\].*already in percent"):
        plots.plot_per_class_accuracy([90, 50, 75, 60, 95], CLASSES)


def test_saliency_overlays_a_per_map_normalized_heatmap_on_each_image(uint8_batch):
    h, w = uint8_batch.shape[1:3]
    maps = torch.rand(3, h, w) * 100 - 30  # pixel-level maps, arbitrary range
    fig = plots.plot_saliency(uint8_batch[:3], maps, labels=[2, 3, 4], classes=CLASSES)
    with_images = axes_with_images(fig)
    assert len(with_images) == 6
    overlays = [ax for ax in with_images if len(ax.images) == 2]
    assert len(overlays) == 3
    for ax in overlays:
        heat = np.asarray(ax.images[1].get_array())
        assert heat.min() == pytest.approx(0) and heat.max() == pytest.approx(1)
        assert ax.images[1].get_extent() == [-0.5, w - 0.5, h - 0.5, -0.5]
    assert [t for t in tile_titles(fig) if t] == ["bird", "cat", "deer"]


def test_saliency_draws_each_layer_on_its_units_and_names_true_and_predicted(uint8_batch):
    from course_lib.saliency import UnitGrid

    side = uint8_batch.shape[1]
    grids = {
        "coarse": UnitGrid("coarse", size=2, first=2.0, jump=2, rf=5, image=side),
        "fine": UnitGrid("fine", size=side, first=0.0, jump=1, rf=3, image=side),
    }
    maps = {"coarse": np.random.rand(2, 2, 2), "fine": np.random.rand(2, side, side)}
    fig = plots.plot_saliency(
        uint8_batch[:2], maps, grids, labels=[0, 1], preds=[3, 4], classes=CLASSES
    )
    overlays = [ax for ax in axes_with_images(fig) if len(ax.images) == 2]
    extents = {tuple(ax.images[1].get_extent()) for ax in overlays}
    assert extents == {(1.0, 5.0, 5.0, 1.0), (-0.5, side - 0.5, side - 0.5, -0.5)}
    for ax in overlays:  # a small map leaves the rest of the image in view, uncovered
        assert ax.get_xlim() == (-0.5, side - 0.5)
    assert [t for t in tile_titles(fig) if t] == [
        "true airplane\npred cat",
        "true automobile\npred deer",
    ]
    assert [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()] == ["image", "coarse", "fine"]


def test_saliency_refuses_to_stretch_a_small_map_over_the_image(uint8_batch):
    with pytest.raises(ValueError, match=r"a 4x4 map on a 8x8 image needs the grid of its units"):
        plots.plot_saliency(uint8_batch[:3], np.zeros((3, 4, 4)))


def test_saliency_rejects_a_map_count_that_differs_from_the_images(uint8_batch):
    with pytest.raises(ValueError, match="maps has 2 entries but there are 3 images"):
        plots.plot_saliency(uint8_batch[:3], np.zeros((2, 4, 4)))


@pytest.mark.parametrize("rf_size", [5, 45])
def test_rf_map_outlines_the_theoretical_rf_clipped_to_the_map(rf_size):
    fig = plots.plot_rf_map(np.random.default_rng(0).random((15, 15)), rf_size=rf_size)
    ax = fig.axes[0]
    assert len(ax.images) == 1
    (square,) = ax.patches
    x0, y0 = square.get_xy()
    side = min(rf_size, 15)
    assert (x0, y0) == (7 - side / 2, 7 - side / 2)
    assert square.get_width() == square.get_height() == side
    assert ax.get_xlim() == (-0.5, 14.5)
    assert ("clipped" in square.get_label()) == (rf_size > 15)


def test_rf_map_without_rf_size_shows_only_the_map():
    fig = plots.plot_rf_map(torch.rand(9, 9), title="ERF")
    assert len(fig.axes[0].images) == 1 and not fig.axes[0].patches
    assert fig.get_suptitle() == "ERF"


def test_rf_map_rejects_a_batch_of_maps():
    with pytest.raises(ValueError, match=r"erf must be a 2-D map \(H, W\); got shape \(2, 9, 9\)"):
        plots.plot_rf_map(np.zeros((2, 9, 9)))


# ---------------------------------------------------------------------------- notebooks


def test_figures_render_as_png_and_stay_out_of_pyplot_so_notebooks_show_them_once(uint8_batch):
    fig = plots.image_grid(uint8_batch)
    assert plt.get_fignums() == []  # the inline backend would show a pyplot figure again
    assert fig._repr_png_().startswith(b"\x89PNG")
