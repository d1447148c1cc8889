"""Receptive-field widgets: a dilation explorer and a layer-by-layer RF calculator.

Both are thin layers over pure functions that the tests check without a display:
``explore_dilation`` (one kernel's taps, the footprint of a stack of identical layers, the RF
growth) and ``rf_report`` (the RF table of a list of ``LayerSpec`` or a friendly message when the
stack does not fit its input). The drawing functions return pyplot figures; a caller ends with
``plt.show()``. Only built-in ipywidgets (7.7 or 8.x) and inline matplotlib, so they work in
JupyterLab and Colab. The widgets draw into figures that pyplot does not track (see
``course_lib.widget_support``: a pyplot figure could be closed half-drawn by the kernel's other
thread).

Used in lesson 02.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

from .receptive_field import (
    LayerSpec,
    RFRow,
    dilation_footprint,
    format_rf_table,
    receptive_field_table,
    rf_growth,
    stack_footprint,
    table_from_specs,
)
from .widget_support import Interactive, redraw_figure, show_figure

__all__ = [
    "Exploration",
    "RFReport",
    "RFCalculator",
    "explore_dilation",
    "rf_report",
    "specs_from_model",
    "draw_footprint",
    "footprint_steps_figure",
    "explorer_figure",
    "erf_profile_figure",
    "make_dilation_explorer",
    "make_rf_calculator",
]

# Fields wider than this are drawn as one row of path counts instead of a 2-D grid: a grid of
# thousands of pixels per side would be unreadable and, as an outer product, huge.
MAX_GRID = 121
_KINDS = ("conv", "maxpool", "avgpool")


# ---------------------------------------------------------------- pure functions


@dataclass(frozen=True, eq=False)
class Exploration:
    """What the dilation explorer shows for one setting.

    ``kernel_taps``: one kernel's taps (2-D 0/1); ``paths``: for one output unit of the stack,
    the number of paths from each input pixel along a row (1-D; 0 marks a hole); ``growth``: the
    RF after 0, 1, ... layers; ``seen``: the fraction of the field's square that the unit sees.
    """

    kernel: int
    dilation: int
    stride: int
    n_layers: int
    kernel_taps: np.ndarray
    paths: np.ndarray
    growth: list[int]

    @property
    def rf(self) -> int:
        return self.growth[-1]

    @property
    def seen(self) -> float:
        # Square kernels act on rows and columns independently, so the 2-D share is squared.
        return float(np.count_nonzero(self.paths) / len(self.paths)) ** 2


def explore_dilation(kernel: int, dilation: int, stride: int, n_layers: int) -> Exploration:
    """Taps, footprint and RF growth of ``n_layers`` identical unpadded conv layers.

    Used in lesson 02.
    """
    if n_layers < 1:
        raise ValueError(f"explore_dilation: n_layers must be at least 1, got {n_layers}")
    spec = LayerSpec("conv", kernel=kernel, stride=stride, dilation=dilation)
    return Exploration(
        kernel,
        dilation,
        stride,
        n_layers,
        kernel_taps=dilation_footprint(kernel, dilation),
        paths=stack_footprint([spec] * n_layers, ndim=1, counts=True),
        growth=rf_growth(kernel, dilation, stride, n_layers),
    )


@dataclass(frozen=True)
class RFReport:
    """The calculator's answer for one stack: its rows and table text, or an error message."""

    rows: list[RFRow]
    text: str
    error: str | None = None


def rf_report(specs: Sequence[LayerSpec], input_size: int = 32) -> RFReport:
    """The RF table of ``specs`` on a square input, as rows and text; never raises ValueError.

    A stack that does not fit (a kernel wider than its padded input, a dilated average pool...)
    gives no rows and a message in ``error`` that names the layer and suggests a fix.

    Used in lesson 02.
    """
    if input_size < 1:
        return RFReport(
            [], "", f"The input size must be a positive number of pixels, not {input_size}."
        )
    try:
        rows = table_from_specs(specs, input_size)
    except ValueError as exc:
        reason = str(exc).removeprefix("table_from_specs: ")
        hint = (
            "Try a smaller kernel or dilation, more padding, or a larger input."
            if "larger than the padded input" in reason
            else "Change that layer's settings."
        )
        return RFReport([], "", f"This stack does not fit: {reason}. {hint}")
    if not rows:
        return RFReport([], "No layers yet: choose one above and press 'Add layer'.")
    return RFReport(rows, format_rf_table(rows))


