"""Tests for course_lib.augment_widgets: the pure sampler and the tuning widget, headless."""

import course_lib  # noqa: F401  (sets NO_ALBUMENTATIONS_UPDATE before albumentations loads)

# isort: split
import matplotlib.pyplot as plt
import numpy as np
import pytest

from course_lib.augment import AugmentConfig, hole_fill
from course_lib.augment_widgets import (
    augmented_samples,
    config_title,
    make_augmentation_tuner,
    samples_figure,
)

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
OFF = AugmentConfig(flip_p=0.0, affine_p=0.0, cutout_p=0.0)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def images():
    """Random images with no channel value near the hole colour, so every hole pixel shows."""
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    fill = np.array(hole_fill(MEAN))
    return np.where(np.abs(x.astype(int) - fill) <= 2, (fill + 64) % 256, x).astype(np.uint8)


# --- augmented_samples --------------------------------------------------------------------


def test_samples_are_the_images_exactly_when_every_probability_is_zero(images):
    out = augmented_samples(images, OFF, MEAN, STD, n=4)
    assert out.shape == (3, 4, 32, 32, 3) and out.dtype == np.uint8
    # Normalize is undone without a rounding error: what you see is what the model gets
    assert np.array_equal(out, np.repeat(images[:, None], 4, axis=1))


def test_flip_with_probability_one_mirrors_every_draw(images):
    cfg = AugmentConfig(flip_p=1.0, affine_p=0.0, cutout_p=0.0)
    out = augmented_samples(images, cfg, MEAN, STD, n=2)
    assert np.array_equal(out, np.repeat(images[:, None, :, ::-1], 2, axis=1))


def test_hole_only_draws_have_one_square_of_the_mean_of_the_chosen_size(images):
    cfg = AugmentConfig(flip_p=0.0, affine_p=0.0, hole=8, cutout_p=1.0)
    out = augmented_samples(images, cfg, MEAN, STD, n=5)
    for img, draws in zip(images, out, strict=True):
        for draw in draws:
            changed = (draw != img).any(axis=2)
            assert changed.sum() == 8 * 8
            assert (draw[changed] == hole_fill(MEAN)).all()


def test_same_seed_gives_the_same_samples_and_another_seed_other_ones(images):
    a = augmented_samples(images, AugmentConfig(), MEAN, STD, n=6, seed=3)
    b = augmented_samples(images, AugmentConfig(), MEAN, STD, n=6, seed=3)
    c = augmented_samples(images, AugmentConfig(), MEAN, STD, n=6, seed=4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len({d.tobytes() for d in a[0]}) > 1  # the draws of one image differ


def test_float_images_are_refused_with_a_message(images):
    with pytest.raises(ValueError, match=r"images must be uint8 \(N, H, W, 3\).*got float64"):
        augmented_samples(images / 255.0, OFF, MEAN, STD)
    with pytest.raises(ValueError, match=r"got uint8 \(3, 3, 32, 32\)"):
        augmented_samples(images.transpose(0, 3, 1, 2), OFF, MEAN, STD)
    with pytest.raises(ValueError, match=r"got uint8 \(32, 32, 3\)"):  # one image, not a batch
        augmented_samples(images[0], OFF, MEAN, STD)


def test_zero_draws_are_refused_with_a_message(images):
    with pytest.raises(ValueError, match=r"n >= 1; got .* n=0"):
        augmented_samples(images, OFF, MEAN, STD, n=0)


# --- figure and title ---------------------------------------------------------------------


def test_config_title_names_every_setting():
    title = config_title(AugmentConfig(rotate=12.5))
    assert title == (
        "flip_p=0.5, shift=0.0625, scale=0.1, rotate=12.5, affine_p=0.5, hole=16, cutout_p=0.25"
    )


def test_samples_figure_has_the_original_then_each_draw_in_a_row(images):
    out = augmented_samples(images, OFF, MEAN, STD, n=2)
    fig = samples_figure(images, out, title="t")
    assert len(fig.axes) == 3 * 3
    assert [ax.get_title() for ax in fig.axes[:4]] == ["original", "draw 1", "draw 2", ""]
    shown = [ax.get_images()[0].get_array() for ax in fig.axes]
    assert np.array_equal(shown[3], images[1]) and np.array_equal(shown[5], out[1, 1])
    assert fig._suptitle.get_text() == "t"
    # like course_lib.plots: untracked by pyplot, and a notebook shows it as a PNG
    assert plt.get_fignums() == []
    assert fig._repr_png_().startswith(b"\x89PNG")


# --- the widget, headless -----------------------------------------------------------------


def test_tuner_sliders_start_at_the_assignment_config_and_draw_at_once(images):
    w = make_augmentation_tuner(images, MEAN, STD, n=2)
    names = [s.description for s in w.kwargs_widgets]
    assert names == ["flip p", "shift ±", "scale ±", "rotate ±°", "affine p", "hole px"] + [
        "hole p",
        "seed",
    ]
    values = [s.value for s in w.kwargs_widgets]
    assert values == [0.5, 0.0625, 0.1, 15.0, 0.5, 16, 0.25, 0]
    assert all(not s.continuous_update for s in w.kwargs_widgets)
    assert np.array_equal(w.result, augmented_samples(images, AugmentConfig(), MEAN, STD, n=2))
    assert w.children[-1] is w.out  # the figure sits below the sliders
    # the redraw is shown once in the widget and is not pyplot's (see test_widget_support)
    assert plt.get_fignums() == []


def test_tuner_redraws_with_the_slider_values(images):
    w = make_augmentation_tuner(images, MEAN, STD, n=2)
    sliders = {s.description: s for s in w.kwargs_widgets}
    for name, value in (("flip p", 1.0), ("affine p", 0.0), ("hole p", 0.0)):
        sliders[name].value = value
    w.update()
    assert np.array_equal(w.result, np.repeat(images[:, None, :, ::-1], 2, axis=1))

    sliders["hole p"].value = 1.0
    sliders["hole px"].value = 4
    w.update()
    changed = (w.result != images[:, None, :, ::-1]).any(axis=-1)
    assert (changed.sum(axis=(2, 3)) == 16).all()  # a 4x4 hole in every draw


def test_tuner_seed_slider_changes_the_draws(images):
    w = make_augmentation_tuner(images, MEAN, STD, n=3)
    first = w.result
    w.kwargs_widgets[-1].value = 1
    w.update()
    assert not np.array_equal(first, w.result)


def test_tuner_keeps_a_start_value_beyond_the_usual_range(images):
    w = make_augmentation_tuner(images, MEAN, STD, n=1, cfg=AugmentConfig(rotate=60.0), seed=120)
    sliders = {s.description: s for s in w.kwargs_widgets}
    assert sliders["rotate ±°"].value == 60.0 and sliders["seed"].value == 120


def test_tuner_refuses_bad_arguments_before_building_sliders(images):
    with pytest.raises(ValueError, match="mean is in 0-1 units"):
        make_augmentation_tuner(images, (125.3, 123.0, 113.9), STD)
    with pytest.raises(ValueError, match="n >= 1"):
        make_augmentation_tuner(images, MEAN, STD, n=0)
    with pytest.raises(ValueError, match="images must be uint8"):
        make_augmentation_tuner(images.astype(np.float32), MEAN, STD)
