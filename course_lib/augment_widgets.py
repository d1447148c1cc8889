"""Lesson 03's augmentation tuner: sliders on ``AugmentConfig`` over a tested pure function."""

from __future__ import annotations

from dataclasses import asdict

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from course_lib.augment import AugmentConfig, train_transforms
from course_lib.plots import image_grid, to_display
from course_lib.widget_support import Interactive, show_figure

# label, min, max, step: wide enough to reach settings that erase the object (45°, a 32 px hole)
SLIDERS = {
    "flip_p": ("flip p", 0.0, 1.0, 0.05),
    "shift": ("shift ±", 0.0, 0.25, 0.0125),
    "scale": ("scale ±", 0.0, 0.5, 0.05),
    "rotate": ("rotate ±°", 0.0, 45.0, 1.0),
    "affine_p": ("affine p", 0.0, 1.0, 0.05),
    "hole": ("hole px", 1, 32, 1),
    "cutout_p": ("hole p", 0.0, 1.0, 0.05),
    "seed": ("seed", 0, 99, 1),
}


def augmented_samples(images, cfg: AugmentConfig, mean, std, n: int = 6, seed: int = 0):
    """``n`` draws of ``train_transforms(mean, std, cfg, seed)`` per uint8 HWC image, Normalize
    undone: uint8 (N, n, H, W, 3). Same arguments, same array."""
    x = np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or n < 1:
        raise ValueError(f"images must be uint8 (N, H, W, 3), n >= 1; got {x.dtype} {x.shape} {n=}")
    pipeline = train_transforms(mean, std, cfg, seed=seed)
    draws = [to_display(pipeline(image=image)["image"], mean, std) for image in x for _ in range(n)]
    return np.stack(draws).reshape(len(x), n, *x.shape[1:])


def config_title(cfg: AugmentConfig) -> str:
    """One line naming every setting of ``cfg``, for a figure title."""
    return ", ".join(f"{name}={value:g}" for name, value in asdict(cfg).items())


def samples_figure(images, samples: np.ndarray, title: str | None = None) -> Figure:
    """Each image, then its draws from ``augmented_samples``, one row per image."""
    rows = np.concatenate([np.asarray(images)[:, None], samples], axis=1)
    titles = ["original", *(f"draw {j}" for j in range(1, rows.shape[1]))]
    titles += [""] * (rows.shape[0] - 1) * rows.shape[1]
    grid = rows.reshape(-1, *rows.shape[2:])
    return image_grid(grid, ncols=rows.shape[1], titles=titles, title=title)


def make_augmentation_tuner(images, mean, std, n: int = 6, cfg=None, seed: int = 0) -> Interactive:
    """A slider per ``AugmentConfig`` field (starting at ``cfg``) and the seed; a release
    redraws ``n`` samples per image, which ``w.result`` holds."""
    cfg, x = cfg or AugmentConfig(), np.asarray(images)
    augmented_samples(x[:1], cfg, mean, std, n)  # bad arguments fail here, not in a callback
    start, sliders = asdict(cfg) | {"seed": seed}, {}
    for name, (label, lo, hi, step) in SLIDERS.items():
        int_slider = isinstance(step, int)
        kind, fmt = (widgets.IntSlider, "d") if int_slider else (widgets.FloatSlider, ".4g")
        sliders[name] = kind(
            value=start[name], min=lo, max=max(hi, start[name]), step=step, description=label,
            readout_format=fmt, continuous_update=False, style={"description_width": "70px"},
        )  # continuous_update=False: each redraw runs the pipeline, so draw on release only

    def draw(**values) -> np.ndarray:
        seed, chosen = values.pop("seed"), AugmentConfig(**values)
        samples = augmented_samples(x, chosen, mean, std, n, seed)
        show_figure(samples_figure(x, samples, config_title(chosen)))
        return samples

    def summary(w: Interactive) -> str:
        return (f"Augmentation tuner: {len(x)} images x {n} draws, seed {sliders['seed'].value}. "
                "Run the cell in Jupyter to use the sliders.")

    w = Interactive(draw, summary, **sliders)
    left = [sliders[k] for k in ("flip_p", "shift", "scale", "rotate", "affine_p")]
    right = [sliders[k] for k in ("hole", "cutout_p", "seed")]
    w.children = (widgets.HBox([widgets.VBox(left), widgets.VBox(right)]), w.out)
    return w
