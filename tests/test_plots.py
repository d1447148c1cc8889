"""Tests for course_lib.plots on small synthetic images (no dataset needed)."""

from types import SimpleNamespace

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
    with pytest.raises(ValueError, match=r"\(N, \)C, H, W; got \(2, 5, 7, 7\)"):
        plots.to_display(np.zeros((2, 5, 7, 7), np.float32))
    with pytest.raises(ValueError, match=r"must be .*got \(8, 8\)"):
        plots.to_display(np.zeros((8, 8), np.uint8))


def test_to_display_rejects_mean_and_std_given_in_0_255(uint8_batch):
    with pytest.raises(ValueError, match="must be 0-1 floats, as in A.Normalize"):
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
    with pytest.raises(ValueError, match="6 images but 5 transformed: they must pair up"):
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


def test_plot_history_marks_the_final_not_the_best_test_accuracy():
    history = make_history()  # best test acc 81% at epoch 4, final 80%
    final = 100 * history[-1]["test_acc"]
    assert final != 100 * max(h["test_acc"] for h in history)
    ax = plots.plot_history(history).axes[1]
    (marker,) = [line for line in ax.get_lines() if line.get_label().startswith("final")]
    assert marker.get_label() == f"final test: {final:.2f}%"
    assert (marker.get_xdata()[0], marker.get_ydata()[0]) == (5, pytest.approx(final))


# ---------------------------------------------------------------------------- evaluation


def test_confusion_matrix_annotates_percent_of_each_true_class():
    cm = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 5]])
    fig = plots.plot_confusion_matrix(cm, CLASSES[:3])
    ax = fig.axes[0]
    assert ax.get_ylabel() == "true" and ax.get_xlabel() == "predicted"
    assert [t.get_text() for t in ax.get_yticklabels()] == CLASSES[:3]
    assert [t.get_text() for t in ax.texts] == ["80", "20", "0", "25", "75", "0", "0", "0", "100"]


def test_image_grid_widens_tiles_for_long_two_line_titles(uint8_batch):
    titles = ["true: cat\npred: automobile (0.93)", "true: deer\npred: bird (0.50)"]
    fig = plots.image_grid(uint8_batch[:2], titles=titles)
    assert tile_titles(fig) == titles
    assert fig.get_size_inches()[0] > 2 * 1.2  # wider than two default tiles


def test_per_class_accuracy_sorts_bars_with_the_best_class_on_top():
    fig = plots.plot_per_class_accuracy([0.9, 0.5, 0.75, 0.6, 0.95], CLASSES)
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names == ["automobile", "cat", "bird", "airplane", "deer"]  # bottom to top
    assert [t.get_text() for t in ax.texts] == ["50.0%", "60.0%", "75.0%", "90.0%", "95.0%"]


def test_saliency_overlays_a_per_map_normalized_heatmap_on_each_image(uint8_batch):
    h, w = uint8_batch.shape[1:3]
    maps = torch.rand(3, h, w) * 100 - 30  # pixel-level maps, arbitrary range
    fig = plots.plot_saliency(uint8_batch[:3], {"pixels": maps})
    with_images = axes_with_images(fig)
    assert len(with_images) == 6
    overlays = [ax for ax in with_images if len(ax.images) == 2]
    assert len(overlays) == 3
    for ax in overlays:
        heat = np.asarray(ax.images[1].get_array())
        assert heat.min() == pytest.approx(0) and heat.max() == pytest.approx(1)
        assert ax.images[1].get_extent() == [-0.5, w - 0.5, h - 0.5, -0.5]
    assert not any(tile_titles(fig))


def test_saliency_draws_each_layer_on_its_units_and_names_true_and_predicted(uint8_batch):
    side = uint8_batch.shape[1]
    # the RF-table fields plot_saliency reads; coarse: 2 units 2 pixels apart, the first
    # centred at start 2.5 in the table's pixel intervals, 2.0 in imshow's pixel centres
    grids = {
        "coarse": SimpleNamespace(n_out=2, j_out=2, start=2.5),
        "fine": SimpleNamespace(n_out=side, j_out=1, start=0.5),
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
    with pytest.raises(ValueError, match=r"need 8x8 units; a map smaller .* needs its saliency"):
        plots.plot_saliency(uint8_batch[:3], {"C4": np.zeros((3, 4, 4))})


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


def test_rf_map_takes_a_tensor_and_a_title():
    fig = plots.plot_rf_map(torch.rand(9, 9), 3, title="ERF")
    assert len(fig.axes[0].images) == 1 and len(fig.axes[0].patches) == 1
    assert fig.get_suptitle() == "ERF"


# ---------------------------------------------------------------------------- notebooks


def test_figures_render_as_png_and_stay_out_of_pyplot_so_notebooks_show_them_once(uint8_batch):
    fig = plots.image_grid(uint8_batch)
    assert plt.get_fignums() == []  # the inline backend would show a pyplot figure again
    assert fig._repr_png_().startswith(b"\x89PNG")
