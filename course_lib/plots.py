"""Figure helpers for lessons 02 to 05 and the widgets. Each returns a ``Figure`` that pyplot
does not track and never calls ``plt.show()``: a notebook shows the figure a cell returns, once."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import seaborn as sns
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from .grader import MIN_ACCURACY

_TILE = 1.2  # inches per image tile: 8 tiles fill a ~10 inch notebook column
_TITLE_LINE = 0.22  # inches per line of tile title


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()  # numpy has no bfloat16
    return np.asarray(x)


def to_display(images, mean=None, std=None) -> np.ndarray:
    """uint8 channels-last images for ``imshow`` from uint8, [0, 1] floats, or floats normalized
    with ``mean`` and ``std`` as in ``A.Normalize``; tensors are read channels-first."""
    x = _to_numpy(images)
    last = x.ndim in (3, 4) and x.shape[-1] in (1, 3)
    first = x.ndim in (3, 4) and x.shape[-3] in (1, 3)
    if not (last or first):
        raise ValueError(f"images must be (N, )H, W, C or (N, )C, H, W; got {tuple(x.shape)}")
    if first and (isinstance(images, torch.Tensor) or not last):
        x = np.moveaxis(x, -3, -1)
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if mean is not None:
        if np.max(mean) > 1 or np.max(std) > 1:
            raise ValueError(f"mean and std must be 0-1 floats, as in A.Normalize; got {mean}")
        x = x * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
    return np.rint(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


class _NotebookFigure(Figure):
    """A Figure that renders itself in a notebook, also where pyplot never set up a backend."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def new_figure(width: float, height: float) -> Figure:
    """A figure pyplot does not track, so that a notebook shows it once. Used by every figure."""
    return _NotebookFigure(figsize=(width, height), layout="constrained")


def _show(ax: Axes, img: np.ndarray | None = None) -> None:
    if img is not None:
        gray = img.shape[-1] == 1  # cmap, vmin and vmax apply to gray images only
        ax.imshow(img[..., 0] if gray else img, "gray", vmin=0, vmax=255, interpolation="nearest")
    # Not ax.axis("off"): that would also hide the row labels set with set_ylabel.
    ax.set(xticks=[], yticks=[])
    ax.spines[:].set_visible(False)


def _batch(images, mean=None, std=None) -> np.ndarray:
    x = to_display(images, mean, std)
    return x if x.ndim == 4 else x[None]


def _titles(labels, classes: Sequence[str]) -> list[str] | None:
    return None if labels is None else [classes[i] for i in _to_numpy(labels)]


def _suptitle(fig: Figure, title: str | None) -> None:
    if title:
        fig.suptitle(title)


def image_grid(images, labels=None, classes=None, ncols=8, titles=None, mean=None, std=None,
               title=None) -> Figure:
    """Images in rows of ``ncols``, each titled with ``titles`` or its class name."""
    imgs = _batch(images, mean, std)
    titles = list(titles) if titles is not None else _titles(labels, classes) or []
    n = len(imgs)
    ncols, lines = min(ncols, n), max((t.count("\n") + 1 for t in titles), default=0)
    nrows = math.ceil(n / ncols)
    # Long titles ("pred: automobile (0.93)") widen the tiles so that neighbours do not overlap.
    longest = max((len(s) for t in titles for s in t.split("\n")), default=0)
    width = max(_TILE, 0.075 * longest + 0.15)
    fig = new_figure(ncols * width, nrows * (_TILE + lines * _TITLE_LINE) + 0.4 * bool(title))
    for i, ax in enumerate(fig.subplots(nrows, ncols, squeeze=False).ravel()):
        if i >= n:
            ax.remove()
            continue
        _show(ax, imgs[i])
        if titles:
            ax.set_title(titles[i], fontsize=9)
    _suptitle(fig, title)
    return fig


