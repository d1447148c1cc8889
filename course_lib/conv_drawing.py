"""Drawings of a kernel moving over its input, as static filmstrips, plus a slider to move it.

In the spirit of Dumoulin & Visin's conv-arithmetic animations ("A guide to convolution
arithmetic for deep learning", 2016), drawn from scratch: every panel shows the input grid with
its padding, the kernel's taps at one position, and the output grid with the cell those taps
compute. Every convolution is drawn as a direct, stride-``s`` sweep over a *canvas*:

- a conv's canvas is its input with ``padding`` zeros around it;
- a transposed conv's canvas is its input spread out, with ``stride - 1`` zeros inserted between
  neighbours and ``dilation*(kernel-1) - padding`` zeros around it (plus ``output_padding`` at
  the bottom and right), swept at stride 1 by the flipped kernel.

``conv_by_taps`` computes a convolution from exactly the taps the drawing shows, and the tests
check it against PyTorch, so the pictures cannot drift from what the layers compute. The channel
view of a standard conv (``draw_conv_volume``: filters as ``k x k x c_in`` blocks) is counted the
same way, by ``filter_window`` and ``conv_volume_counts``.
Used in lesson 01.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.patches import Patch, Polygon, Rectangle
from torch import nn

from .layers import DepthwiseSeparableConv2d
from .models import count_parameters
from .plots import new_figure
from .widget_support import Interactive, redraw_figure, show_figure

__all__ = [
    "CELL_PADDING",
    "CELL_INPUT",
    "CELL_INSERTED",
    "ConvGeometry",
    "canvas_cells",
    "kernel_taps",
    "spread_input",
    "conv_by_taps",
    "filter_window",
    "VolumeCounts",
    "conv_volume_counts",
    "filmstrip_positions",
    "draw_conv",
    "draw_spatial_separable",
    "draw_depthwise_separable",
    "draw_conv_volume",
    "PRESETS",
    "conv_explorer",
]

CELL_PADDING, CELL_INPUT, CELL_INSERTED = 0, 1, 2

# Colours in the spirit of the conv-arithmetic animations: blue input, green output.
_INPUT = "#9ecae1"
_TAP = "#08306b"
_PAD_EDGE = "#969696"
_INSERTED = "#f0f0f0"
_OUTPUT = "#e5f5e0"
_DONE = "#a1d99b"
_CURRENT = "#238b45"
_CHANNELS = ("#e41a1c", "#4daf4a", "#377eb8", "#984ea3", "#ff7f00", "#a65628", "#f781bf")
_CELL_IN = 0.22  # inches per grid cell in a filmstrip: a 9-cell canvas is about 2 inches wide

Pair = tuple[int, int]


def _pair(value: int | Sequence[int], name: str) -> Pair:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise ValueError(f"ConvGeometry: {name} must be an int or a pair of ints, got {value!r}")
    return pair  # type: ignore[return-value]


@dataclass(frozen=True)
class _Line:
    """One axis of a geometry: everything on the canvas is the product of two of these."""

    n: int
    k: int
    s: int
    p: int
    d: int
    op: int
    transposed: bool

    @property
    def span(self) -> int:
        return self.d * (self.k - 1) + 1

    @property
    def before(self) -> int:
        return self.span - 1 - self.p if self.transposed else self.p

    @property
    def spread(self) -> int:
        return (self.n - 1) * self.s + 1 if self.transposed else self.n

    @property
    def gap(self) -> int:  # canvas cells between neighbouring input pixels
        return self.s if self.transposed else 1

    @property
    def step(self) -> int:  # how far the kernel moves per output
        return 1 if self.transposed else self.s

    @property
    def length(self) -> int:
        return self.before + self.spread + self.before + self.op

    @property
    def out(self) -> int:
        return (self.length - self.span) // self.step + 1

    def codes(self) -> np.ndarray:
        codes = np.full(self.length, CELL_PADDING)
        codes[self.before : self.before + self.spread] = CELL_INSERTED
        codes[self.input_positions()] = CELL_INPUT
        return codes

    def input_positions(self) -> np.ndarray:
        return self.before + self.gap * np.arange(self.n)


@dataclass(frozen=True)
class ConvGeometry:
    """The arithmetic of one 2-D convolution, as the drawings need it.

    Every field takes an int or an (height, width) pair and is stored as a pair. A transposed
    geometry describes ``nn.ConvTranspose2d(..., kernel, stride, padding, output_padding,
    dilation=dilation)`` on a ``size`` input; the others ``nn.Conv2d(..., kernel, stride,
    padding, dilation)``.
    """

    size: int | Pair
    kernel: int | Pair = 3
    stride: int | Pair = 1
    padding: int | Pair = 0
    dilation: int | Pair = 1
    transposed: bool = False
    output_padding: int | Pair = 0

    def __post_init__(self) -> None:
        for name in ("size", "kernel", "stride", "padding", "dilation", "output_padding"):
            object.__setattr__(self, name, _pair(getattr(self, name), name))
        for name in ("size", "kernel", "stride", "dilation"):
            if min(getattr(self, name)) < 1:
                raise ValueError(f"ConvGeometry: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("padding", "output_padding"):
            if min(getattr(self, name)) < 0:
                raise ValueError(f"ConvGeometry: {name} must be >= 0, got {getattr(self, name)}")
        for line in self.lines:
            if not self.transposed:
                if line.op:
                    raise ValueError(
                        "ConvGeometry: output_padding applies to transposed convs only"
                    )
                if line.length < line.span:
                    raise ValueError(
                        f"ConvGeometry: the kernel spans {line.span} cells but the padded input "
                        f"has only {line.length}"
                    )
            else:
                if line.p > line.span - 1:
                    raise ValueError(
                        f"ConvGeometry: a transposed conv's padding ({line.p}) must be at most "
                        f"dilation*(kernel-1) = {line.span - 1}, or the drawing would need to "
                        "crop the spread input"
                    )
                if line.op >= max(line.s, line.d):
                    raise ValueError(
                        f"ConvGeometry: output_padding ({line.op}) must be smaller than stride "
                        f"or dilation ({max(line.s, line.d)}), as in PyTorch"
                    )

    @property
    def lines(self) -> tuple[_Line, _Line]:
        return tuple(  # type: ignore[return-value]
            _Line(
                self.size[a],
                self.kernel[a],
                self.stride[a],
                self.padding[a],
                self.dilation[a],
                self.output_padding[a],
                self.transposed,
            )
            for a in (0, 1)
        )

    @property
    def canvas_shape(self) -> Pair:
        return self.lines[0].length, self.lines[1].length

    @property
    def output_shape(self) -> Pair:
        return self.lines[0].out, self.lines[1].out

    def module(self, c_in: int = 1, c_out: int = 1) -> nn.Module:
        """The PyTorch layer this geometry draws (no bias)."""
        if self.transposed:
            return nn.ConvTranspose2d(
                c_in,
                c_out,
                self.kernel,
                self.stride,
                self.padding,
                self.output_padding,
                bias=False,
                dilation=self.dilation,
            )
        return nn.Conv2d(
            c_in, c_out, self.kernel, self.stride, self.padding, self.dilation, bias=False
        )

    def describe(self) -> str:
        """E.g. ``3x3 kernel, stride 2, padding 1: 5x5 -> 3x3``."""

        def fmt(pair: Pair, sep: str = "x") -> str:
            return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}{sep}{pair[1]}"

        parts = [f"{self.kernel[0]}x{self.kernel[1]} kernel"]
        if self.transposed:
            parts[0] = "transposed, " + parts[0]
        for name in ("stride", "padding", "dilation", "output_padding"):
            value, default = getattr(self, name), (0, 0) if "padding" in name else (1, 1)
            if value != default:
                parts.append(f"{name.replace('_', ' ')} {fmt(value, ',')}")
        (h, w), (ho, wo) = self.size, self.output_shape
        return f"{', '.join(parts)}: {h}x{w} -> {ho}x{wo}"


# ---------------------------------------------------------------------------- pure geometry


def canvas_cells(geom: ConvGeometry) -> np.ndarray:
    """The canvas as an int array: ``CELL_INPUT``, ``CELL_PADDING`` or ``CELL_INSERTED``.

    A cell is padding if its row or column lies outside the (spread) input; it is an input
    pixel if both do fall on input pixels; the rest are zeros inserted by a transposed conv.
    Used in lesson 01.
    """
    rows, cols = (line.codes() for line in geom.lines)
    cells = np.full((len(rows), len(cols)), CELL_INSERTED)
    cells[(rows[:, None] == CELL_INPUT) & (cols[None, :] == CELL_INPUT)] = CELL_INPUT
    cells[(rows[:, None] == CELL_PADDING) | (cols[None, :] == CELL_PADDING)] = CELL_PADDING
    return cells


def kernel_taps(geom: ConvGeometry, i: int, j: int) -> list[tuple[int, int]]:
    """Canvas cells ``(row, col)`` under the kernel's taps when it computes output ``(i, j)``.

    Tap ``(a, b)`` of the kernel sits at ``(i*step + a*dilation, j*step + b*dilation)``, where
    ``step`` is the stride of a conv and 1 for a transposed conv. Listed in kernel order.
    Used in lesson 01.
    """
    ho, wo = geom.output_shape
    if not (0 <= i < ho and 0 <= j < wo):
        raise ValueError(f"kernel_taps: output ({i}, {j}) is outside the {ho}x{wo} output")
    rl, cl = geom.lines
    return [
        (i * rl.step + a * rl.d, j * cl.step + b * cl.d) for a in range(rl.k) for b in range(cl.k)
    ]


def spread_input(x: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """The canvas with the values of ``x`` (H, W) on its input cells and zeros elsewhere.

    Used in lesson 01.
    """
    x = np.asarray(x, dtype=float)
    if x.shape != geom.size:
        raise ValueError(f"spread_input: x must have shape {geom.size}, got {x.shape}")
    rl, cl = geom.lines
    canvas = np.zeros(geom.canvas_shape)
    canvas[np.ix_(rl.input_positions(), cl.input_positions())] = x
    return canvas


def conv_by_taps(x: np.ndarray, w: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """One-channel convolution computed from the taps the drawings show.

    Each output is the sum over taps of canvas value times weight: the weight itself for a
    conv (PyTorch's cross-correlation), the flipped weight for a transposed conv. Equals
    ``geom.module()`` with weight ``w``. Used in lesson 01.
    """
    w = np.asarray(w, dtype=float)
    if w.shape != geom.kernel:
        raise ValueError(f"conv_by_taps: w must have shape {geom.kernel}, got {w.shape}")
    canvas = spread_input(x, geom)
    if geom.transposed:
        w = w[::-1, ::-1]
    (ho, wo), (rl, cl) = geom.output_shape, geom.lines
    out = np.zeros((ho, wo))
    for a in range(rl.k):
        for b in range(cl.k):
            r0, c0 = a * rl.d, b * cl.d
            window = canvas[
                r0 : r0 + rl.step * (ho - 1) + 1 : rl.step,
                c0 : c0 + cl.step * (wo - 1) + 1 : cl.step,
            ]
            out += w[a, b] * window
    return out


def filter_window(geom: ConvGeometry, c_in: int, i: int, j: int) -> list[tuple[int, int, int]]:
    """Cells ``(channel, row, col)`` of the canvas that one filter reads to compute output ``(i, j)``.

    A standard conv's filter is a ``k x k x c_in`` block of weights: the ``k x k`` taps of
    ``kernel_taps`` on every input channel, one weight per cell. So the list has one entry per
    weight of the filter and per multiply-add behind one output value. Rows and columns are
    canvas cells (input row = canvas row - padding). Used in lesson 01.
    """
    if geom.transposed:
        raise ValueError("filter_window: draws a conv's filter; got a transposed geometry")
    if not isinstance(c_in, int) or isinstance(c_in, bool) or c_in < 1:
        raise ValueError(f"filter_window: c_in must be a positive int, got {c_in!r}")
    taps = kernel_taps(geom, i, j)
    return [(c, r, col) for c in range(c_in) for r, col in taps]


@dataclass(frozen=True)
class VolumeCounts:
    """What a standard conv with ``c_out`` filters of ``k x k x c_in`` computes, by counting cells."""

    weights: int  # c_out filters, one weight per cell of the filter window
    macs_per_output: int  # cells in one filter window
    outputs: int  # c_out channels of h_out x w_out values

    @property
    def mult_adds(self) -> int:
        return self.outputs * self.macs_per_output

    def __str__(self) -> str:
        return (
            f"{self.outputs:,} outputs x {self.macs_per_output:,} multiply-adds each = "
            f"{self.mult_adds:,} multiply-adds; {self.weights:,} weights"
        )


def conv_volume_counts(geom: ConvGeometry, c_in: int, c_out: int) -> VolumeCounts:
    """Weights and multiply-adds of ``geom.module(c_in, c_out)``, counted from the drawing.

    Counted from ``filter_window`` rather than from a formula or a module, so that comparing
    the result with ``conv_cost`` checks the drawing. Used in lesson 01.
    """
    if not isinstance(c_out, int) or isinstance(c_out, bool) or c_out < 1:
        raise ValueError(f"conv_volume_counts: c_out must be a positive int, got {c_out!r}")
    window = len(filter_window(geom, c_in, 0, 0))
    ho, wo = geom.output_shape
    return VolumeCounts(weights=c_out * window, macs_per_output=window, outputs=c_out * ho * wo)


def filmstrip_positions(geom: ConvGeometry, n_panels: int = 4) -> list[tuple[int, int]]:
    """Which outputs a filmstrip shows: the first ``n_panels - 2`` in reading order, the middle
    one and the last (all of them when there are no more than ``n_panels``).

    Consecutive panels show how far one step moves the kernel; the last shows where it ends.
    Used in lesson 01.
    """
    if not isinstance(n_panels, int) or n_panels < 1:
        raise ValueError(f"filmstrip_positions: n_panels must be a positive int, got {n_panels!r}")
    ho, wo = geom.output_shape
    total = ho * wo
    if n_panels >= total:
        steps = list(range(total))
    elif n_panels <= 2:
        steps = [0, total - 1][:n_panels]
    else:
        steps = [*range(n_panels - 2), max(n_panels - 2, (total - 1) // 2), total - 1]
    return [divmod(t, wo) for t in steps]


# ---------------------------------------------------------------------------- drawing


def _grid(ax: Axes, cells: np.ndarray, x0: float = 0.0, y0: float = 0.0) -> None:
    """Draw a cell-code grid with its top-left corner at (x0, y0), one data unit per cell."""
    style = {
        CELL_INPUT: dict(facecolor=_INPUT, edgecolor="white", linewidth=1.0),
        CELL_PADDING: dict(facecolor="white", edgecolor=_PAD_EDGE, linewidth=0.7, linestyle="--"),
        CELL_INSERTED: dict(facecolor=_INSERTED, edgecolor=_PAD_EDGE, linewidth=0.7, linestyle=":"),
    }
    for (r, c), code in np.ndenumerate(cells):
        ax.add_patch(Rectangle((x0 + c + 0.04, y0 + r + 0.04), 0.92, 0.92, **style[int(code)]))


def _frame(ax: Axes, width: float, height: float) -> None:
    ax.set_xlim(-0.15, width + 0.15)
    ax.set_ylim(height + 0.15, -0.15)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _draw_taps(ax: Axes, geom: ConvGeometry, i: int, j: int) -> None:
    taps = kernel_taps(geom, i, j)
    for r, c in taps:
        # Smaller than a cell, so the ring around it still says what lies under the tap.
        ax.add_patch(Rectangle((c + 0.24, r + 0.24), 0.52, 0.52, facecolor=_TAP))
    (r0, c0), (rl, cl) = taps[0], geom.lines
    # The span: with dilation > 1 it shows the holes between taps.
    ax.add_patch(Rectangle((c0, r0), cl.span, rl.span, fill=False, edgecolor=_TAP, linewidth=1.6))


def _draw_output(ax: Axes, geom: ConvGeometry, i: int, j: int, width: float) -> None:
    ho, wo = geom.output_shape
    x0 = (width - wo) / 2  # centred under the canvas, at the canvas's scale
    for r in range(ho):
        for c in range(wo):
            done = (r, c) < (i, j)
            colour = _CURRENT if (r, c) == (i, j) else _DONE if done else _OUTPUT
            ax.add_patch(
                Rectangle(
                    (x0 + c + 0.04, r + 0.04),
                    0.92,
                    0.92,
                    facecolor=colour,
                    edgecolor="white",
                    linewidth=1.0,
                )
            )


def _legend_handles(geom: ConvGeometry) -> list[Patch]:
    cells = canvas_cells(geom)
    handles = [Patch(facecolor=_INPUT, label="input pixel")]
    if (cells == CELL_PADDING).any():
        handles.append(Patch(facecolor="white", edgecolor=_PAD_EDGE, ls="--", label="zero padding"))
    if (cells == CELL_INSERTED).any():
        handles.append(
            Patch(facecolor=_INSERTED, edgecolor=_PAD_EDGE, ls=":", label="inserted zero")
        )
    handles += [
        Patch(facecolor=_TAP, label="kernel tap"),
        Patch(facecolor=_DONE, label="output, done"),
        Patch(facecolor=_CURRENT, label="output, computing"),
    ]
    return handles


def _panel_width(canvas_cols: int) -> float:
    # At least as wide as a panel title such as "output (0, 1), step 2/16".
    return max(1.6, canvas_cols * _CELL_IN + 0.35)


def _check_positions(geom: ConvGeometry, positions: Sequence[tuple[int, int]]) -> None:
    if not positions:
        raise ValueError("draw_conv: positions is empty")
    for i, j in positions:
        kernel_taps(geom, i, j)  # raises with the message for an output outside the map


def draw_conv(
    geom: ConvGeometry,
    positions: Sequence[tuple[int, int]] | None = None,
    n_panels: int = 4,
    title: str | None = None,
    fig: Figure | SubFigure | None = None,
    input_label: str | None = None,
    legend: bool = True,
) -> Figure | SubFigure:
    """A filmstrip: one panel per output position, the canvas above and the output below.

    ``positions`` are output cells ``(i, j)`` (default ``filmstrip_positions(geom, n_panels)``).
    Draws into ``fig`` when given (a widget's figure, a subfigure), else returns a
    new figure that displays itself in a notebook. Used in lesson 01.
    """
    positions = filmstrip_positions(geom, n_panels) if positions is None else list(positions)
    _check_positions(geom, positions)
    (hc, wc), (ho, _) = geom.canvas_shape, geom.output_shape
    n = len(positions)
    if fig is None:
        fig = new_figure(max(4.0, n * _panel_width(wc)), (hc + ho) * _CELL_IN + 1.4)
    axes = fig.subplots(2, n, squeeze=False, gridspec_kw={"height_ratios": [hc, ho]})
    cells = canvas_cells(geom)
    total = geom.output_shape[0] * geom.output_shape[1]
    for k, (i, j) in enumerate(positions):
        top, bottom = axes[0, k], axes[1, k]
        _grid(top, cells)
        _draw_taps(top, geom, i, j)
        _frame(top, wc, hc)
        _draw_output(bottom, geom, i, j, wc)
        _frame(bottom, wc, ho)
        step = i * geom.output_shape[1] + j + 1
        top.set_title(f"output ({i}, {j}), step {step}/{total}", fontsize=8)
    default_label = "spread input" if geom.transposed else "input"
    axes[0, 0].set_ylabel(input_label or default_label, fontsize=9)
    axes[1, 0].set_ylabel("output", fontsize=9)
    fig.suptitle(title or geom.describe(), fontsize=10)
    if not legend:
        return fig
    handles = _legend_handles(geom)
    # As many legend columns as fit the figure's width (a one-panel widget is narrow).
    per_row = max(2, int(fig.figure.get_figwidth() / 1.3))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), per_row),
        fontsize=7.5,
        frameon=False,
    )
    return fig


def draw_spatial_separable(
    size: int = 5, kernel: int = 3, n_panels: int = 4, padding: int | None = None
) -> Figure:
    """Two filmstrips, one above the other: a (k x 1) conv, then a (1 x k) conv on its output.

    ``padding`` defaults to ``kernel // 2`` along the kernel's long side, which keeps the size.
    Used in lesson 01.
    """
    p = kernel // 2 if padding is None else padding
    first = ConvGeometry(size, (kernel, 1), padding=(p, 0))
    second = ConvGeometry(first.output_shape, (1, kernel), padding=(0, p))
    hc, wc = first.canvas_shape
    width = max(4.0, n_panels * _panel_width(max(wc, second.canvas_shape[1])))
    rows = hc + first.output_shape[0] + second.canvas_shape[0] + second.output_shape[0]
    fig = new_figure(width, rows * _CELL_IN + 3.0)
    top, bottom = fig.subfigures(
        2, 1, height_ratios=[hc + first.output_shape[0], rows - hc - first.output_shape[0]]
    )
    draw_conv(
        first,
        n_panels=n_panels,
        fig=top,
        title=f"step 1, vertical: {first.describe()}",
        legend=False,
    )
    draw_conv(
        second,
        n_panels=n_panels,
        fig=bottom,
        title=f"step 2, horizontal: {second.describe()}",
        input_label="step 1 output",
    )
    return fig


def _channel_grid(ax: Axes, n: int, x0: float, y0: float, colour: str) -> None:
    for r in range(n):
        for c in range(n):
            ax.add_patch(
                Rectangle(
                    (x0 + c + 0.04, y0 + r + 0.04),
                    0.92,
                    0.92,
                    facecolor=colour,
                    alpha=0.25,
                    edgecolor="white",
                )
            )


def _mark(ax: Axes, x: float, y: float, colour: str, size: float = 1.0, alpha: float = 0.9) -> None:
    ax.add_patch(
        Rectangle((x + 0.04, y + 0.04), size - 0.08, size - 0.08, facecolor=colour, alpha=alpha)
    )


def draw_depthwise_separable(
    c_in: int = 3,
    c_out: int = 4,
    size: int = 5,
    kernel: int = 3,
    position: tuple[int, int] = (1, 1),
) -> Figure:
    """The channel view of a depthwise-separable conv (unpadded), with its weights counted.

    Left: ``c_in`` input channels, each with the k x k window that computes output ``position``.
    Middle: the depthwise step keeps every channel in its own lane. Right: the pointwise step
    mixes all ``c_in`` values at one pixel into each of the ``c_out`` output channels (lines
    drawn for the first). Used in lesson 01.
    """
    for name, value in (("c_in", c_in), ("c_out", c_out), ("size", size), ("kernel", kernel)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(
                f"draw_depthwise_separable: {name} must be a positive int, got {value!r}"
            )
    n_out = size - kernel + 1
    if n_out < 1:
        raise ValueError(
            f"draw_depthwise_separable: a {kernel}x{kernel} kernel does not fit a {size}x{size} input"
        )
    i, j = position
    if not (0 <= i < n_out and 0 <= j < n_out):
        raise ValueError(
            f"draw_depthwise_separable: position {position} is outside the {n_out}x{n_out} output"
        )

    dws = DepthwiseSeparableConv2d(c_in, c_out, kernel, padding=0)
    n_dw, n_pw = count_parameters(dws.depthwise), count_parameters(dws.pointwise)
    n_std = count_parameters(nn.Conv2d(c_in, c_out, kernel, bias=False))

    gap = 1.2
    x_in, x_mid, x_out = 0.0, size + 4.0, size + n_out + 8.0
    height = max(c_in * (size + gap), c_out * (n_out + gap)) - gap
    y_in = [(height - c_in * (size + gap) + gap) / 2 + c * (size + gap) for c in range(c_in)]
    y_mid = [y + (size - n_out) / 2 for y in y_in]
    y_out = [(height - c_out * (n_out + gap) + gap) / 2 + o * (n_out + gap) for o in range(c_out)]
    colours = [_CHANNELS[c % len(_CHANNELS)] for c in range(c_in)]

    width_in = (x_out + n_out) * 0.3 + 0.6
    fig = new_figure(min(10.0, width_in), height * 0.3 + 1.0)
    ax = fig.subplots()
    for c in range(c_in):
        _channel_grid(ax, size, x_in, y_in[c], colours[c])
        for a in range(kernel):
            for b in range(kernel):
                _mark(ax, x_in + j + b, y_in[c] + i + a, colours[c], alpha=0.85)
        ax.add_patch(
            Rectangle(
                (x_in + j, y_in[c] + i), kernel, kernel, fill=False, edgecolor="black", lw=1.2
            )
        )
        _channel_grid(ax, n_out, x_mid, y_mid[c], colours[c])
        _mark(ax, x_mid + j, y_mid[c] + i, colours[c])
        ax.plot(
            [x_in + j + kernel, x_mid + j],
            [y_in[c] + i + kernel / 2, y_mid[c] + i + 0.5],
            color=colours[c],
            lw=1.2,
        )
        ax.plot(
            [x_mid + j + 1, x_out + j],
            [y_mid[c] + i + 0.5, y_out[0] + i + 0.5],
            color=colours[c],
            lw=1.0,
            ls="--",
        )
    for o in range(c_out):
        _channel_grid(ax, n_out, x_out, y_out[o], "#525252")
    _mark(ax, x_out + j, y_out[0] + i, "#252525")

    top = -0.6
    ax.text(x_in + size / 2, top, f"input\n{c_in} channels", ha="center", va="bottom", fontsize=8)
    ax.text(
        x_mid + n_out / 2,
        top,
        f"depthwise {kernel}x{kernel}\none filter per channel\n{n_dw} weights",
        ha="center",
        va="bottom",
        fontsize=8,
    )
    ax.text(
        x_out + n_out / 2,
        top,
        f"pointwise 1x1\nmixes channels\n{n_pw} weights",
        ha="center",
        va="bottom",
        fontsize=8,
    )
    _frame(ax, x_out + n_out, height)
    ax.set_ylim(height + 0.2, top - 2.0)
    fig.suptitle(
        f"depthwise-separable: {n_dw} + {n_pw} = {n_dw + n_pw} weights; "
        f"a standard {kernel}x{kernel} conv would need {n_std}",
        fontsize=10,
    )
    return fig


_SHEAR = (0.5, 0.35)  # screen offset per cell of depth (rows run into the page)


def _oblique(
    x0: float, z0: float, points: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Project ``(col, depth)`` points of a flat slab whose front-left corner is at (x0, z0)."""
    sx, sy = _SHEAR
    return [(x0 + x + d * sx, z0 + d * sy) for x, d in points]


def _slab_cell(ax: Axes, x0: float, z0: float, n: int, r: int, c: int, **style) -> None:
    d = n - 1 - r  # row 0 at the back, as in an image seen from above its bottom edge
    ax.add_patch(
        Polygon(_oblique(x0, z0, [(c, d), (c + 1, d), (c + 1, d + 1), (c, d + 1)]), **style)
    )


def _slab(ax: Axes, x0: float, z0: float, n: int, colour: str) -> None:
    for r in range(n):
        for c in range(n):
            _slab_cell(ax, x0, z0, n, r, c, facecolor=colour, alpha=0.22, edgecolor="white")


def _window_corners(x0: float, z0: float, n: int, i: int, j: int, k: int) -> list:
    return _oblique(x0, z0, [(j, n - i - k), (j + k, n - i - k), (j + k, n - i), (j, n - i)])


def _box(ax: Axes, x0: float, z0: float, k: int, colours: Sequence[str], alpha: float) -> None:
    """A ``k x k x len(colours)`` block: front face in one band per channel, top face on top."""
    sx, sy = _SHEAR
    band = 0.45  # height of one channel's band
    for c, colour in enumerate(colours):  # channel 0 on top, as in the input stack
        z = z0 + (len(colours) - 1 - c) * band
        front = [(x0, z), (x0 + k, z), (x0 + k, z + band), (x0, z + band)]
        side = [(x0 + k, z), (x0 + k + k * sx, z + k * sy), (x0 + k + k * sx, z + band + k * sy)]
        side.append((x0 + k, z + band))
        style = dict(facecolor=colour, alpha=alpha, edgecolor="white", linewidth=0.8)
        ax.add_patch(Polygon(front, **style))
        ax.add_patch(Polygon(side, **{**style, "alpha": alpha * 0.6}))
    top = z0 + len(colours) * band
    for r in range(k):
        for c in range(k):
            cell = [(c, r), (c + 1, r), (c + 1, r + 1), (c, r + 1)]
            ax.add_patch(
                Polygon(
                    _oblique(x0, top, cell), facecolor=colours[0], alpha=alpha, edgecolor="white"
                )
            )


def draw_conv_volume(
    c_in: int = 3,
    c_out: int = 4,
    size: int = 5,
    kernel: int = 3,
    position: tuple[int, int] = (1, 1),
) -> Figure:
    """A standard conv in three dimensions: ``c_out`` filters of ``k x k x c_in`` over a stack.

    Left: the ``c_in`` input channels pulled apart, with the cells the first filter reads for
    output ``position`` (``filter_window``). Middle: the ``c_out`` filters, each a block as deep
    as the input. Right: the ``c_out`` output channels, one per filter, with the value the first
    filter computes. The title's counts come from ``conv_volume_counts``. Unpadded, stride 1.
    Used in lesson 01.
    """
    for name, value in (("c_in", c_in), ("c_out", c_out), ("size", size), ("kernel", kernel)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"draw_conv_volume: {name} must be a positive int, got {value!r}")
    if kernel > size:
        raise ValueError(
            f"draw_conv_volume: a {kernel}x{kernel} kernel does not fit a {size}x{size} input"
        )
    geom = ConvGeometry(size, kernel)
    i, j = position
    n_out = geom.output_shape[0]
    if not (0 <= i < n_out and 0 <= j < n_out):
        raise ValueError(
            f"draw_conv_volume: position {position} is outside the {n_out}x{n_out} output"
        )
    window = filter_window(geom, c_in, i, j)
    counts = conv_volume_counts(geom, c_in, c_out)
    sx, sy = _SHEAR
    colours = [_CHANNELS[c % len(_CHANNELS)] for c in range(c_in)]
    names = ["R", "G", "B"] if c_in == 3 else [f"channel {c}" for c in range(c_in)]

    gap = 0.9
    slab_in, slab_out = size * sy + gap, n_out * sy + gap
    filter_h = c_in * 0.45 + kernel * sy + 0.5
    height = max(c_in * slab_in, c_out * slab_out, c_out * filter_h)
    z_in = [height - (c + 1) * slab_in for c in range(c_in)]  # channel 0 on top
    z_out = [height - (o + 1) * max(slab_out, filter_h) for o in range(c_out)]
    x_f = size + size * sx + 2.0
    x_out = x_f + kernel + kernel * sx + 2.0

    fig = new_figure(min(10.0, (x_out + n_out * (1 + sx)) * 0.42 + 0.6), height * 0.42 + 1.2)
    ax = fig.subplots()
    for c in range(c_in):
        _slab(ax, 0.0, z_in[c], size, colours[c])
        ax.text(-0.3, z_in[c] + size * sy / 2, names[c], ha="right", va="center", fontsize=8)
    for c, r, col in window:
        _slab_cell(
            ax, 0.0, z_in[c], size, r, col, facecolor=colours[c], alpha=0.9, edgecolor="white"
        )
    # The window on every channel is one block: join its corners from the top slab to the bottom.
    top, bottom = (_window_corners(0.0, z, size, i, j, kernel) for z in (z_in[0], z_in[-1]))
    for c in range(c_in):
        ax.add_patch(Polygon(_window_corners(0.0, z_in[c], size, i, j, kernel), fill=False, lw=1.2))
    for (xa, ya), (xb, yb) in zip(top, bottom, strict=True):
        ax.plot([xa, xb], [ya, yb], color="black", lw=0.8, ls="--")

    for o in range(c_out):
        first = o == 0
        _box(
            ax,
            x_f,
            z_out[o],
            kernel,
            colours if first else ["#bdbdbd"] * c_in,
            0.9 if first else 0.5,
        )
        _slab(ax, x_out, z_out[o] + 0.2, n_out, _CURRENT if first else "#737373")
        f_mid = (x_f + kernel + kernel * sx / 2, z_out[o] + c_in * 0.45 / 2 + kernel * sy / 2)
        ax.annotate(
            "",
            xy=(x_out - 0.2, z_out[o] + 0.2 + n_out * sy / 2),
            xytext=(f_mid[0] + 0.3, f_mid[1]),
            arrowprops=dict(arrowstyle="->", color="black" if first else "#969696", lw=0.9),
        )
    _slab_cell(ax, x_out, z_out[0] + 0.2, n_out, i, j, facecolor=_CURRENT, edgecolor="white")
    # The first filter sits where the window is: an arrow from the block to the filter.
    win_mid = np.mean(_window_corners(0.0, z_in[c_in // 2], size, i, j, kernel), axis=0)
    ax.annotate(
        "",
        xy=(x_f - 0.2, z_out[0] + c_in * 0.45 / 2),
        xytext=(win_mid[0] + kernel / 2 + 0.3, win_mid[1]),
        arrowprops=dict(arrowstyle="->", color="black", lw=0.9),
    )
    label_y = height + 0.3
    for x, text in (
        (size * (1 + sx) / 2, f"input\n{size}x{size}x{c_in}"),
        (x_f + kernel * (1 + sx) / 2, f"{c_out} filters\neach {kernel}x{kernel}x{c_in}"),
        (x_out + n_out * (1 + sx) / 2, f"output\n{n_out}x{n_out}x{c_out}"),
    ):
        ax.text(x, label_y, text, ha="center", va="bottom", fontsize=8)
    ax.set_xlim(-1.6, x_out + n_out * (1 + sx) + 0.3)
    ax.set_ylim(-0.3, label_y + 1.0)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.suptitle(
        f"one output value: {counts.macs_per_output} multiply-adds; the layer: {counts}",
        fontsize=9,
    )
    return fig


# ---------------------------------------------------------------------------- widget

PRESETS: dict[str, ConvGeometry] = {
    "standard 3x3": ConvGeometry(5, 3),
    "3x3, padding 1": ConvGeometry(5, 3, padding=1),
    "3x3, stride 2, padding 1": ConvGeometry(5, 3, stride=2, padding=1),
    "pointwise 1x1": ConvGeometry(4, 1),
    "dilated 3x3, dilation 2": ConvGeometry(7, 3, dilation=2),
    "spatial-separable 3x1": ConvGeometry(5, (3, 1), padding=(1, 0)),
    "transposed 3x3, stride 2": ConvGeometry(3, 3, stride=2, transposed=True),
}


def conv_explorer(presets: Mapping[str, ConvGeometry] | None = None) -> Interactive:
    """A dropdown of geometries and a slider over the kernel's position; redraws one panel.

    ``w.kwargs_widgets`` are the dropdown ``conv`` and the slider ``step`` (0-based, in reading
    order; its maximum follows the chosen geometry). ``w.result`` is the last figure.
    Used in lesson 01.
    """
    presets = dict(PRESETS if presets is None else presets)
    if not presets:
        raise ValueError("conv_explorer: presets is empty")
    for name, geom in presets.items():
        if not isinstance(geom, ConvGeometry):
            raise ValueError(f"conv_explorer: preset {name!r} is not a ConvGeometry")

    def last_step(name: str) -> int:
        ho, wo = presets[name].output_shape
        return ho * wo - 1

    first = next(iter(presets))
    choice = widgets.Dropdown(options=list(presets), value=first, description="conv")
    slider = widgets.IntSlider(
        value=0, min=0, max=last_step(first), description="step", continuous_update=False
    )

    def draw(conv: str, step: int) -> Figure:
        geom = presets[conv]
        step = min(step, last_step(conv))  # the slider's maximum catches up just after
        (hc, wc), (ho, wo) = geom.canvas_shape, geom.output_shape
        size = (max(4.0, wc * 0.38 + 0.8), (hc + ho) * 0.38 + 1.6)
        fig = redraw_figure(*size)  # not pyplot's: see course_lib.widget_support
        draw_conv(geom, positions=[divmod(step, wo)], fig=fig)
        show_figure(fig)
        return fig

    def summary(w: Interactive) -> str:
        conv, step = (c.value for c in w.kwargs_widgets)
        return (
            f"Convolution explorer: {conv}, step {step + 1} of {last_step(conv) + 1}. "
            "Run the cell in Jupyter to use it."
        )

    w = Interactive(draw, summary, conv=choice, step=slider)
    choice.observe(lambda change: setattr(slider, "max", last_step(change["new"])), names="value")
    return w
