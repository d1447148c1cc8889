"""Lesson 02's widgets (ipywidgets 7.7 and 8) over tested pure functions: a dilation explorer
(``explore_dilation``) and a layer-by-layer receptive-field calculator (``rf_report``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import ipywidgets as widgets
import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from .receptive_field import LayerSpec, RFRow, format_rf_table, stack_footprint, table_from_specs
from .widget_support import Interactive, redraw_figure, show_figure

MAX_GRID = 121  # a wider footprint is drawn as one row of path counts: a grid would be unreadable


class Exploration(NamedTuple):
    """Path counts along a row for one kernel and the stack, the RF per depth, the share seen."""

    taps: np.ndarray
    paths: np.ndarray
    growth: list[int]
    seen: float


def explore_dilation(kernel: int, dilation: int, stride: int, n_layers: int) -> Exploration:
    """Taps, footprint and RF growth of ``n_layers`` identical unpadded convs. Used in lesson 02."""
    if min(kernel, dilation, stride, n_layers) < 1:
        raise ValueError("explore_dilation: every setting must be at least 1, got kernel "
                         f"{kernel}, dilation {dilation}, stride {stride}, {n_layers} layers")
    stack = [LayerSpec("conv", kernel, stride, dilation=dilation)] * n_layers
    growth = [len(stack_footprint(stack[:i])) for i in range(n_layers + 1)]
    paths = stack_footprint(stack)
    seen = float(np.mean(paths > 0)) ** 2  # square kernels treat rows and columns alike
    return Exploration(stack_footprint(stack[:1]), paths, growth, seen)


def rf_report(specs: Sequence[LayerSpec], input_size: int = 32) -> tuple[list[RFRow], str]:
    """The rows of ``specs`` on a square input and their table, or no rows and a message naming
    the layer that does not fit."""
    if not specs:
        return [], "No layers yet: choose one above and press 'Add layer'."
    try:
        rows = table_from_specs(specs, input_size)
    except ValueError as exc:
        hint = "Try a smaller kernel or dilation, more padding, or a larger input."
        return [], f"This stack does not fit: {exc}. {hint}"
    return rows, format_rf_table(rows)


def draw_footprint(ax: Axes, paths: np.ndarray, title: str = "") -> None:
    """Path counts along a row, drawn on a pixel grid as their outer product (white: no path),
    or as one row when wider than ``MAX_GRID``."""
    wide = len(paths) > MAX_GRID
    grid = np.ma.masked_equal(paths[None, :] if wide else np.outer(paths, paths), 0)
    top = max(int(grid.max()), 1)  # the scale starts below 0: a single path is still blue
    kw = {"cmap": "Blues", "vmin": -0.3 * top, "vmax": top, "interpolation": "nearest"}
    ax.imshow(grid, aspect="auto" if wide else "equal", **kw)
    if len(paths) <= 40:  # pixel borders help only while pixels are big enough to see
        ax.set_xticks(np.arange(-0.5, grid.shape[1]), minor=True)
        ax.set_yticks(np.arange(-0.5, grid.shape[0]), minor=True)
        ax.grid(which="minor", color="0.85", linewidth=0.5)
        ax.tick_params(which="minor", length=0)
    ax.set(xticks=[], yticks=[])
    ax.set_title(title + "\n(one row: too wide for a grid)" * wide, fontsize=10)


def make_dilation_explorer(kernel=3, dilation=2, stride=1, n_layers=3) -> Interactive:
    """Sliders for kernel, dilation, stride and layers over one kernel's taps, the stack's
    footprint and its RF growth; ``w.result`` is the last ``Exploration``."""
    explore_dilation(kernel, dilation, stride, n_layers)  # bad start values fail here, clearly

    def draw(kernel: int, dilation: int, stride: int, n_layers: int) -> Exploration:
        ex = explore_dilation(kernel, dilation, stride, n_layers)
        fig = redraw_figure(12, 4)
        ax_k, ax_s, ax_g = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1.3, 1.3]})
        span, rf = len(ex.taps), ex.growth[-1]
        kernels = f"one {kernel}x{kernel} kernel, dilation {dilation}"
        draw_footprint(ax_k, ex.taps, f"{kernels}\nspans {span}x{span} pixels")
        stack = f"{n_layers} such layers, stride {stride}: RF {rf}"
        draw_footprint(ax_s, ex.paths, f"{stack}\nthe unit sees {ex.seen:.0%} of that square")
        dense = explore_dilation(kernel, 1, stride, n_layers).growth
        ax_g.plot(dense, "s--", color="0.5", label="no dilation")
        ax_g.plot(ex.growth, "o-", label=f"dilation {dilation}")
        ax_g.set(xlabel="layers", ylabel="receptive field (pixels)", title="RF growth")
        ax_g.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_g.legend(loc="upper left")
        show_figure(fig)
        return ex

    def summary(w: Interactive) -> str:
        k, d, s, n = (c.value for c in w.kwargs_widgets)
        rf = explore_dilation(k, d, s, n).growth[-1]
        return (f"Dilation explorer: kernel {k}, dilation {d}, stride {s}, {n} layers, RF {rf}. "
                "Run the cell to use it.")

    # (start, slider maximum) per setting; the maximum grows to take a larger start
    starts = {"kernel": (kernel, 7), "dilation": (dilation, 8), "stride": (stride, 3)}
    starts["n_layers"] = (n_layers, 6)
    sliders = {name: widgets.IntSlider(value, 1, max(top, value), continuous_update=False,
                                       description=name.removeprefix("n_"))
               for name, (value, top) in starts.items()}  # fmt: skip
    return Interactive(draw, summary, **sliders)


class RFCalculator(widgets.VBox):
    """Build a stack layer by layer and read its RF table: ``specs``, its ``rf_report`` in
    ``rows`` and ``text``, and ``message``, the note on a refused layer."""

    def __init__(self, specs: Sequence[LayerSpec] = (), input_size: int = 32) -> None:
        box = {"style": {"description_width": "55px"}, "layout": widgets.Layout(width="150px")}

        def number(value: int, lo: int, hi: int, label: str) -> widgets.BoundedIntText:
            return widgets.BoundedIntText(value=value, min=lo, max=hi, description=label, **box)

        kinds = ("conv", "maxpool", "avgpool")
        self.kind = widgets.Dropdown(options=kinds, description="layer", **box)
        self.kernel = number(3, 1, 64, "kernel")
        self.stride = number(1, 1, 16, "stride")
        self.padding = number(0, 0, 64, "padding")
        self.dilation = number(1, 1, 64, "dilation")
        self.input_size = number(input_size, 1, 4096, "input")
        self.add_button = widgets.Button(description="Add layer", button_style="primary")
        self.remove_button = widgets.Button(description="Remove last")
        self.clear_button = widgets.Button(description="Clear")
        self.out = widgets.Output()
        self.specs = list(specs)
        self.kind.observe(self._kind_changed, names="value")
        self.input_size.observe(lambda _: self.refresh(self.specs), names="value")
        self.add_button.on_click(self.add)
        self.remove_button.on_click(lambda _: self.refresh(self.specs[:-1]))
        self.clear_button.on_click(lambda _: self.refresh([]))
        boxes = [self.kind, self.kernel, self.stride, self.padding, self.dilation, self.input_size]
        buttons = [self.add_button, self.remove_button, self.clear_button]
        rows = [widgets.HBox(boxes[:3]), widgets.HBox(boxes[3:]), widgets.HBox(buttons)]
        super().__init__([*rows, self.out])
        self.refresh(self.specs)
        if self.specs and not self.rows:
            raise ValueError(f"make_rf_calculator: {self.text}")

    def __repr__(self) -> str:  # the text a notebook stores where the widget cannot be drawn
        rf = f", RF {self.rows[-1].r_out}" if self.rows else ""
        return (f"RF calculator: {len(self.specs)} layers{rf} on a {self.input_size.value} px "
                "input. Run the cell in Jupyter to add layers.")

    def _kind_changed(self, change) -> None:
        # average pooling has no dilation: keep the box at 1 rather than refuse the layer later
        self.dilation.disabled = change["new"] == "avgpool"
        self.dilation.value = 1 if self.dilation.disabled else self.dilation.value

    def add(self, _=None) -> None:
        """Append the layer the controls describe, unless the stack would then not fit its input."""
        boxes = (self.kernel, self.stride, self.padding, self.dilation)
        specs = [*self.specs, LayerSpec(self.kind.value, *(b.value for b in boxes))]
        rows, text = rf_report(specs, self.input_size.value)
        if rows:
            self.refresh(specs)
        else:
            self.refresh(self.specs, f"Not added. {text}")

    def refresh(self, specs: Sequence[LayerSpec], message: str = "") -> None:
        """Show ``specs``: the note, the table (or why it does not fit) and the last footprint."""
        self.specs, self.message = list(specs), message
        self.rows, self.text = rf_report(self.specs, self.input_size.value)
        with self.out:
            self.out.clear_output(wait=True)
            print(f"{message}\n{self.text}".strip())
            if self.rows:
                fig = redraw_figure(4, 4)
                last = self.rows[-1]
                title = f"input pixels seen by one unit of {last.name}: RF {last.r_out}"
                draw_footprint(fig.subplots(), stack_footprint(self.specs), title)
                show_figure(fig)


def make_rf_calculator(specs: Sequence[LayerSpec] = (), input_size: int = 32) -> RFCalculator:
    """An RF calculator starting from ``specs``."""
    return RFCalculator(specs, input_size)
