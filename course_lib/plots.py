"""Figures for the lessons: image grids, augmentation previews, training curves and diagnostics.

Every function returns a matplotlib ``Figure`` and never calls ``plt.show()``; a notebook
displays the figure a cell returns. Used in lessons 02 (receptive-field maps), 03 (data and
augmentation), 04 (training curves, confusion matrix, mistakes) and 05 (Grad-CAM).
"""

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

Stats = float | Sequence[float] | None

_TILE = 1.2  # inches per image tile: 8 tiles fill a ~10 inch notebook column
_TITLE_LINE = 0.22  # inches per line of tile title
_HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr")
TARGET_ACC = 0.85  # the assignment's test-accuracy target


# ---------------------------------------------------------------------------- conversion


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        # numpy has no bfloat16, which autocast gives to model outputs.
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    return np.asarray(x)


def to_display(images, mean: Stats = None, std: Stats = None) -> np.ndarray:
    """Turn images into uint8 channels-last arrays that ``imshow`` takes.

    Accepts a batch (N, H, W, C) / (N, C, H, W) or a single image (H, W, C) / (C, H, W),
    as uint8 (returned unchanged apart from the layout), floats in [0, 1], or floats
    normalized with ``mean`` and ``std`` (per-channel 0-1 floats, as given to
    ``A.Normalize``), which are undone. Torch tensors are read channels-first and numpy
    arrays channels-last when the shape allows both. Returns NHWC for a batch, HWC for one
    image.

    Used in lessons 03, 04 and 05.
    """
    is_torch = isinstance(images, torch.Tensor)
    x = _to_numpy(images)
    if x.ndim not in (3, 4):
        raise ValueError(
            "images must have shape (N, H, W, C), (N, C, H, W), (H, W, C) or (C, H, W); "
            f"got shape {tuple(x.shape)}"
        )
    last, first = x.shape[-1] in (1, 3), x.shape[-3] in (1, 3)
    if not (last or first):
        raise ValueError(
            f"images must have 1 or 3 channels, first or last; got shape {tuple(x.shape)}"
        )
    channels_first = first and (is_torch or not last)
    if channels_first:
        x = np.moveaxis(x, -3, -1)

    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype.kind in "iu":
        return np.clip(x, 0, 255).astype(np.uint8)

    x = x.astype(np.float32)
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std to undo Normalize, or neither")
    if mean is not None:
        n_ch = x.shape[-1]
        m, s = np.asarray(mean, np.float32).ravel(), np.asarray(std, np.float32).ravel()
        for name, v in (("mean", m), ("std", s)):
            if v.size not in (1, n_ch):
                raise ValueError(f"{name} has {v.size} values but the images have {n_ch} channels")
        if m.max() > 1 or s.max() > 1:
            raise ValueError(
                "mean and std must be per-channel 0-1 floats (as in A.Normalize); "
                f"got mean={m.tolist()}, std={s.tolist()}"
            )
        x = x * s + m
    return np.rint(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


# ---------------------------------------------------------------------------- helpers


class _NotebookFigure(Figure):
    """A Figure that pyplot does not track, and that renders itself in a notebook.

    Not tracked: the notebook shows a returned figure once, instead of once as the cell
    result and again when the inline backend flushes pyplot's figures. ``_repr_png_``:
    IPython only knows how to draw a plain Figure after pyplot has set up its backend,
    which a lesson that never touches pyplot does not do.
    """

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def new_figure(width: float, height: float) -> Figure:
    return _NotebookFigure(figsize=(width, height), layout="constrained")


def _hide_ticks(ax: Axes) -> None:
    # Not ax.axis("off"): that would also hide the row labels set with set_ylabel.
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _show(ax: Axes, img: np.ndarray) -> None:
    if img.shape[-1] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(img, interpolation="nearest")
    _hide_ticks(ax)


def _check_batch(images: np.ndarray, name: str = "images") -> np.ndarray:
    if images.ndim == 3:
        images = images[None]
    if len(images) == 0:
        raise ValueError(f"{name} is empty")
    return images


def _check_labels(labels, n: int, n_classes: int | None, name: str = "labels") -> np.ndarray:
    arr = _to_numpy(labels).ravel()
    if len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} entries but there are {n} images")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integer class indices; got dtype {arr.dtype}")
    if n_classes is not None:
        bad = arr[(arr < 0) | (arr >= n_classes)]
        if bad.size:
            raise ValueError(
                f"{name} contains class index {int(bad[0])}, out of range for "
                f"{n_classes} classes (0..{n_classes - 1})"
            )
    return arr.astype(np.int64)


