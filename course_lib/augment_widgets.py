"""A widget to tune the training augmentation by eye, over a pure function that draws samples.

``augmented_samples`` runs the assignment's pipeline (``augment.train_transforms``) with any
``AugmentConfig`` and returns displayable uint8 images; ``make_augmentation_tuner`` puts
sliders on the config and redraws a grid of samples. Used in lesson 03.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure

from course_lib.augment import AugmentConfig, train_transforms
from course_lib.plots import new_figure, to_display
from course_lib.widget_support import Interactive, redraw_figure, show_figure

# Slider ranges: wide enough to reach clearly harmful settings, so the widget shows where
# "more augmentation" stops helping (a 45° rotation or a 32 px hole erases the object).
_SLIDERS = {
    "flip_p": ("flip p", 0.0, 1.0, 0.05),
    "shift": ("shift ±", 0.0, 0.25, 0.0125),  # fraction of the side; 0.0625 is 2 px of 32
    "scale": ("scale ±", 0.0, 0.5, 0.05),
    "rotate": ("rotate ±°", 0.0, 45.0, 1.0),
    "affine_p": ("affine p", 0.0, 1.0, 0.05),
    "hole": ("hole px", 1, 32, 1),
    "cutout_p": ("hole p", 0.0, 1.0, 0.05),
}


def _check_images(images) -> np.ndarray:
    x = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or len(x) == 0:
        raise ValueError(
            "images must be uint8 RGB in HWC layout, (N, H, W, 3) or (H, W, 3), as "
            f"albumentations takes them; got {x.dtype} of shape {tuple(x.shape)}."
        )
    return x


def _check_n(n: int) -> None:
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n is the number of draws per image, a positive int, got {n!r}.")


def augmented_samples(
    images,
    cfg: AugmentConfig,
    mean: Sequence[float],
    std: Sequence[float],
    n: int = 6,
    seed: int = 0,
) -> np.ndarray:
    """``n`` draws of the training pipeline for each image, as uint8 (N, n, H, W, 3).

    ``images`` are uint8 HWC, one or a batch. The pipeline is ``train_transforms(mean, std,
    cfg, seed)``: flip, shift-scale-rotate, one mean-filled hole, then Normalize, which is
    undone here so the result can be shown. Same arguments, same array. Used in lesson 03.
    """
    x = _check_images(images)
    _check_n(n)
    pipeline = train_transforms(mean, std, cfg, seed=seed)
    out = np.empty((len(x), n, *x.shape[1:]), dtype=np.uint8)
    for i, img in enumerate(x):
        for j in range(n):
            out[i, j] = to_display(pipeline(image=img)["image"], mean, std)
    return out


def config_title(cfg: AugmentConfig) -> str:
    """One line that names every setting of ``cfg``, for a figure title. Used in lesson 03."""
    return (
        f"flip p={cfg.flip_p:.2f} | shift ±{cfg.shift:.4g}, scale ±{cfg.scale:.2g}, "
        f"rotate ±{cfg.rotate:.0f}°, p={cfg.affine_p:.2f} | "
        f"hole {cfg.hole}x{cfg.hole} px, p={cfg.cutout_p:.2f}"
    )


def samples_figure(images, samples: np.ndarray, title: str | None = None) -> Figure:
    """A grid: each original image, then its draws from ``augmented_samples``, one row each.

    Like the figures of ``course_lib.plots`` it is not tracked by pyplot and shows itself when
    it is the last expression of a cell. Used in lesson 03.
    """
    x = _check_samples(images, samples)
    fig = new_figure(*_samples_size(samples))
    _draw_samples(fig, x, samples, title)
    return fig


def _check_samples(images, samples: np.ndarray) -> np.ndarray:
    x = _check_images(images)
    if samples.ndim != 5 or samples.shape[0] != len(x) or samples.shape[2:] != x.shape[1:]:
        raise ValueError(
            f"samples must be (N, n, H, W, 3) with N = {len(x)} images of shape "
            f"{x.shape[1:]}, as augmented_samples returns; got shape {samples.shape}."
        )
    return x


def _samples_size(samples: np.ndarray) -> tuple[float, float]:
    rows, cols = samples.shape[0], 1 + samples.shape[1]
    return 1.15 * cols, 1.15 * rows + 0.6


def _draw_samples(fig: Figure, x: np.ndarray, samples: np.ndarray, title: str | None) -> None:
    axes = fig.subplots(len(x), 1 + samples.shape[1], squeeze=False)
    for r in range(len(x)):
        for c, img in enumerate([x[r], *samples[r]]):
            axes[r, c].imshow(img, interpolation="nearest")
            axes[r, c].set_axis_off()
    axes[0, 0].set_title("original", fontsize=9)
    for c in range(1, axes.shape[1]):
        axes[0, c].set_title(f"draw {c}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)


def make_augmentation_tuner(
    images,
    mean: Sequence[float],
    std: Sequence[float],
    n: int = 6,
    cfg: AugmentConfig | None = None,
    seed: int = 0,
) -> Interactive:
    """Sliders for every ``AugmentConfig`` field and a seed; redraws ``n`` samples per image.

    Starts at ``cfg`` (default: the assignment's ``AugmentConfig()``) and ``seed``. The
    sliders, in ``w.kwargs_widgets`` order: flip_p, shift, scale, rotate, affine_p, hole,
    cutout_p, seed; ``w.result`` holds the last samples array. Used in lesson 03.
    """
    x = _check_images(images)
    cfg = cfg if cfg is not None else AugmentConfig()
    # bad arguments fail here with their message, not inside a widget callback
    _check_n(n)
    train_transforms(mean, std, cfg)

    def draw(flip_p, shift, scale, rotate, affine_p, hole, cutout_p, seed) -> np.ndarray:
        chosen = AugmentConfig(flip_p, shift, scale, rotate, affine_p, hole, cutout_p)
        samples = augmented_samples(x, chosen, mean, std, n, seed)
        # not a pyplot figure (see course_lib.widget_support), shown once in the widget's
        # Output, which clears itself first: the plot is replaced, not stacked, per redraw
        fig = redraw_figure(*_samples_size(samples))
        _draw_samples(fig, x, samples, config_title(chosen))
        show_figure(fig)
        return samples

    def summary(w: Interactive) -> str:
        return (
            f"Augmentation tuner: {len(x)} images x {n} draws, seed {w.kwargs_widgets[-1].value}. "
            "Run the cell in Jupyter to use the sliders."
        )

    start = asdict(cfg)
    style = {"description_width": "70px"}
    sliders = {}
    for name, (label, lo, hi, step) in _SLIDERS.items():
        kind = widgets.IntSlider if isinstance(step, int) else widgets.FloatSlider
        extra = {} if kind is widgets.IntSlider else {"readout_format": ".4g"}
        sliders[name] = kind(
            value=start[name],
            min=lo,
            max=max(hi, start[name]),  # a start beyond the usual range is kept, not clipped
            step=step,
            description=label,
            continuous_update=False,  # each redraw runs the pipeline: draw on release only
            style=style,
            **extra,
        )
    seed_slider = widgets.IntSlider(
        value=seed,
        min=0,
        max=max(99, seed),
        description="seed",
        continuous_update=False,
        style=style,
    )

    w = Interactive(draw, summary, **sliders, seed=seed_slider)
    # two columns of sliders above the figure: geometry on the left, the hole on the right
    left = [sliders[k] for k in ("flip_p", "shift", "scale", "rotate", "affine_p")]
    right = [sliders["hole"], sliders["cutout_p"], seed_slider]
    w.children = (widgets.HBox([widgets.VBox(left), widgets.VBox(right)]), w.out)
    return w