def class_grid(x, y, classes: Sequence[str], per_class=8, seed=0, title=None) -> Figure:
    """``per_class`` examples of every class drawn with ``seed``, one row per class."""
    y, rng = _to_numpy(y), np.random.default_rng(seed)
    tile = 1.05  # a little smaller than _TILE so that 10 rows stay on one screen
    fig = new_figure(per_class * tile + 1.2, len(classes) * tile + 0.4 * bool(title))
    axes = fig.subplots(len(classes), per_class, squeeze=False)
    for c, name in enumerate(classes):
        idx = np.flatnonzero(y == c)
        pick = np.sort(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
        imgs = _batch(x[pick])  # index before converting: x may be the whole training set
        for j, ax in enumerate(axes[c]):
            _show(ax, imgs[j] if j < len(pick) else None)
        axes[c, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=10)
    _suptitle(fig, title)
    return fig


def before_after(images, transformed, labels=None, classes=None, names=("before", "after"),
                 title=None, mean=None, std=None) -> Figure:
    """Images (top row) above their transformed versions (bottom row)."""
    top, bottom = _batch(images, mean, std), _batch(transformed, mean, std)
    if len(top) != len(bottom):
        raise ValueError(f"{len(top)} images but {len(bottom)} transformed: they must pair up")
    n, titles = len(top), _titles(labels, classes)
    fig = new_figure(n * _TILE + 0.8, 2 * _TILE + _TITLE_LINE + 0.4 * bool(title))
    axes = fig.subplots(2, n, squeeze=False)
    for j in range(n):
        _show(axes[0, j], top[j])
        _show(axes[1, j], bottom[j])
        if titles:
            axes[0, j].set_title(titles[j], fontsize=9)
    for row, name in enumerate(names):
        axes[row, 0].set_ylabel(name, fontsize=10)
    _suptitle(fig, title)
    return fig


def plot_history(history: Sequence[dict], title: str | None = None) -> Figure:
    """Loss, accuracy (%, with the assignment's target and the final epoch's test accuracy
    marked) and learning rate per epoch of the trainer's history."""
    keys = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr")
    col = {k: np.array([row[k] for row in history], dtype=float) for k in keys}
    ep, style = col["epoch"], {"marker": "o", "markersize": 3}
    fig = new_figure(10, 3.4 + 0.3 * bool(title))
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    for ax, key, scale in ((ax_loss, "loss", 1), (ax_acc, "acc", 100)):
        ax.plot(ep, scale * col[f"train_{key}"], label="train", **style)
        ax.plot(ep, scale * col[f"test_{key}"], label="test", **style)
    ax_loss.set(title="loss", xlabel="epoch", ylabel="cross-entropy")
    ax_loss.legend(loc="upper right")
    ax_acc.axhline(100 * MIN_ACCURACY, color="gray", linestyle="--", linewidth=1, label="target")
    final = 100 * col["test_acc"][-1]  # the final epoch's, not the best: no peeking at test
    ax_acc.plot(ep[-1], final, "o", color="C1", markersize=7, markerfacecolor="none",
                label=f"final test: {final:.2f}%")
    ax_acc.set(title="accuracy", xlabel="epoch", ylabel="accuracy (%)")
    ax_acc.legend(loc="lower right")
    ax_lr.plot(ep, col["lr"], color="C2", **style)
    ax_lr.set(title="learning rate", xlabel="epoch", ylabel="lr")
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    _suptitle(fig, title)
    return fig


def plot_confusion_matrix(cm, classes: Sequence[str], title: str | None = None) -> Figure:
    """A confusion matrix (rows true, columns predicted) as % of each true class."""
    cm = _to_numpy(cm)
    values = 100 * cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = 2.5 + 0.55 * len(classes)
    fig = new_figure(size + 1.2, size + 0.3 * bool(title))
    ax = fig.subplots()
    sns.heatmap(
        values, annot=True, fmt=".0f", cmap="Blues", vmin=0, vmax=100, square=True,
        linewidths=0.5, xticklabels=classes, yticklabels=classes, ax=ax,
        cbar_kws={"label": "% of true class", "shrink": 0.8}, annot_kws={"fontsize": 9},
    )
    ax.set(xlabel="predicted", ylabel="true")
    ax.tick_params(axis="y", labelrotation=0)
    ax.set_xticklabels(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor")
    _suptitle(fig, title)
    return fig


def plot_per_class_accuracy(acc_per_class, classes: Sequence[str], title=None) -> Figure:
    """Per-class accuracy (fractions, shown as %) as bars, best at the top; dashed: the mean."""
    order = np.argsort(acc_per_class, kind="stable")
    pct = 100 * _to_numpy(acc_per_class)[order]
    fig = new_figure(7, 1.2 + 0.35 * len(pct) + 0.3 * bool(title))
    ax = fig.subplots()
    bars = ax.barh([classes[i] for i in order], pct, color="C0")
    for text in ax.bar_label(bars, labels=[f"{v:.1f}%" for v in pct], padding=3, fontsize=9):
        # A white box keeps the value readable where the mean line passes behind it.
        text.set_bbox({"facecolor": "white", "edgecolor": "none", "pad": 0.5})
    ax.axvline(pct.mean(), color="gray", linestyle="--", linewidth=1, zorder=0.5,
               label=f"mean {pct.mean():.1f}%")
    ax.set(xlim=(0, 112), xlabel="accuracy (%)")
    ax.legend(loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    _suptitle(fig, title)
    return fig


def plot_saliency(images, maps, grids=None, labels=None, preds=None, classes=(), title=None):
    """Images (top row) above a row per named (N, h, w) map, each scaled to [0, 1]; a map with
    a ``grids`` entry (``saliency.unit_grid``) draws each unit on its field centre."""
    imgs, grids = _batch(images), grids or {}
    n, side = len(imgs), imgs.shape[1]
    titled = 2 * _TITLE_LINE * (labels is not None) + 0.4 * bool(title)
    fig = new_figure(n * _TILE + 0.8, (1 + len(maps)) * _TILE + titled)
    axes = fig.subplots(1 + len(maps), n, squeeze=False)
    for i, ax in enumerate(axes[0]):
        _show(ax, imgs[i])
        if labels is not None:
            ax.set_title(f"true {classes[labels[i]]}\npred {classes[preds[i]]}", fontsize=9)
    axes[0, 0].set_ylabel("image", fontsize=9)
    for row, (name, m) in zip(axes[1:], maps.items(), strict=True):
        m, grid = _to_numpy(m).astype(float), grids.get(name)
        units = side if grid is None else grid.n_out
        if m.shape != (n, units, units):
            raise ValueError(f"{name}: maps of shape {m.shape} on {n} images need {units}x{units}"
                             " units; a map smaller than the image needs its saliency.unit_grid")
        low, span = m.min((1, 2), keepdims=True), np.ptp(m, (1, 2), keepdims=True)
        m = (m - low) / np.maximum(span, 1e-12)
        # each unit fills a jump x jump cell around its centre; no unit, no colour
        lo = -0.5 if grid is None else grid.start - 0.5 - grid.j_out / 2
        hi = side - 0.5 if grid is None else lo + grid.n_out * grid.j_out
        row[0].set_ylabel(name, fontsize=9)
        for i, ax in enumerate(row):
            _show(ax, imgs[i])
            ax.imshow(m[i], cmap="jet", alpha=0.5, vmin=0, vmax=1, extent=(lo, hi, hi, lo),
                      interpolation="bilinear")
            ax.set(xlim=(-0.5, side - 0.5), ylim=(side - 0.5, -0.5))
    _suptitle(fig, title)
    return fig


def plot_rf_map(erf, rf_size: int, title: str | None = None) -> Figure:
    """An effective-RF map (0-1) with the theoretical RF square of side ``rf_size`` centred on
    it, clipped to the map."""
    h, w = erf.shape
    fig = new_figure(5.5, 5.2 + 0.3 * bool(title))
    ax = fig.subplots()
    im = ax.imshow(_to_numpy(erf), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label="effective RF (normalized |gradient|)")
    ax.set(xlabel="x (pixels)", ylabel="y (pixels)")
    cx, cy = (w - 1) / 2, (h - 1) / 2
    x0, x1 = max(cx - rf_size / 2, -0.5), min(cx + rf_size / 2, w - 0.5)
    y0, y1 = max(cy - rf_size / 2, -0.5), min(cy + rf_size / 2, h - 0.5)
    label = f"theoretical RF {rf_size}x{rf_size}"
    if rf_size > min(h, w):
        label += f" (larger than the {h}x{w} map: clipped to it)"
    # Unclipped so that an outline lying on the map's border stays fully visible.
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="red",
                           linestyle="--", linewidth=1.5, label=label, zorder=3, clip_on=False))
    # add_patch widens the data limits; keep the view on the map.
    ax.set(xlim=(-0.5, w - 0.5), ylim=(h - 0.5, -0.5))
    fig.legend(loc="outside lower center", fontsize=9, frameon=False)
    _suptitle(fig, title)
    return fig
