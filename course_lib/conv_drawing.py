"""Lesson 01's drawings of a kernel moving over its input (after Dumoulin & Visin, 2016) and of
a conv's channels. A conv sweeps a *canvas*: its padded input or, for a transposed conv, the
input spread out with zeros, swept at stride 1 by the flipped kernel."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import ipywidgets as widgets
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.patches import Patch, Rectangle

from .plots import new_figure
from .widget_support import Interactive, redraw_figure, show_figure

CELL_PADDING, CELL_INPUT, CELL_INSERTED = 0, 1, 2
# Blue input, green output, as in the conv-arithmetic animations.
_INPUT, _TAP, _EDGE, _INSERTED = "#9ecae1", "#08306b", "#969696", "#f0f0f0"
_OUTPUT, _DONE, _CURRENT = "#e5f5e0", "#a1d99b", "#238b45"
_CHANNELS = ("#e41a1c", "#4daf4a", "#377eb8", "#984ea3", "#ff7f00", "#a65628")
_STYLE = {
    CELL_INPUT: dict(facecolor=_INPUT, edgecolor="white"),
    CELL_PADDING: dict(facecolor="white", edgecolor=_EDGE, linestyle="--", linewidth=0.7),
    CELL_INSERTED: dict(facecolor=_INSERTED, edgecolor=_EDGE, linestyle=":", linewidth=0.7),
}
_LABELS = {CELL_INPUT: "input pixel", CELL_PADDING: "zero padding", CELL_INSERTED: "inserted zero"}
_CELL_IN = 0.22  # inches per grid cell in a filmstrip

Pair = tuple[int, int]


def _axis(n: int, k: int, s: int, p: int, d: int, op: int, transposed: bool) -> SimpleNamespace:
    """One axis of a geometry: the canvas and the taps are products of two of these."""
    span = d * (k - 1) + 1
    before = span - 1 - p if transposed else p  # canvas cells before the first input pixel
    gap, step = (s, 1) if transposed else (1, s)  # cells between input pixels; kernel's step
    length = 2 * before + gap * (n - 1) + 1 + op
    out = (length - span) // step + 1
    inputs = before + gap * np.arange(n)  # canvas positions of the input pixels
    return SimpleNamespace(**locals())


@dataclass(frozen=True)
class ConvGeometry:
    """A 2-D conv (``transposed``: ConvTranspose2d) on a ``size`` input; ints become (h, w)."""

    size: int | Pair
    kernel: int | Pair = 3
    stride: int | Pair = 1
    padding: int | Pair = 0
    dilation: int | Pair = 1
    transposed: bool = False
    output_padding: int | Pair = 0

    def __post_init__(self) -> None:
        for name in ("size", "kernel", "stride", "padding", "dilation", "output_padding"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value, value) if isinstance(value, int) else value)
        if min(*self.size, *self.kernel, *self.stride, *self.dilation) < 1:
            raise ValueError("ConvGeometry: size, kernel, stride and dilation must be >= 1")
        for a in self.axes:
            if a.transposed and not (0 <= a.p < a.span and 0 <= a.op < max(a.s, a.d)):
                raise ValueError("ConvGeometry: a transposed conv needs 0 <= padding < "
                                 "dilation*(kernel-1)+1 and 0 <= output_padding < max(stride, "
                                 "dilation)")
            if not a.transposed and (a.p < 0 or a.op or a.length < a.span):
                raise ValueError(f"ConvGeometry: the kernel spans {a.span} cells but the padded "
                                 f"input has {a.length} (padding >= 0; output_padding is for "
                                 "transposed convs)")

    @property
    def axes(self) -> tuple[SimpleNamespace, SimpleNamespace]:
        fields = zip(self.size, self.kernel, self.stride, self.padding, self.dilation,
                     self.output_padding, strict=True)  # fmt: skip
        return tuple(_axis(*f, self.transposed) for f in fields)  # type: ignore[return-value]

    @property
    def canvas_shape(self) -> Pair:
        return self.axes[0].length, self.axes[1].length

    @property
    def output_shape(self) -> Pair:
        return self.axes[0].out, self.axes[1].out

    def describe(self) -> str:
        """E.g. ``3x3 kernel, stride 2, padding 1: 5x5 -> 3x3``."""
        parts = [("transposed, " if self.transposed else "") + "{}x{} kernel".format(*self.kernel)]
        for name in ("stride", "padding", "dilation", "output_padding"):
            a, b = getattr(self, name)
            if (a, b) != ((0, 0) if "padding" in name else (1, 1)):
                parts.append(f"{name.replace('_', ' ')} {a if a == b else f'{a},{b}'}")
        return "{}: {}x{} -> {}x{}".format(", ".join(parts), *self.size, *self.output_shape)


def canvas_cells(geom: ConvGeometry) -> np.ndarray:
    """The canvas as an int array of ``CELL_INPUT``, ``CELL_PADDING`` or ``CELL_INSERTED``."""
    codes = []
    for a in geom.axes:
        line = np.full(a.length, CELL_PADDING)
        line[a.before : a.inputs[-1] + 1] = CELL_INSERTED
        line[a.inputs] = CELL_INPUT
        codes.append(line)
    rows, cols = codes[0][:, None], codes[1][None, :]
    return np.where((rows == CELL_PADDING) | (cols == CELL_PADDING), CELL_PADDING,
                    np.where((rows == CELL_INPUT) & (cols == CELL_INPUT), CELL_INPUT,
                             CELL_INSERTED))  # fmt: skip


def kernel_taps(geom: ConvGeometry, i: int, j: int) -> list[tuple[int, int]]:
    """Canvas cells under the kernel's taps, in kernel order, when it computes output ``(i, j)``."""
    ho, wo = geom.output_shape
    if not (0 <= i < ho and 0 <= j < wo):
        raise ValueError(f"output ({i}, {j}) is outside the {ho}x{wo} output")
    r, c = geom.axes
    return [(i * r.step + a * r.d, j * c.step + b * c.d) for a in range(r.k) for b in range(c.k)]