_MODULE_KINDS = ((nn.Conv2d, "conv"), (nn.MaxPool2d, "maxpool"), (nn.AvgPool2d, "avgpool"))


def specs_from_model(model: nn.Module, input_size=(3, 32, 32)) -> list[LayerSpec]:
    """The model's spatial layers, in forward order, as ``LayerSpec`` for the calculator.

    Skip connections are dropped: the calculator treats the model as a plain chain, which has
    the same receptive field when, as in residual blocks, the conv path is the wider one.

    Used in lesson 02.
    """
    modules = dict(model.named_modules())
    specs = []
    for row in receptive_field_table(model, input_size):
        module = modules.get(row.name)
        kind = next((k for cls, k in _MODULE_KINDS if isinstance(module, cls)), None)
        if kind is None:
            what = type(module).__name__ if module is not None else "a call in forward"
            raise ValueError(
                f"specs_from_model: layer '{row.name}' is {what}; the calculator knows only "
                "Conv2d, MaxPool2d and AvgPool2d modules"
            )
        if row.r_out_hw[0] != row.r_out_hw[1]:
            raise ValueError(f"specs_from_model: layer '{row.name}' is not square")
        specs.append(LayerSpec(kind, row.kernel, row.stride, row.padding, row.dilation, row.name))
    return specs


# ---------------------------------------------------------------- drawing


def draw_footprint(ax: Axes, paths: np.ndarray, title: str = "") -> None:
    """Draw a footprint on a pixel grid: colour = number of paths, white = never seen.

    ``paths`` is 2-D, or 1-D (one row; drawn as a grid via the outer product when it is at
    most ``MAX_GRID`` wide, else as a curve). Used in lesson 02.
    """
    p = np.asarray(paths)
    if p.ndim == 1 and len(p) > MAX_GRID:
        ax.fill_between(np.arange(len(p)), p, step="mid", color="tab:blue", alpha=0.7)
        ax.set(xlabel="input pixel (one row)", ylabel="paths", xlim=(0, len(p) - 1))
        ax.set_title(
            title + ("\n" if title else "") + "(too wide for a grid: one row)", fontsize=10
        )
        return
    grid = np.outer(p, p) if p.ndim == 1 else p
    top = max(int(grid.max()), 1)
    # Start the colour scale below zero so that a single path is still clearly blue, not white.
    ax.imshow(
        np.ma.masked_equal(grid, 0),
        cmap="Blues",
        vmin=-0.3 * top,
        vmax=top,
        interpolation="nearest",
    )
    side = max(grid.shape)
    if side <= 40:  # pixel borders help only while pixels are big enough to see
        ax.set_xticks(np.arange(-0.5, grid.shape[1]), minor=True)
        ax.set_yticks(np.arange(-0.5, grid.shape[0]), minor=True)
        ax.grid(which="minor", color="0.85", linewidth=0.5)
        ax.tick_params(which="minor", length=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)


def _centred(p: np.ndarray, side: int) -> np.ndarray:
    lo = (side - len(p)) // 2
    out = np.zeros(side, dtype=p.dtype)
    out[lo : lo + len(p)] = p
    return out


def footprint_steps_figure(specs: Sequence[LayerSpec]) -> Figure:
    """One panel per layer: which input pixels one unit after that layer sees, on one scale.

    Used in lesson 02.
    """
    if not specs:
        raise ValueError("footprint_steps_figure: specs is empty; give at least one layer")
    final = stack_footprint(specs, ndim=1, counts=True)
    fig, axes = plt.subplots(
        1, len(specs), figsize=(2.3 * len(specs), 2.8), layout="constrained", squeeze=False
    )
    jump = 1
    for i, (ax, spec) in enumerate(zip(axes[0], specs, strict=True)):
        jump *= spec.stride
        paths = stack_footprint(specs[: i + 1], ndim=1, counts=True)
        name = spec.name or f"{spec.kind}{i + 1}"  # the names table_from_specs gives
        title = f"after {name}\nRF {len(paths)}, jump {jump}"
        draw_footprint(ax, _centred(paths, len(final)), title)
    fig.suptitle("Input pixels seen by one unit (colour: number of paths)", fontsize=11)
    return fig


def explorer_figure(ex: Exploration) -> Figure:
    """The explorer's three panels: one kernel's taps, the stack's footprint, the RF growth.

    Used in lesson 02.
    """
    fig = plt.figure(figsize=EXPLORER_SIZE, layout="constrained")
    _draw_explorer(fig, ex)
    return fig


EXPLORER_SIZE = (12, 4)


