"""Tests for course_lib.conv_drawing: the drawn taps compute what PyTorch does; figures; widget."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from course_lib.conv_drawing import (
    CELL_INPUT,
    CELL_INSERTED,
    CELL_PADDING,
    PRESETS,
    ConvGeometry,
    canvas_cells,
    conv_by_taps,
    conv_explorer,
    draw_channels,
    draw_conv,
    kernel_taps,
)

CONVS = [
    ConvGeometry(5, 3),
    ConvGeometry(5, 3, padding=1),
    ConvGeometry(6, 3, stride=2),
    ConvGeometry(7, 3, stride=2, padding=1, dilation=2),
    ConvGeometry(8, 3, dilation=2),
    ConvGeometry((5, 6), (3, 1), padding=(1, 0)),
    ConvGeometry(4, 1),
]
TRANSPOSED = [
    ConvGeometry(3, 3, transposed=True),
    ConvGeometry(3, 3, stride=2, transposed=True),
    ConvGeometry(3, 3, stride=2, padding=1, output_padding=1, transposed=True),
    ConvGeometry(4, 3, stride=3, padding=2, transposed=True),
    ConvGeometry(3, 3, stride=1, padding=1, dilation=2, output_padding=1, transposed=True),
    ConvGeometry((2, 3), (1, 3), stride=2, transposed=True),
]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("geom", CONVS + TRANSPOSED, ids=lambda g: g.describe())
def test_the_drawn_taps_compute_exactly_what_pytorch_computes(geom):
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=geom.size), rng.normal(size=geom.kernel)
    if geom.transposed:
        layer = nn.ConvTranspose2d(1, 1, geom.kernel, geom.stride, geom.padding,
                                   geom.output_padding, bias=False, dilation=geom.dilation)
    else:
        layer = nn.Conv2d(1, 1, geom.kernel, geom.stride, geom.padding, geom.dilation, bias=False)
    layer.weight.data = torch.tensor(w, dtype=torch.float64)[None, None]
    with torch.no_grad():
        expected = layer.double()(torch.tensor(x)[None, None])[0, 0].numpy()
    assert geom.output_shape == expected.shape
    np.testing.assert_allclose(conv_by_taps(x, w, geom), expected, atol=1e-12)


def test_transposed_stride_2_spreads_the_input_with_one_zero_between_pixels():
    geom = ConvGeometry(3, 3, stride=2, transposed=True)
    cells = canvas_cells(geom)
    assert geom.canvas_shape == (9, 9)  # spread 5, plus 2 zeros of padding each side
    middle = cells[2:7, 2:7]
    assert (middle[::2, ::2] == CELL_INPUT).all() and (middle == CELL_INPUT).sum() == 9
    assert (middle[1::2] == CELL_INSERTED).all()
    assert (cells[:2] == CELL_PADDING).all() and (cells[:, 7:] == CELL_PADDING).all()


def test_padding_surrounds_the_input_with_zeros():
    cells = canvas_cells(ConvGeometry(4, 3, padding=1))
    assert cells.shape == (6, 6)
    assert (cells[1:5, 1:5] == CELL_INPUT).all()
    assert (cells == CELL_PADDING).sum() == 36 - 16


def test_dilated_taps_skip_dilation_minus_one_cells():
    taps = kernel_taps(ConvGeometry(8, 3, dilation=2), 1, 0)
    assert taps == [(r, c) for r in (1, 3, 5) for c in (0, 2, 4)]


def test_strided_taps_move_by_the_stride_and_transposed_taps_by_one():
    assert kernel_taps(ConvGeometry(7, 3, stride=2), 0, 1)[0] == (0, 2)
    assert kernel_taps(ConvGeometry(3, 3, stride=2, transposed=True), 0, 1)[0] == (0, 1)


def test_kernel_taps_explains_an_output_outside_the_map():
    with pytest.raises(ValueError, match=r"output \(3, 0\) is outside the 3x3 output"):
        kernel_taps(ConvGeometry(5, 3), 3, 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(size=0), "size, kernel, stride and dilation must be >= 1"),
        (dict(size=4, kernel=3, dilation=2), "the kernel spans 5 cells but the padded input has 4"),
        (dict(size=4, output_padding=1), "output_padding is for transposed convs"),
        (dict(size=3, padding=3, transposed=True), r"padding < dilation\*\(kernel-1\)\+1"),
        (dict(size=3, stride=2, output_padding=2, transposed=True), "output_padding < max"),
    ],
)
def test_conv_geometry_explains_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConvGeometry(**kwargs)


def test_describe_names_only_the_non_default_settings():
    assert ConvGeometry(5, 3).describe() == "3x3 kernel: 5x5 -> 3x3"
    assert ConvGeometry(5, 3, stride=2, padding=1).describe() == (
        "3x3 kernel, stride 2, padding 1: 5x5 -> 3x3"
    )
    assert ConvGeometry(
        3, 3, stride=2, padding=1, output_padding=1, transposed=True
    ).describe() == ("transposed, 3x3 kernel, stride 2, padding 1, output padding 1: 3x3 -> 6x6")


def test_draw_conv_makes_one_input_and_one_output_panel_per_position():
    fig = draw_conv(ConvGeometry(5, 3, stride=2, padding=1), [(0, 0), (1, 1), (2, 2)])
    assert len(fig.axes) == 6
    assert fig.axes[0].get_title() == "output (0, 0), step 1/9"
    assert fig._suptitle.get_text() == "3x3 kernel, stride 2, padding 1: 5x5 -> 3x3"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "zero padding" in labels and "inserted zero" not in labels


def test_draw_conv_legend_shows_inserted_zeros_for_a_transposed_conv():
    fig = draw_conv(ConvGeometry(3, 3, stride=2, transposed=True), positions=[(3, 3)])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "inserted zero" in labels
    assert fig.axes[0].get_ylabel() == "spread input"


def test_draw_conv_refuses_a_position_outside_the_output():
    with pytest.raises(ValueError, match=r"output \(0, 5\) is outside the 3x3 output"):
        draw_conv(ConvGeometry(5, 3), positions=[(0, 5)])


def test_explorer_slider_follows_the_chosen_geometry_and_redraws():
    w = conv_explorer()
    choice, slider = w.kwargs_widgets
    assert choice.value == next(iter(PRESETS)) and slider.max == 8
    assert not slider.continuous_update
    slider.value = 4
    w.update()
    assert w.result.axes[0].get_title() == "output (1, 1), step 5/9"
    choice.value = "transposed 3x3, stride 2"
    assert slider.max == 48
    slider.value = 48
    w.update()
    assert w.result.axes[0].get_title() == "output (6, 6), step 49/49"
    choice.value = "pointwise 1x1"  # 16 positions: the slider is clamped to the last one
    w.update()
    assert slider.value == 15
    assert w.result.axes[0].get_title() == "output (3, 3), step 16/16"


def test_filmstrip_shows_the_first_steps_the_middle_one_and_the_last():
    titles = [ax.get_title() for ax in draw_conv(ConvGeometry(5, 3)).axes[:4]]
    assert [t.split(", ")[-1] for t in titles] == ["step 1/9", "step 2/9", "step 5/9", "step 9/9"]
    assert len(draw_conv(ConvGeometry(4, 3)).axes) == 8  # 4 outputs, 4 panels


@pytest.mark.parametrize("separable", [False, True])
def test_channel_view_counts_the_weights_of_the_layer_it_draws(separable):
    fig = draw_channels(c_in=3, c_out=4, size=5, kernel=3, separable=separable)
    title = fig._suptitle.get_text()
    if separable:
        assert title == "depthwise 27 + pointwise 12 = 39 weights; a standard conv: 108"
    else:
        assert title == "4 filters of 3x3x3 = 108 weights"
    with pytest.raises(ValueError, match="a 5x5 kernel does not fit a 4x4 input"):
        draw_channels(size=4, kernel=5)