def conv_by_taps(x: np.ndarray, w: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """One-channel conv of ``x`` with weight ``w`` over exactly the drawn taps (flipped if
    transposed)."""
    canvas = np.zeros(geom.canvas_shape)
    canvas[np.ix_(geom.axes[0].inputs, geom.axes[1].inputs)] = x
    w = np.asarray(w)[::-1, ::-1] if geom.transposed else np.asarray(w)
    ho, wo = geom.output_shape
    taps = [kernel_taps(geom, i, j) for i in range(ho) for j in range(wo)]
    return np.array([sum(canvas[t] * v for t, v in zip(ts, w.flat, strict=True)) for ts in taps]
                    ).reshape(ho, wo)  # fmt: skip


def _square(ax: Axes, x: float, y: float, size: float = 1.0, **style) -> None:
    ax.add_patch(Rectangle((x + 0.04, y + 0.04), size - 0.08, size - 0.08, **style))


def _frame(ax: Axes, width: float, height: float) -> None:
    ax.set(xlim=(-0.15, width + 0.15), ylim=(height + 0.15, -0.15), aspect="equal")
    ax.set(xticks=[], yticks=[])
    ax.spines[:].set_visible(False)


def draw_conv(geom: ConvGeometry, positions: Sequence[Pair] | None = None,
              fig: Figure | SubFigure | None = None) -> Figure | SubFigure:
    """A filmstrip: per output position, the canvas with the taps above and the output below."""
    (hc, wc), (ho, wo) = geom.canvas_shape, geom.output_shape
    if positions is None:  # the first two outputs, the middle one and the last
        last = ho * wo - 1
        steps = range(last + 1) if last < 4 else [0, 1, max(2, last // 2), last]
        positions = [divmod(t, wo) for t in steps]
    taps = [kernel_taps(geom, i, j) for i, j in positions]  # raises for an outside position
    if fig is None:
        width = len(positions) * max(1.6, wc * _CELL_IN + 0.35)
        fig = new_figure(max(4.0, width), (hc + ho) * _CELL_IN + 1.4)
    axes = fig.subplots(2, len(positions), squeeze=False, gridspec_kw={"height_ratios": [hc, ho]})
    cells = canvas_cells(geom)
    r, c = geom.axes
    for k, ((i, j), tap) in enumerate(zip(positions, taps, strict=True)):
        top, bottom = axes[:, k]
        for (y, x), code in np.ndenumerate(cells):
            _square(top, x, y, **_STYLE[int(code)])
        for y, x in tap:  # smaller than a cell: the ring around a tap shows what it reads
            _square(top, x + 0.2, y + 0.2, 0.6, facecolor=_TAP)
        top.add_patch(Rectangle(tap[0][::-1], c.span, r.span, fill=False, edgecolor=_TAP, lw=1.6))
        for y in range(ho):
            for x in range(wo):
                colour = _CURRENT if (y, x) == (i, j) else _DONE if (y, x) < (i, j) else _OUTPUT
                _square(bottom, x + (wc - wo) / 2, y, facecolor=colour)
        _frame(top, wc, hc)
        _frame(bottom, wc, ho)
        top.set_title(f"output ({i}, {j}), step {i * wo + j + 1}/{ho * wo}", fontsize=8)
    axes[0, 0].set_ylabel("spread input" if geom.transposed else "input", fontsize=9)
    axes[1, 0].set_ylabel("output", fontsize=9)
    fig.suptitle(geom.describe(), fontsize=10)
    handles = [Patch(**_STYLE[code], label=_LABELS[code]) for code in sorted(set(cells.flat))]
    handles += [Patch(facecolor=col, label=label) for col, label in
                ((_TAP, "kernel tap"), (_DONE, "output, done"), (_CURRENT, "output, computing"))]
    ncol = min(len(handles), max(2, int(fig.figure.get_figwidth() / 1.3)))
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=7.5, frameon=False)
    return fig


def _grid(ax: Axes, n: int, x0: float, y0: float, colour: str, mark=(), k: int = 1) -> None:
    """An n x n map at (x0, y0), pale; the k x k cells from ``mark`` (row, col) in full colour."""
    for y in range(n):
        for x in range(n):
            _square(ax, x0 + x, y0 + y, facecolor=colour, alpha=0.25, edgecolor="white")
    for i, j in mark:
        _square(ax, x0 + j, y0 + i, k, facecolor=colour, alpha=0.85)
        ax.add_patch(Rectangle((x0 + j, y0 + i), k, k, fill=False, edgecolor="black", lw=1.2))


def draw_channels(c_in=3, c_out=4, size=5, kernel=3, separable=False) -> Figure:
    """A conv's channel wiring (unpadded, stride 1), standard or depthwise-separable, with its
    weight count in the title."""
    n = size - kernel + 1
    if n < 1:
        raise ValueError(f"a {kernel}x{kernel} kernel does not fit a {size}x{size} input")
    colours = [_CHANNELS[c % len(_CHANNELS)] for c in range(c_in)]
    gap, mid = 1.2, 1 + n // 2  # the drawn output is (mid - 1, mid - 1): the centre
    height = max(c_in, c_out) * (size + gap)
    x_mid, x_out = size + 3.0, size + kernel * c_in + 6.0
    fig = new_figure(min(10.0, (x_out + n) * 0.3 + 0.6), height * 0.3 + 1.0)
    ax = fig.subplots()
    for c in range(c_in):
        y = c * (size + gap)
        _grid(ax, size, 0, y, colours[c], [(mid - 1, mid - 1)], kernel)
        if separable:  # the depthwise filter of this channel, and the map it makes
            _grid(ax, kernel, x_mid, y, colours[c], [(0, 0)], kernel)
            _grid(ax, n, x_mid + kernel + 1, y, colours[c], [(mid - 1, mid - 1)])
            ax.plot([x_mid + kernel + mid, x_out + mid - 0.5], [y + mid - 0.5, mid - 0.5],
                    color=colours[c], ls="--")  # fmt: skip
    for o in range(c_out):
        y = o * (size + gap)
        _grid(ax, n, x_out, y, "#525252", [(mid - 1, mid - 1)] if o == 0 else ())
        for c in range(c_in * (not separable)):  # filter o: a k x k slice per input channel
            _grid(ax, kernel, x_mid + c * kernel, y, colours[c] if o == 0 else "#969696",
                  [(0, 0)], kernel)  # fmt: skip
    std, dw, pw = c_in * c_out * kernel**2, c_in * kernel**2, c_in * c_out
    title = (f"depthwise {dw} + pointwise {pw} = {dw + pw} weights; a standard conv: {std}"
             if separable else f"{c_out} filters of {kernel}x{kernel}x{c_in} = {std} weights")
    labels = ("input", "depthwise filters, maps" if separable else f"{c_out} filters", "output")
    for x, label in zip((size / 2, x_mid + kernel, x_out + n / 2), labels, strict=True):
        ax.text(x, -0.6, label, ha="center", va="bottom", fontsize=8)
    _frame(ax, x_out + n, height)
    ax.set_ylim(height, -2.0)
    fig.suptitle(title, fontsize=10)
    return fig


PRESETS: dict[str, ConvGeometry] = {
    "standard 3x3": ConvGeometry(5, 3),
    "3x3, padding 1": ConvGeometry(5, 3, padding=1),
    "3x3, stride 2, padding 1": ConvGeometry(5, 3, stride=2, padding=1),
    "pointwise 1x1": ConvGeometry(4, 1),
    "dilated 3x3, dilation 2": ConvGeometry(7, 3, dilation=2),
    "spatial-separable 3x1": ConvGeometry(5, (3, 1), padding=(1, 0)),
    "transposed 3x3, stride 2": ConvGeometry(3, 3, stride=2, transposed=True),
}


def conv_explorer() -> Interactive:
    """A dropdown of ``PRESETS`` and a slider over the kernel's position; redraws one panel."""

    def last_step(name: str) -> int:
        return int(np.prod(PRESETS[name].output_shape)) - 1

    first = next(iter(PRESETS))
    choice = widgets.Dropdown(options=list(PRESETS), value=first, description="conv")
    slider = widgets.IntSlider(0, 0, last_step(first), description="step", continuous_update=False)

    def draw(conv: str, step: int) -> Figure:
        geom = PRESETS[conv]
        (hc, wc), (ho, wo) = geom.canvas_shape, geom.output_shape
        fig = redraw_figure(max(4.0, wc * 0.38 + 0.8), (hc + ho) * 0.38 + 1.6)
        # The slider's maximum follows the dropdown just after this call.
        draw_conv(geom, positions=[divmod(min(step, last_step(conv)), wo)], fig=fig)
        show_figure(fig)
        return fig

    def summary(w: Interactive) -> str:
        conv, step = (c.value for c in w.kwargs_widgets)
        where = f"{conv}, step {step + 1} of {last_step(conv) + 1}"
        return f"Convolution explorer: {where}. Run the cell in Jupyter to use it."

    w = Interactive(draw, summary, conv=choice, step=slider)
    choice.observe(lambda change: setattr(slider, "max", last_step(change["new"])), names="value")
    return w
