"""What every course widget shares (lessons 01-03), on ipywidgets 7.7 (Colab) and 8.x alike.

A widget's figure is never pyplot's: in JupyterLab 4.4+ with ipykernel 7 a second thread handles
widget messages and its inline backend closes every pyplot figure after each one, so a pyplot
figure being drawn by a callback could be shown blank. The callback shows its own figure, once.
"""

from __future__ import annotations

import ipywidgets as widgets
from IPython.display import display
from matplotlib.figure import Figure

from .plots import new_figure

IPYWIDGETS_MAJOR = int(widgets.__version__.split(".")[0])
MAX_SUMMARY = 110  # IPython and ipywidgets cut a widget's text/plain at 110 characters
redraw_figure = new_figure  # a new figure for one redraw: constrained layout, not pyplot's


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
