"""Tests for course_lib.rf_widgets: the pure functions and both widgets, headless."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

import course_lib.widget_support as widget_support
from course_lib.receptive_field import LayerSpec
from course_lib.rf_widgets import (
    MAX_GRID,
    draw_footprint,
    explore_dilation,
    make_dilation_explorer,
    make_rf_calculator,
    rf_report,
)

EXAMPLE = [LayerSpec("conv", padding=1)] * 3 + [
    LayerSpec("conv", stride=2, padding=1),
    LayerSpec("conv", padding=2, dilation=2),
]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --- explore_dilation ---------------------------------------------------------------------


def test_three_dilation_2_layers_reach_13_pixels_but_see_only_every_other_one():
    ex = explore_dilation(kernel=3, dilation=2, stride=1, n_layers=3)
    assert ex.growth == [1, 5, 9, 13]
    assert ex.taps.tolist() == [1, 0, 1, 0, 1]
    assert ex.paths.tolist() == [1, 0, 3, 0, 6, 0, 7, 0, 6, 0, 3, 0, 1]
    assert ex.seen == pytest.approx((7 / 13) ** 2)


def test_dense_layers_see_their_whole_field_and_strides_multiply_the_growth():
    assert explore_dilation(3, 1, 1, 4).seen == 1.0
    assert explore_dilation(3, 1, 2, 3).growth == [1, 3, 7, 15]


def test_explore_dilation_refuses_a_zero_setting_with_a_message():
    with pytest.raises(ValueError, match="every setting must be at least 1, got .* 0 layers"):
        explore_dilation(3, 2, 1, 0)


# --- rf_report ----------------------------------------------------------------------------


def test_report_of_the_lesson_example_has_one_line_per_layer_and_ends_at_rf_17():
    rows, text = rf_report(EXAMPLE, 32)
    assert [r.r_out for r in rows] == [3, 5, 7, 9, 17]
    assert [r.j_out for r in rows] == [1, 1, 1, 2, 2]
    assert len(text.splitlines()) == 2 + len(EXAMPLE)  # header, rule, rows


def test_report_of_an_oversized_kernel_is_a_friendly_message_not_an_exception():
    rows, text = rf_report([LayerSpec("conv", dilation=8)] * 2, 32)
    assert rows == []
    assert text.startswith("This stack does not fit: layer 'conv2' (conv): effective kernel 17")
    assert "larger than the padded input 16" in text and text.endswith("or a larger input.")


def test_report_of_an_empty_stack_invites_the_first_layer():
    assert rf_report([], 32) == ([], "No layers yet: choose one above and press 'Add layer'.")


# --- draw_footprint -----------------------------------------------------------------------


def test_a_footprint_is_a_square_grid_with_holes_left_white_or_one_row_when_wide():
    fig, (ax, wide) = plt.subplots(1, 2)
    draw_footprint(ax, np.array([1, 0, 2]), "three")
    grid = ax.images[0].get_array()
    assert grid.shape == (3, 3) and grid.mask[1].all() and grid[2, 2] == 4
    draw_footprint(wide, np.ones(MAX_GRID + 1, dtype=int), "wide")
    assert wide.images[0].get_array().shape == (1, MAX_GRID + 1)
    assert wide.get_title() == "wide\n(one row: too wide for a grid)"


# --- the explorer widget, headless ---------------------------------------------------------


def test_explorer_starts_drawn_and_follows_its_sliders(monkeypatch):
    shown = []
    monkeypatch.setattr(widget_support, "display", shown.append)
    w = make_dilation_explorer()
    names = [s.description for s in w.kwargs_widgets]
    assert names == ["kernel", "dilation", "stride", "layers"]
    assert all(not s.continuous_update for s in w.kwargs_widgets)
    assert w.result.growth[-1] == 13
    taps, stack, growth = shown[-1].axes[:3]
    assert "spans 5x5 pixels" in taps.get_title()
    assert "RF 13" in stack.get_title() and "29% of that square" in stack.get_title()
    assert len(growth.get_lines()) == 2  # beside the same stack without dilation
    kernel, dilation, stride, layers = w.kwargs_widgets
    dilation.value, layers.value = 1, 5
    w.update()
    assert w.result.growth == [1, 3, 5, 7, 9, 11] and w.result.seen == 1.0
    stride.value = 2
    w.update()
    assert w.result.growth[-1] == 63


def test_explorer_refuses_bad_start_values_before_building_sliders():
    with pytest.raises(ValueError, match="explore_dilation: every setting must be at least 1"):
        make_dilation_explorer(dilation=0)


# --- the calculator widget, headless --------------------------------------------------------


def test_calculator_adds_and_removes_layers_with_its_buttons():
    calc = make_rf_calculator()
    assert calc.specs == [] and "No layers yet" in calc.text
    calc.padding.value = 1
    calc.add_button.click()
    calc.add_button.click()
    assert [r.r_out for r in calc.rows] == [3, 5]
    calc.kind.value, calc.kernel.value, calc.stride.value, calc.padding.value = "maxpool", 2, 2, 0
    calc.add_button.click()
    assert calc.rows[-1].name == "maxpool3" and calc.rows[-1].j_out == 2
    assert calc.text.splitlines()[-1].replace("|", " ").split()[-2:] == ["6", "1.0"]
    calc.remove_button.click()
    assert len(calc.specs) == 2 and calc.rows[-1].r_out == 5
    calc.clear_button.click()
    assert calc.specs == [] and calc.rows == []


def test_calculator_refuses_a_layer_that_does_not_fit_and_keeps_the_table():
    calc = make_rf_calculator(EXAMPLE)
    calc.dilation.value = 16
    calc.add_button.click()
    assert len(calc.specs) == len(EXAMPLE)
    assert calc.message.startswith("Not added. This stack does not fit: layer 'conv6'")
    assert calc.rows[-1].r_out == 17
    calc.dilation.value = 1
    calc.add_button.click()
    assert calc.message == "" and calc.rows[-1].r_out == 21


def test_calculator_shows_a_message_when_the_input_shrinks_below_the_stack():
    calc = make_rf_calculator([LayerSpec("conv", dilation=8)])
    calc.input_size.value = 10
    assert calc.rows == [] and "larger than the padded input 10" in calc.text
    calc.input_size.value = 32
    assert calc.rows[-1].n_out == 16


def test_calculator_keeps_average_pools_undilated():
    calc = make_rf_calculator()
    calc.dilation.value = 3
    calc.kind.value = "avgpool"
    assert calc.dilation.value == 1 and calc.dilation.disabled
    calc.kind.value = "conv"
    assert not calc.dilation.disabled


def test_calculator_draws_the_last_units_footprint(monkeypatch):
    shown = []
    monkeypatch.setattr(widget_support, "display", shown.append)
    make_rf_calculator(EXAMPLE)
    (ax,) = shown[-1].axes
    assert ax.get_title() == "input pixels seen by one unit of conv5: RF 17"
    assert ax.images[0].get_array().shape == (17, 17)


def test_calculator_factory_refuses_a_start_stack_that_does_not_fit():
    with pytest.raises(ValueError, match="make_rf_calculator: This stack does not fit"):
        make_rf_calculator([LayerSpec("conv", kernel=5)], input_size=4)
