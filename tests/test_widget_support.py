"""Every course widget on ipywidgets 7.7 (Colab) and 8.x: install, start, text fallback, redraw.

`make test-widgets-7` runs this file and the widget tests with ipywidgets 7.7 shadowing 8.x
and EXPECT_IPYWIDGETS=7.7, so that run cannot silently test 8.x.
"""

import os
from pathlib import Path

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from packaging.requirements import Requirement

import course_lib.augment_widgets as augment_widgets
import course_lib.conv_drawing as conv_drawing
import course_lib.rf_widgets as rf_widgets
import course_lib.widget_support as widget_support

from .test_rf_widgets import EXAMPLE

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _images():
    return np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)


def make_all():
    """One of each course widget, as the lessons make them."""
    return {
        "conv explorer": conv_drawing.conv_explorer(),
        "dilation explorer": rf_widgets.make_dilation_explorer(),
        "rf calculator": rf_widgets.make_rf_calculator(EXAMPLE),
        "augmentation tuner": augment_widgets.make_augmentation_tuner(_images(), MEAN, STD, n=2),
    }


def test_the_expected_ipywidgets_is_the_one_under_test():
    expected = os.environ.get("EXPECT_IPYWIDGETS")
    if not expected:
        pytest.skip("set EXPECT_IPYWIDGETS=7.7 (make test-widgets-7) to pin the version")
    assert ipywidgets.__version__.startswith(expected + "."), ipywidgets.__file__


@pytest.mark.parametrize("version", ["7.7.1", "7.7.5", "8.0.0", "8.1.9"])
def test_course_lib_installs_beside_colabs_ipywidgets_without_upgrading_it(version):
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (req,) = [Requirement(d) for d in deps if Requirement(d).name == "ipywidgets"]
    assert req.specifier.contains(version), f"pyproject's {req} would replace ipywidgets {version}"


def make_plotter():
    """The smallest course-style widget: a slider, a redraw that shows its own figure."""

    def draw(points):
        fig = widget_support.redraw_figure(2, 2)
        fig.subplots().plot(range(points))
        widget_support.show_figure(fig)
        return points

    return widget_support.Interactive(
        draw, lambda w: f"Plotter: {w.result} points. " * 20, points=(2, 8)
    )


def test_interactive_draws_when_made_and_its_repr_is_the_summary_cut_to_fit(monkeypatch):
    shown = []
    monkeypatch.setattr(widget_support, "display", shown.append)
    w = make_plotter()
    assert w.result == 5 and len(shown) == 1  # drawn once at once, on 7.7 as on 8.x
    assert repr(w) == ("Plotter: 5 points. " * 20)[: widget_support.MAX_SUMMARY]
    w.kwargs_widgets[0].value = 8
    assert w.result == 8 and repr(w).startswith("Plotter: 8 points.") and len(shown) == 2


def test_redraw_figures_are_not_pyplots_so_closing_every_pyplot_figure_spares_them():
    fig = widget_support.redraw_figure(3, 2)
    fig.subplots().plot([0, 1])
    plt.close("all")
    assert plt.get_fignums() == [] and tuple(fig.get_size_inches()) == (3, 2)
    assert fig.get_layout_engine() is not None  # constrained: labels never clipped


@pytest.mark.parametrize("name", ["conv explorer", "dilation explorer", "augmentation tuner"])
def test_interactive_widgets_draw_when_made_on_either_ipywidgets(name):
    w = make_all()[name]
    assert w.result is not None  # 7.7 would wait until the widget is displayed


def test_each_widget_has_a_readable_text_fallback():
    texts = {name: repr(w) for name, w in make_all().items()}
    assert texts == {
        "conv explorer": "Convolution explorer: standard 3x3, step 1 of 9. "
        "Run the cell in Jupyter to use it.",
        "dilation explorer": "Dilation explorer: kernel 3, dilation 2, stride 1, 3 layers, "
        "RF 13. Run the cell to use it.",
        "rf calculator": "RF calculator: 5 layers, RF 17 on a 32 px input. "
        "Run the cell in Jupyter to add layers.",
        "augmentation tuner": "Augmentation tuner: 2 images x 2 draws, seed 0. "
        "Run the cell in Jupyter to use the sliders.",
    }
    # ipywidgets cuts the stored text/plain at 110 characters: every summary fits whole
    assert all(len(t) <= widget_support.MAX_SUMMARY for t in texts.values())


def test_the_text_fallback_is_what_a_notebook_stores():
    for w in make_all().values():
        if hasattr(w, "_repr_mimebundle_"):  # 8.x
            assert w._repr_mimebundle_()["text/plain"] == repr(w)
        else:  # 7.7 builds the bundle in _ipython_display_ from repr(w)
            assert "Run the cell" in repr(w) and not repr(w).startswith("interactive(")


def test_the_text_fallback_follows_the_controls():
    calc = rf_widgets.make_rf_calculator()
    assert repr(calc).startswith("RF calculator: 0 layers on a 32 px input.")
    calc.add_button.click()
    assert repr(calc).startswith("RF calculator: 1 layers, RF 3 on a 32 px input.")
    explorer = rf_widgets.make_dilation_explorer()
    explorer.kwargs_widgets[1].value = 1
    assert "dilation 1, stride 1, 3 layers, RF 7." in repr(explorer)


def _redraw(name, w):
    if name == "rf calculator":
        w.add_button.click()
    else:
        w.kwargs_widgets[-1].value = w.kwargs_widgets[-1].max  # redraws, as a drag does


@pytest.mark.parametrize(
    "name", ["conv explorer", "dilation explorer", "rf calculator", "augmentation tuner"]
)
def test_a_redraw_survives_the_kernel_closing_every_pyplot_figure_meanwhile(name, monkeypatch):
    """The blank-figure bug: JupyterLab's widget thread ran flush_figures during a redraw.

    Its ``plt.close("all")`` is simulated in the middle of each redraw; the figure the widget
    shows must still be whole (drawn, with axes and an image or lines), and shown once.
    """
    w = make_all()[name]
    shown = []
    monkeypatch.setattr(widget_support, "display", shown.append)
    real_subplots = plt.Figure.subplots

    def subplots_then_close_all(self, *args, **kwargs):
        axes = real_subplots(self, *args, **kwargs)
        plt.close("all")  # what the other thread's flush_figures does
        return axes

    monkeypatch.setattr(plt.Figure, "subplots", subplots_then_close_all)
    _redraw(name, w)
    assert len(shown) == 1, f"{name}: {len(shown)} figures shown for one redraw"
    fig = shown[0]
    assert fig.axes and any(ax.images or ax.lines or ax.patches for ax in fig.axes)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3]
    assert pixels.std() > 8, f"{name}: the figure is blank"
    assert plt.get_fignums() == []  # nothing left for pyplot to show again (Colab stacking)


def test_the_lessons_store_each_widgets_text_fallback():
    """What a lesson shows before it is run (or when untrusted) is the summary, not the repr."""
    import json

    fallbacks = {repr(w) for w in make_all().values()}
    stored = []
    for path in sorted((ROOT / "lessons").glob("0[123]_*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            for out in cell.get("outputs", []):
                if "application/vnd.jupyter.widget-view+json" in out.get("data", {}):
                    stored.append((path.name[:2], "".join(out["data"]["text/plain"])))
    assert len(stored) == 5
    for lesson, text in stored:
        assert "Run the cell in Jupyter" in text or "Run the cell to use it" in text, (lesson, text)
        kind = text.split(":")[0]
        assert kind in {t.split(":")[0] for t in fallbacks}, (lesson, text)