def _draw_explorer(fig: Figure, ex: Exploration) -> None:
    ax_k, ax_s, ax_g = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1.3, 1.3]})
    eff = ex.dilation * (ex.kernel - 1) + 1
    draw_footprint(ax_k, ex.kernel_taps, f"one {ex.kernel}x{ex.kernel} kernel, dilation "
                   f"{ex.dilation}\nspans {eff}x{eff} pixels")  # fmt: skip
    draw_footprint(ax_s, ex.paths, f"{ex.n_layers} such layers, stride {ex.stride}: RF {ex.rf}\n"
                   f"the unit sees {ex.seen:.0%} of that square")  # fmt: skip
    layers = np.arange(ex.n_layers + 1)
    ax_g.plot(layers, ex.growth, "o-", label=f"dilation {ex.dilation}")
    if ex.dilation > 1:
        dense = rf_growth(ex.kernel, 1, ex.stride, ex.n_layers)
        ax_g.plot(layers, dense, "s--", color="0.5", label="dilation 1")
    ax_g.set(xlabel="layers", ylabel="receptive field (pixels)", title="RF growth")
    ax_g.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax_g.legend(loc="upper left")


def erf_profile_figure(erf, fields: dict[str, int]) -> Figure:
    """An effective-RF map summed over its rows, on a log scale, with the named fields marked.

    ``fields`` maps a label to a field width in pixels (the theoretical RF, say); each is drawn
    as a pair of vertical lines centred on the map's centre of mass. Used in lesson 02.
    """
    e = np.abs(np.asarray(erf, dtype=float))
    if e.ndim != 2 or not e.sum() > 0:
        raise ValueError(f"erf_profile_figure: erf must be a non-zero 2-D map, got shape {e.shape}")
    profile = e.sum(0) / e.sum(0).max()
    centre = float((np.arange(len(profile)) * profile).sum() / profile.sum())
    fig, ax = plt.subplots(figsize=(8, 3.2), layout="constrained")
    ax.semilogy(np.arange(len(profile)), np.where(profile > 0, profile, np.nan), ".-", color="k")
    for i, (label, side) in enumerate(fields.items()):
        colour = f"C{i + 1}"
        for x in (round(centre) - side / 2, round(centre) + side / 2):
            ax.axvline(
                x, color=colour, linestyle="--", label=f"{label}: {side} px" if x < centre else None
            )
    ax.set(
        xlabel="input column (pixels)", ylabel="ERF, summed over rows", xlim=(0, len(profile) - 1)
    )
    ax.set_title("Effective RF across the input (log scale)", fontsize=11)
    ax.legend(loc="lower center", fontsize=9)
    return fig


# ---------------------------------------------------------------- widgets


def make_dilation_explorer(
    kernel: int = 3, dilation: int = 2, stride: int = 1, n_layers: int = 3
) -> Interactive:
    """Sliders for kernel size, dilation, stride and number of layers; redraws the explorer.

    ``w.kwargs_widgets`` are the sliders in that order; ``w.result`` is the last
    ``Exploration``. Used in lesson 02.
    """
    explore_dilation(kernel, dilation, stride, n_layers)  # bad start values fail here, clearly

    def draw(kernel: int, dilation: int, stride: int, n_layers: int) -> Exploration:
        ex = explore_dilation(kernel, dilation, stride, n_layers)
        fig = redraw_figure(*EXPLORER_SIZE)
        _draw_explorer(fig, ex)
        show_figure(fig)
        return ex

    def summary(w: Interactive) -> str:
        k, d, s, n = (c.value for c in w.kwargs_widgets)
        rf = rf_growth(k, d, s, n)[-1]
        return (
            f"Dilation explorer: kernel {k}, dilation {d}, stride {s}, {n} layers, RF {rf}. "
            "Run the cell to use it."
        )

    def slider(value: int, lo: int, hi: int, label: str) -> widgets.IntSlider:
        return widgets.IntSlider(
            value=value, min=lo, max=max(hi, value), description=label, continuous_update=False
        )

    return Interactive(
        draw,
        summary,
        kernel=slider(kernel, 1, 7, "kernel"),
        dilation=slider(dilation, 1, 8, "dilation"),
        stride=slider(stride, 1, 3, "stride"),
        n_layers=slider(n_layers, 1, 6, "layers"),
    )