def _label_titles(labels, classes: Sequence[str] | None, n: int) -> list[str] | None:
    if labels is None:
        return None
    arr = _check_labels(labels, n, None if classes is None else len(classes))
    return [classes[i] if classes is not None else str(i) for i in arr]


def _suptitle(fig: Figure, title: str | None) -> None:
    if title:
        fig.suptitle(title)


# ---------------------------------------------------------------------------- image grids


def image_grid(
    images,
    labels=None,
    classes: Sequence[str] | None = None,
    ncols: int = 8,
    titles: Sequence[str] | None = None,
    mean: Stats = None,
    std: Stats = None,
    title: str | None = None,
) -> Figure:
    """Show images in a grid, each titled with its class name (or with ``titles``).

    ``images`` is anything ``to_display`` takes; ``labels`` are class indices into
    ``classes``. ``titles``, when given, replace the label titles.

    Used in lessons 03 and 04.
    """
    imgs = _check_batch(to_display(images, mean, std))
    n = len(imgs)
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1; got {ncols}")
    if titles is not None:
        titles = list(titles)
        if len(titles) != n:
            raise ValueError(f"titles has {len(titles)} entries but there are {n} images")
    else:
        titles = _label_titles(labels, classes, n)

    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    lines = max((t.count("\n") + 1 for t in titles), default=0) if titles else 0
    longest = max((len(s) for t in titles for s in t.split("\n")), default=0) if titles else 0
    # Widen the tiles for long titles ("pred: automobile (0.93)") so neighbours don't overlap.
    tile_w = max(_TILE, 0.075 * longest + 0.15)
    fig = new_figure(ncols * tile_w, nrows * (_TILE + lines * _TITLE_LINE) + (0.4 if title else 0))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        if i >= n:
            ax.remove()
            continue
        _show(ax, imgs[i])
        if titles:
            ax.set_title(titles[i], fontsize=9)
    _suptitle(fig, title)
    return fig


