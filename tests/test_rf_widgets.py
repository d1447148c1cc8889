"""Tests for course_lib.rf_widgets: the pure reports and both widget factories, headless."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from torch import nn

from course_lib.models import build_model
from course_lib.published import published_dilated_net
from course_lib.receptive_field import LayerSpec, receptive_field_table
from course_lib.rf_widgets import (
    MAX_GRID,
    draw_footprint,
    erf_profile_figure,
    explore_dilation,
    explorer_figure,
    footprint_steps_figure,
    make_dilation_explorer,
    make_rf_calculator,
    rf_report,
    specs_from_model,
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
    assert ex.growth == [1, 5, 9, 13] and ex.rf == 13
    assert ex.kernel_taps.shape == (5, 5) and ex.kernel_taps.sum() == 9
    assert ex.paths.tolist() == [1, 0, 3, 0, 6, 0, 7, 0, 6, 0, 3, 0, 1]
    assert ex.seen == pytest.approx((7 / 13) ** 2)


def test_dense_layers_see_their_whole_field():
    ex = explore_dilation(kernel=3, dilation=1, stride=1, n_layers=4)
    assert ex.rf == 9 and ex.seen == 1.0


def test_stride_wider_than_the_kernel_leaves_holes_too():
    ex = explore_dilation(kernel=2, dilation=1, stride=3, n_layers=2)
    assert ex.paths.tolist() == [1, 1, 0, 1, 1]


def test_explore_dilation_refuses_zero_layers_with_a_message():
    with pytest.raises(ValueError, match="explore_dilation: n_layers must be at least 1, got 0"):
        explore_dilation(3, 2, 1, 0)


# --- rf_report ----------------------------------------------------------------------------


def test_report_of_the_lesson_example_has_one_line_per_layer_and_ends_at_rf_17():
    report = rf_report(EXAMPLE, 32)
    assert report.error is None
    assert [r.r_out for r in report.rows] == [3, 5, 7, 9, 17]
    assert [r.j_out for r in report.rows] == [1, 1, 1, 2, 2]
    assert len(report.text.splitlines()) == 1 + len(EXAMPLE)


def test_report_of_an_oversized_kernel_is_a_friendly_message_not_an_exception():
    report = rf_report([LayerSpec("conv", dilation=8)] * 2, 32)
    assert report.rows == [] and report.text == ""
    assert report.error.startswith("This stack does not fit: layer 'conv2' (conv): effective")
    assert "larger than the padded input 16" in report.error
    assert report.error.endswith("or a larger input.")
    assert "table_from_specs" not in report.error


def test_report_of_a_dilated_average_pool_explains_itself():
    report = rf_report([LayerSpec("avgpool", kernel=2, dilation=2)], 32)
    assert "average pooling has no dilation, got 2" in report.error


def test_report_of_an_empty_stack_invites_the_first_layer():
    report = rf_report([], 32)
    assert report.error is None and report.rows == []
    assert "No layers yet" in report.text


# --- specs_from_model ---------------------------------------------------------------------


def test_specs_from_the_published_net_give_its_table_and_end_in_the_pool():
    specs = specs_from_model(published_dilated_net())
    rows = rf_report(specs).rows
    assert [r.r_out for r in rows] == [
        r.r_out for r in receptive_field_table(published_dilated_net())
    ]
    assert (specs[-2].kernel, rows[-2].r_out) == (2, 46)
    assert (specs[-1].kind, specs[-1].name, rows[-1].r_out) == ("avgpool", "gap", 47)


def test_specs_from_the_final_model_ignore_the_skips_without_changing_the_rf():
    model = build_model("dilated")
    rows = rf_report(specs_from_model(model)).rows
    assert [r.r_out for r in rows] == [r.r_out for r in receptive_field_table(model)]


def test_specs_from_a_model_with_an_unknown_spatial_layer_name_it():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LPPool2d(2, 2))
    with pytest.raises(ValueError, match="layer '1' is LPPool2d; the calculator knows only"):
        specs_from_model(model)


# --- figures ------------------------------------------------------------------------------


def test_steps_figure_has_one_titled_panel_per_layer():
    fig = footprint_steps_figure(EXAMPLE)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "after conv1\nRF 3, jump 1"
    assert titles[-1] == "after conv5\nRF 17, jump 2"


def test_a_field_wider_than_the_grid_limit_is_drawn_as_one_row():
    fig, ax = plt.subplots()
    draw_footprint(ax, np.ones(MAX_GRID + 1, dtype=int), "wide")
    assert "one row" in ax.get_title() and not ax.images
    draw_footprint(ax, np.ones(5, dtype=int))
    assert ax.images[-1].get_array().shape == (5, 5)


def test_explorer_figure_titles_state_the_span_and_the_share_seen():
    ax_k, ax_s, _ = explorer_figure(explore_dilation(3, 2, 1, 3)).axes
    assert "spans 5x5 pixels" in ax_k.get_title()
    assert "RF 13" in ax_s.get_title() and "29% of that square" in ax_s.get_title()


def test_erf_profile_marks_each_field_centred_on_the_map():
    erf = np.zeros((21, 21))
    erf[8:13, 8:13] = 1.0  # centred on pixel 10
    ax = erf_profile_figure(erf, {"RF": 5, "wide": 9}).axes[0]
    xs = sorted(line.get_xdata()[0] for line in ax.get_lines()[1:])
    assert xs == [5.5, 7.5, 12.5, 14.5]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["RF: 5 px", "wide: 9 px"]


def test_erf_profile_refuses_an_empty_map_with_a_message():
    with pytest.raises(ValueError, match="erf must be a non-zero 2-D map"):
        erf_profile_figure(np.zeros((4, 4)), {})


# --- the explorer widget, headless ---------------------------------------------------------


def test_explorer_starts_drawn_and_follows_its_sliders():
    w = make_dilation_explorer()
    names = [s.description for s in w.kwargs_widgets]
    assert names == ["kernel", "dilation", "stride", "layers"]
    assert all(not s.continuous_update for s in w.kwargs_widgets)
    assert w.result.rf == 13
    kernel, dilation, stride, layers = w.kwargs_widgets
    dilation.value, layers.value = 1, 5
    w.update()
    assert w.result.growth == [1, 3, 5, 7, 9, 11] and w.result.seen == 1.0
    stride.value = 2
    w.update()
    assert w.result.rf == 63


def test_explorer_refuses_bad_start_values_before_building_sliders():
    with pytest.raises(ValueError, match="dilation must be a positive integer"):
        make_dilation_explorer(dilation=0)


# --- the calculator widget, headless --------------------------------------------------------


def test_calculator_adds_and_removes_layers_with_its_buttons():
    calc = make_rf_calculator()
    assert calc.specs == [] and "No layers yet" in calc.report.text
    calc.padding.value = 1
    calc.add_button.click()
    calc.add_button.click()
    assert [r.r_out for r in calc.report.rows] == [3, 5]
    calc.kind.value, calc.kernel.value, calc.stride.value, calc.padding.value = "maxpool", 2, 2, 0
    calc.add_button.click()
    assert calc.report.rows[-1].name == "maxpool3" and calc.report.rows[-1].j_out == 2
    assert calc.report.text.splitlines()[-1].split()[-2:] == ["6", "1.0"]
    calc.remove_button.click()
    assert len(calc.specs) == 2 and calc.report.rows[-1].r_out == 5
    calc.clear_button.click()
    assert calc.specs == [] and calc.report.rows == []


def test_calculator_refuses_a_layer_that_does_not_fit_and_keeps_the_table():
    calc = make_rf_calculator(EXAMPLE)
    calc.dilation.value = 16
    calc.add_button.click()
    assert len(calc.specs) == len(EXAMPLE)
    assert calc.message.startswith("Not added. This stack does not fit: layer 'conv6'")
    assert calc.report.rows[-1].r_out == 17
    calc.dilation.value = 1
    calc.add_button.click()
    assert calc.message == "" and calc.report.rows[-1].r_out == 21


def test_calculator_shows_a_message_when_the_input_shrinks_below_the_stack():
    calc = make_rf_calculator([LayerSpec("conv", dilation=8)])
    calc.input_size.value = 10
    assert calc.report.rows == [] and "larger than the padded input 10" in calc.report.error
    calc.input_size.value = 32
    assert calc.report.error is None and calc.report.rows[-1].n_out == 16


def test_calculator_keeps_average_pools_undilated():
    calc = make_rf_calculator()
    calc.dilation.value = 3
    calc.kind.value = "avgpool"
    assert calc.dilation.value == 1 and calc.dilation.disabled
    calc.kind.value = "conv"
    assert not calc.dilation.disabled


def test_calculator_loaded_with_the_published_net_shows_46_after_removing_its_pool():
    calc = make_rf_calculator(specs_from_model(published_dilated_net()))
    assert calc.report.rows[-1].r_out == 47
    calc.remove_button.click()
    assert calc.report.rows[-1].r_out == 46


def test_calculator_factory_refuses_a_start_stack_that_does_not_fit():
    with pytest.raises(ValueError, match="make_rf_calculator: This stack does not fit"):
        make_rf_calculator([LayerSpec("conv", kernel=5)], input_size=4)