class RFCalculator(widgets.VBox):
    """Build a stack layer by layer and read its RF table. Make one with ``make_rf_calculator``.

    ``specs`` is the current stack, ``report`` its last ``RFReport`` and ``message`` the last
    note shown above the table (a refused layer, say). Used in lesson 02.
    """

    def __init__(self, specs: Sequence[LayerSpec] = (), input_size: int = 32) -> None:
        short = {"description_width": "55px"}
        box = widgets.Layout(width="150px")

        def number(value: int, lo: int, hi: int, label: str) -> widgets.BoundedIntText:
            return widgets.BoundedIntText(
                value=value, min=lo, max=hi, description=label, style=short, layout=box
            )

        self.kind = widgets.Dropdown(
            options=_KINDS, value="conv", description="layer", style=short, layout=box
        )
        self.kernel = number(3, 1, 64, "kernel")
        self.stride = number(1, 1, 16, "stride")
        self.padding = number(0, 0, 64, "padding")
        self.dilation = number(1, 1, 64, "dilation")
        self.input_size = number(input_size, 1, 4096, "input")
        self.add_button = widgets.Button(description="Add layer", button_style="primary")
        self.remove_button = widgets.Button(description="Remove last")
        self.clear_button = widgets.Button(description="Clear")
        self.out = widgets.Output()
        self.specs: list[LayerSpec] = list(specs)
        self.message = ""
        self.report = rf_report(self.specs, input_size)

        self.kind.observe(self._kind_changed, names="value")
        self.input_size.observe(lambda _: self.refresh(), names="value")
        self.add_button.on_click(self.add)
        self.remove_button.on_click(self.remove_last)
        self.clear_button.on_click(self.clear)
        super().__init__(
            [
                widgets.HBox([self.kind, self.kernel, self.stride]),
                widgets.HBox([self.padding, self.dilation, self.input_size]),
                widgets.HBox([self.add_button, self.remove_button, self.clear_button]),
                self.out,
            ]
        )
        self.refresh()

    def __repr__(self) -> str:
        # the text a notebook stores for the widget, shown where it cannot be drawn
        rf = f", RF {self.report.rows[-1].r_out}" if self.report.rows else ""
        return (
            f"RF calculator: {len(self.specs)} layers{rf} on a {self.input_size.value} px input. "
            "Run the cell in Jupyter to add layers."
        )

    def _kind_changed(self, change) -> None:
        # Average pooling has no dilation: keep the box at 1 instead of refusing the layer later.
        if change["new"] == "avgpool":
            self.dilation.value = 1
        self.dilation.disabled = change["new"] == "avgpool"

    def current_spec(self) -> LayerSpec:
        """The layer that the controls describe."""
        return LayerSpec(
            self.kind.value,
            self.kernel.value,
            self.stride.value,
            self.padding.value,
            self.dilation.value,
        )

    def add(self, _=None) -> None:
        """Append the layer from the controls, unless the stack would no longer fit."""
        trial = rf_report([*self.specs, self.current_spec()], self.input_size.value)
        if trial.error:
            self.message = f"Not added. {trial.error}"
        else:
            self.specs.append(self.current_spec())
            self.message = ""
        self.refresh(keep_message=True)

    def remove_last(self, _=None) -> None:
        if self.specs:
            self.specs.pop()
        self.refresh()

    def clear(self, _=None) -> None:
        self.specs.clear()
        self.refresh()

    def refresh(self, keep_message: bool = False) -> None:
        """Recompute the report and redraw the table and the footprint of the last unit."""
        if not keep_message:
            self.message = ""
        self.report = rf_report(self.specs, self.input_size.value)
        with self.out:
            self.out.clear_output(wait=True)
            for note in (self.message, self.report.error):
                if note:
                    print(note)
            if self.report.rows:
                print(self.report.text)
                last = self.report.rows[-1]
                fig = redraw_figure(4, 4)
                title = f"input pixels seen by one unit of {last.name}: RF {last.r_out}"
                paths = stack_footprint(self.specs, ndim=1, counts=True)
                draw_footprint(fig.subplots(), paths, title)
                show_figure(fig)
            elif not self.report.error:
                print(self.report.text)


def make_rf_calculator(specs: Sequence[LayerSpec] = (), input_size: int = 32) -> RFCalculator:
    """An RF calculator starting from ``specs`` (e.g. ``specs_from_model(model)``).

    Pick a layer kind and its kernel, stride, padding and dilation, then press 'Add layer';
    'Remove last' and 'Clear' undo. The table and the footprint update at once; a layer that
    does not fit is refused with a message in the output area. Used in lesson 02.
    """
    start = rf_report(specs, input_size)
    if start.error:
        raise ValueError(f"make_rf_calculator: {start.error}")
    return RFCalculator(specs, input_size)
