"""What every course widget shares (lessons 01-03), on ipywidgets 7.7 (Colab) and 8.x alike.

A widget's figure is never registered with pyplot: JupyterLab 4.4+ with ipykernel 7 handles
widget messages in a second thread whose inline backend closes every pyplot figure after each
message, so a pyplot figure drawn by a callback could be shown blank or half-drawn. A figure
that pyplot does not know is shown once, by its callback, inside the widget's Output area.
"""

from __future__ import annotations

import ipywidgets as widgets
from IPython.display import display
from matplotlib.figure import Figure

from .plots import new_figure

IPYWIDGETS_MAJOR = int(widgets.__version__.split(".")[0])
MAX_SUMMARY = 110  # IPython and ipywidgets cut a widget's text/plain at 110 characters


def redraw_figure(width: float, height: float) -> Figure:
    """A new figure for one redraw of a widget: constrained layout, not tracked by pyplot."""
    return new_figure(width, height)


def show_figure(fig: Figure) -> None:
    """Show ``fig`` in the current output (a widget's Output area, in a callback)."""
    display(fig)


class Interactive(widgets.interactive):
    """``widgets.interactive`` that draws at once on 7.7 as on 8.x, and whose ``repr`` (the
    text/plain a notebook stores) is ``summary(self)``, shown where the widget cannot be."""

    def __init__(self, f, summary, **controls) -> None:
        self._summary = summary
        super().__init__(f, **controls)
        if IPYWIDGETS_MAJOR < 8:  # 7.x draws only when displayed: draw now, not again then
            self.on_displayed(self.update, remove=True)
            self.update()

    def __repr__(self) -> str:
        return self._summary(self)[:MAX_SUMMARY]
