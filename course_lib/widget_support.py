"""What every course widget shares: ipywidgets 7.7 and 8.x alike, and figures off pyplot.

- ``Interactive``: ``widgets.interactive`` that draws at once on ipywidgets 7.7 as it does on
  8.x (7.7 waits until the widget is displayed, so ``w.result`` stays None until then) and
  that shows a readable line instead of ``interactive(children=(IntSlider(...`` wherever the
  widget cannot be drawn (a notebook that is not run yet, or not trusted).
- ``redraw_figure`` / ``show_figure``: a widget's figure is never registered with pyplot. JupyterLab
  4.4+ with ipykernel 7 handles widget messages in a second thread (a kernel subshell), and
  after each message that thread runs the inline backend's ``flush_figures``, which shows and
  then closes *every* pyplot figure (``plt.close("all")``). A pyplot figure being drawn by a
  callback in the main thread at that moment was closed half-drawn: the widget showed a blank
  or half-drawn figure. A figure that pyplot does not know cannot be closed or shown by anyone
  else; the callback shows it itself, once, inside its Output widget.

Only APIs that ipywidgets 7.7 and 8.x both have are used here and in the widgets.
"""

from __future__ import annotations

import ipywidgets as widgets
from IPython.display import display
from matplotlib.figure import Figure

from .plots import new_figure

__all__ = ["IPYWIDGETS_MAJOR", "Interactive", "redraw_figure", "show_figure"]

IPYWIDGETS_MAJOR = int(widgets.__version__.split(".")[0])
# IPython and ipywidgets cut a widget's text/plain at 110 characters; a summary must fit.
MAX_SUMMARY = 110


def redraw_figure(width: float, height: float) -> Figure:
    """A new figure for one redraw of a widget: constrained layout, not tracked by pyplot."""
    return new_figure(width, height)


def show_figure(fig: Figure) -> None:
    """Show ``fig`` in the current output (a widget's Output area, in a callback)."""
    display(fig)


class Interactive(widgets.interactive):
    """``widgets.interactive`` with the same start on ipywidgets 7.7 and 8.x, and a summary.

    ``summary(self)`` returns the one-line text shown where the widget itself cannot be (its
    ``repr``, stored as the notebook output's text/plain).
    """

    def __init__(self, f, summary, **controls) -> None:
        self._summary = summary
        super().__init__(f, **controls)
        if IPYWIDGETS_MAJOR < 8:
            # 7.x calls update() only when displayed; 8.x at once, which tests and w.result
            # rely on. Draw now, and not a second time on display.
            self.on_displayed(self.update, remove=True)
            self.update()

    def __repr__(self) -> str:
        return self._summary(self)[:MAX_SUMMARY]