def class_grid(
    x,
    y,
    classes: Sequence[str],
    per_class: int = 8,
    seed: int = 0,
    title: str | None = None,
) -> Figure:
    """Show ``per_class`` random examples of every class, one row per class.

    The examples are drawn with ``np.random.default_rng(seed)``, so the same seed gives
    the same figure. A class with fewer examples leaves the rest of its row blank.

    Used in lesson 03.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} images but y has {len(y)} labels")
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1; got {per_class}")
    y = _check_labels(y, len(x), len(classes), name="y")
    rng = np.random.default_rng(seed)

    tile = 1.05  # a little smaller than _TILE so that 10 rows stay on one screen
    fig = new_figure(per_class * tile + 1.2, len(classes) * tile + (0.4 if title else 0))
    axes = fig.subplots(len(classes), per_class, squeeze=False)
    for c, name in enumerate(classes):
        idx = np.flatnonzero(y == c)
        pick = np.sort(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
        # Index before converting: x may be the whole 50k training set.
        chosen = x[torch.as_tensor(pick)] if isinstance(x, torch.Tensor) else x[pick]
        imgs = to_display(chosen) if len(pick) else []
        for j, ax in enumerate(axes[c]):
            if j < len(imgs):
                _show(ax, imgs[j])
            else:
                _hide_ticks(ax)
        axes[c, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=10)
    _suptitle(fig, title)
    return fig


def before_after(
    images,
    transformed,
    labels=None,
    classes: Sequence[str] | None = None,
    names: tuple[str, str] = ("before", "after"),
    title: str | None = None,
    mean: Stats = None,
    std: Stats = None,
) -> Figure:
    """Show images (top row) above their transformed versions (bottom row).

    Useful for batch augmentations such as CutOut and RICAP. ``mean`` and ``std`` undo
    Normalize on float inputs; uint8 inputs are shown as they are.

    Used in lesson 03.
    """
    top = _check_batch(to_display(images, mean, std))
    bottom = _check_batch(to_display(transformed, mean, std), name="transformed")
    if len(top) != len(bottom):
        raise ValueError(
            f"images has {len(top)} entries but transformed has {len(bottom)}; "
            "they must pair up one to one"
        )
    titles = _label_titles(labels, classes, len(top))
    n = len(top)
    fig = new_figure(n * _TILE + 0.8, 2 * _TILE + _TITLE_LINE + (0.4 if title else 0))
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


# ---------------------------------------------------------------------------- training


def plot_history(history: Sequence[dict], title: str | None = None) -> Figure:
    """Plot loss, accuracy (%) and learning rate per epoch from the trainer's history.

    ``history`` is a list of per-epoch dicts with ``epoch, train_loss, train_acc,
    test_loss, test_acc, lr`` (accuracies as fractions). The accuracy panel has a dashed
    line at the 85% target and marks the final epoch's test accuracy (final, not best).

    Used in lesson 04.
    """
    if len(history) == 0:
        raise ValueError("history is empty: train for at least one epoch first")
    for i, row in enumerate(history):
        missing = [k for k in _HISTORY_KEYS if k not in row]
        if missing:
            raise ValueError(f"history entry {i} is missing keys: {missing}")
    col = {k: np.array([row[k] for row in history], dtype=float) for k in _HISTORY_KEYS}
    ep = col["epoch"]
    style = {"marker": "o", "markersize": 3}

    fig = new_figure(10, 3.4 + (0.3 if title else 0))
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)

    ax_loss.plot(ep, col["train_loss"], label="train", **style)
    ax_loss.plot(ep, col["test_loss"], label="test", **style)
    ax_loss.set(title="loss", xlabel="epoch", ylabel="cross-entropy")
    ax_loss.legend(loc="upper right")

    ax_acc.plot(ep, 100 * col["train_acc"], label="train", **style)
    ax_acc.plot(ep, 100 * col["test_acc"], label="test", **style)
    ax_acc.axhline(100 * TARGET_ACC, color="gray", linestyle="--", linewidth=1, label="target")
    final = 100 * col["test_acc"][-1]
    ax_acc.plot(ep[-1], final, "o", color="C1", markersize=7, markerfacecolor="none")
    # Rising curves leave the lower right empty: the label goes there, the legend upper left.
    ax_acc.annotate(
        f"final test: {final:.2f}%",
        xy=(ep[-1], final),
        xytext=(0.97, 0.12),
        textcoords="axes fraction",
        ha="right",
        va="bottom",
        fontsize=9,
        bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "C1"},
        arrowprops={"arrowstyle": "->", "color": "C1"},
    )
    ax_acc.set(title="accuracy", xlabel="epoch", ylabel="accuracy (%)")
    ax_acc.legend(loc="upper left")

    ax_lr.plot(ep, col["lr"], color="C2", **style)
    ax_lr.set(title="learning rate", xlabel="epoch", ylabel="lr")

    for ax in (ax_loss, ax_acc, ax_lr):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    _suptitle(fig, title)
    return fig


# ---------------------------------------------------------------------------- evaluation


def plot_confusion_matrix(
    cm,
    classes: Sequence[str],
    normalize: bool = True,
    title: str | None = None,
) -> Figure:
    """Draw a confusion matrix as an annotated heatmap: rows true, columns predicted.

    With ``normalize`` each row is shown as the percentage of its true class; otherwise
    the cells show counts.

    Used in lesson 04.
    """
    cm = _to_numpy(cm)
    k = len(classes)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square 2-D matrix; got shape {tuple(cm.shape)}")
    if cm.shape[0] != k:
        raise ValueError(f"cm is {cm.shape[0]}x{cm.shape[1]} but there are {k} classes")

    if normalize:
        totals = cm.sum(axis=1, keepdims=True).astype(float)
        values = 100 * np.divide(cm, totals, out=np.zeros(cm.shape), where=totals > 0)
        annot = np.vectorize(lambda v: f"{v:.0f}")(values)
        cbar_label, vmax = "% of true class", 100
    else:
        values = cm
        annot = np.vectorize(lambda v: f"{v:g}")(cm)
        cbar_label, vmax = "count", None

    size = 2.5 + 0.55 * k
    fig = new_figure(size + 1.2, size + (0.3 if title else 0))
    ax = fig.subplots()
    sns.heatmap(
        values,
        annot=annot,
        fmt="",
        cmap="Blues",
        vmin=0,
        vmax=vmax,
        square=True,
        linewidths=0.5,
        xticklabels=classes,
        yticklabels=classes,
        cbar_kws={"label": cbar_label, "shrink": 0.8},
        annot_kws={"fontsize": 9},
        ax=ax,
    )
    ax.set(xlabel="predicted", ylabel="true")
    ax.tick_params(axis="x", labelrotation=45)
    ax.tick_params(axis="y", labelrotation=0)
    for label in ax.get_xticklabels():
        label.set_ha("right")
        label.set_rotation_mode("anchor")
    _suptitle(fig, title)
    return fig


def plot_misclassified(
    images,
    true,
    pred,
    confidence,
    classes: Sequence[str],
    ncols: int = 5,
    mean: Stats = None,
    std: Stats = None,
    title: str | None = None,
) -> Figure:
    """Show misclassified images titled "true: cat / pred: dog (0.93)".

    ``confidence`` is the softmax probability of the predicted class. With no images
    (a model that made no mistakes on the sample) the figure says so instead.

    Used in lesson 04.
    """
    n = len(images)
    if n == 0:
        fig = new_figure(4, 1)
        fig.text(0.5, 0.5, "no misclassified examples", ha="center", va="center")
        _suptitle(fig, title)
        return fig
    k = len(classes)
    t = _check_labels(true, n, k, name="true")
    p = _check_labels(pred, n, k, name="pred")
    conf = _to_numpy(confidence).ravel()
    if len(conf) != n:
        raise ValueError(f"confidence has {len(conf)} entries but there are {n} images")
    titles = [
        f"true: {classes[a]}\npred: {classes[b]} ({c:.2f})"
        for a, b, c in zip(t, p, conf, strict=True)
    ]
    return image_grid(images, ncols=ncols, titles=titles, mean=mean, std=std, title=title)


def plot_per_class_accuracy(
    acc_per_class,
    classes: Sequence[str],
    title: str | None = None,
) -> Figure:
    """Horizontal bars of per-class accuracy (fractions, shown as %), best at the top.

    A dashed line marks the mean over classes.

    Used in lesson 04.
    """
    acc = _to_numpy(acc_per_class).astype(float).ravel()
    if len(acc) != len(classes):
        raise ValueError(
            f"acc_per_class has {len(acc)} values but there are {len(classes)} classes"
        )
    if acc.size and (acc.min() < 0 or acc.max() > 1):
        raise ValueError(
            f"acc_per_class must be fractions in [0, 1]; got values from {acc.min():g} "
            f"to {acc.max():g} (already in percent?)"
        )
    order = np.argsort(acc, kind="stable")
    pct = 100 * acc[order]
    fig = new_figure(7, 1.2 + 0.35 * len(acc) + (0.3 if title else 0))
    ax = fig.subplots()
    bars = ax.barh([classes[i] for i in order], pct, color="C0")
    values = ax.bar_label(bars, labels=[f"{v:.1f}%" for v in pct], padding=3, fontsize=9)
    # White boxes keep the values readable where the mean line passes behind them.
    for text in values:
        text.set_bbox({"facecolor": "white", "edgecolor": "none", "pad": 0.5})
    ax.axvline(
        pct.mean(),
        color="gray",
        linestyle="--",
        linewidth=1,
        zorder=0.5,
        label=f"mean {pct.mean():.1f}%",
    )
    ax.set(xlim=(0, 112), xlabel="accuracy (%)")
    ax.legend(loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    _suptitle(fig, title)
    return fig


def plot_saliency(
    images,
    maps,
    grids=None,
    labels=None,
    preds=None,
    classes: Sequence[str] | None = None,
    alpha: float = 0.5,
    title: str | None = None,
    mean: Stats = None,
    std: Stats = None,
) -> Figure:
    """Show each image above the same image with each of its saliency maps overlaid.

    ``maps`` is (N, h, w) in any range, or a dict of such arrays, one row of overlays per entry
    (the key names the row); each map is scaled to [0, 1] on its own. ``grids`` places the
    maps: a ``saliency.UnitGrid`` (or a dict of them, keyed like ``maps``) puts each unit at its
    receptive field's centre and leaves the rest of the image uncovered; without one a map must
    have the image's size. ``labels`` (true) and ``preds`` (predicted) title the columns.

    Used in lesson 05.
    """
    imgs = _check_batch(to_display(images, mean, std))
    n, (h, w) = len(imgs), imgs.shape[1:3]
    rows = maps if isinstance(maps, dict) else {"saliency": maps}
    placements = grids if isinstance(grids, dict) else dict.fromkeys(rows, grids)
    if set(placements) != set(rows):
        raise ValueError(f"grids has keys {sorted(placements)} but maps has {sorted(rows)}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    scaled, extents = {}, {}
    for name, arr in rows.items():
        m = _to_numpy(arr).astype(float)
        if m.ndim == 2 and n == 1:
            m = m[None]
        if m.ndim != 3:
            raise ValueError(f"maps must have shape (N, H, W); got shape {tuple(m.shape)}")
        if len(m) != n:
            raise ValueError(f"maps has {len(m)} entries but there are {n} images")
        grid = placements[name]
        if grid is None and m.shape[1:] != (h, w):
            raise ValueError(
                f"a {m.shape[1]}x{m.shape[2]} map on a {h}x{w} image needs the grid of its "
                "units (saliency.unit_grid), or it would be stretched over the wrong pixels"
            )
        if grid is not None and (m.shape[1:] != (grid.size, grid.size) or grid.image != h):
            raise ValueError(
                f"maps of {m.shape[1]}x{m.shape[2]} on {h}x{w} images do not fit the grid of "
                f"'{grid.layer}' ({grid.size}x{grid.size} units on a {grid.image}px input)"
            )
        lo = m.min(axis=(1, 2), keepdims=True)
        span = m.max(axis=(1, 2), keepdims=True) - lo
        scaled[name] = np.divide(m - lo, span, out=np.zeros_like(m), where=span > 0)
        extents[name] = (-0.5, w - 0.5, h - 0.5, -0.5) if grid is None else grid.extent

    true = _label_titles(labels, classes, n)
    pred = _label_titles(preds, classes, n)
    if true and pred:
        titles = [f"true {t}\npred {p}" for t, p in zip(true, pred, strict=True)]
    else:
        titles = true or pred
    lines = 0 if not titles else 2 if true and pred else 1
    per_block = 1 + len(rows)
    ncols = min(n, 8)
    blocks = math.ceil(n / ncols)
    fig = new_figure(
        ncols * _TILE + 0.8,
        blocks * (per_block * _TILE + lines * _TITLE_LINE) + (0.4 if title else 0),
    )
    axes = fig.subplots(per_block * blocks, ncols, squeeze=False)
    for i in range(blocks * ncols):
        top, col = per_block * (i // ncols), i % ncols
        column = [axes[top + r, col] for r in range(per_block)]
        if i >= n:
            for ax in column:
                ax.remove()
            continue
        for ax in column:
            _show(ax, imgs[i])
        for ax, name in zip(column[1:], rows, strict=True):
            ax.imshow(
                scaled[name][i],
                cmap="jet",
                alpha=alpha,
                vmin=0,
                vmax=1,
                extent=extents[name],
                interpolation="bilinear",
            )
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
        if titles:
            column[0].set_title(titles[i], fontsize=9)
    for b in range(blocks):
        axes[per_block * b, 0].set_ylabel("image", fontsize=9)
        for r, name in enumerate(rows, start=1):
            axes[per_block * b + r, 0].set_ylabel(name, fontsize=9)
    _suptitle(fig, title)
    return fig


def plot_rf_map(erf, rf_size: int | None = None, title: str | None = None) -> Figure:
    """Show an effective-receptive-field map (values 0-1) and the theoretical RF square.

    The square of side ``rf_size`` is centred on the map; a theoretical RF larger than
    the map is clipped to it, which is itself the lesson: the ERF is much smaller.

    Used in lesson 02.
    """
    e = _to_numpy(erf).astype(float)
    if e.ndim != 2:
        raise ValueError(f"erf must be a 2-D map (H, W); got shape {tuple(e.shape)}")
    if rf_size is not None and rf_size < 1:
        raise ValueError(f"rf_size must be a positive number of pixels; got {rf_size}")
    h, w = e.shape

    fig = new_figure(5.5, 5.2 + (0.3 if title else 0))
    ax = fig.subplots()
    im = ax.imshow(e, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label="effective RF (normalized |gradient|)")
    ax.set(xlabel="x (pixels)", ylabel="y (pixels)")
    if rf_size is not None:
        cx, cy = (w - 1) / 2, (h - 1) / 2
        x0, x1 = max(cx - rf_size / 2, -0.5), min(cx + rf_size / 2, w - 0.5)
        y0, y1 = max(cy - rf_size / 2, -0.5), min(cy + rf_size / 2, h - 0.5)
        label = f"theoretical RF {rf_size}x{rf_size}"
        if rf_size > min(h, w):
            label += f" (larger than the {h}x{w} map: clipped to it)"
        ax.add_patch(
            Rectangle(
                (x0, y0),
                x1 - x0,
                y1 - y0,
                fill=False,
                edgecolor="red",
                linestyle="--",
                linewidth=1.5,
                label=label,
                zorder=3,
                # Unclipped so that an outline lying on the map's border stays fully visible.
                clip_on=False,
            )
        )
        # add_patch widens the data limits; keep the view on the map.
        ax.set(xlim=(-0.5, w - 0.5), ylim=(h - 0.5, -0.5))
        fig.legend(loc="outside lower center", fontsize=9, frameon=False)
    _suptitle(fig, title)
    return fig
