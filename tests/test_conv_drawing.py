"""Tests for course_lib.conv_drawing: the drawn taps compute what PyTorch computes; figures; widget."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from course_lib.conv_arithmetic import conv_cost
from course_lib.conv_drawing import (
    CELL_INPUT,
    CELL_INSERTED,
    CELL_PADDING,
    PRESETS,
    ConvGeometry,
    canvas_cells,
    conv_by_taps,
    conv_explorer,
    conv_volume_counts,
    draw_conv,
    draw_conv_volume,
    draw_depthwise_separable,
    draw_spatial_separable,
    filmstrip_positions,
    filter_window,
    kernel_taps,
    spread_input,
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
    layer = geom.module()
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


def test_spread_input_puts_pixels_on_input_cells_only():
    geom = ConvGeometry(2, 3, stride=3, transposed=True)
    canvas = spread_input(np.array([[1.0, 2.0], [3.0, 4.0]]), geom)
    cells = canvas_cells(geom)
    assert sorted(canvas[cells == CELL_INPUT]) == [1.0, 2.0, 3.0, 4.0]
    assert (canvas[cells != CELL_INPUT] == 0).all()


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
        (dict(size=0), "size must be >= 1, got"),
        (
            dict(size=4, kernel=3, dilation=2),
            "the kernel spans 5 cells but the padded input has only 4",
        ),
        (dict(size=4, output_padding=1), "output_padding applies to transposed convs only"),
        (
            dict(size=3, padding=3, transposed=True),
            r"padding \(3\) must be at most dilation\*\(kernel-1\) = 2",
        ),
        (dict(size=3, stride=2, output_padding=2, transposed=True), "must be smaller than stride"),
        (dict(size=(3, 3, 3)), "size must be an int or a pair of ints"),
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


def test_filmstrip_shows_first_steps_middle_and_last():
    geom = ConvGeometry(5, 3)  # 3x3 output, 9 positions
    assert filmstrip_positions(geom, 4) == [(0, 0), (0, 1), (1, 1), (2, 2)]
    assert filmstrip_positions(geom, 2) == [(0, 0), (2, 2)]
    assert filmstrip_positions(geom, 1) == [(0, 0)]
    assert len(filmstrip_positions(geom, 20)) == 9
    with pytest.raises(ValueError, match="n_panels must be a positive int, got 0"):
        filmstrip_positions(geom, 0)


def test_draw_conv_makes_one_input_and_one_output_panel_per_position():
    fig = draw_conv(ConvGeometry(5, 3, stride=2, padding=1), n_panels=3)
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


def test_draw_spatial_separable_stacks_the_vertical_and_horizontal_passes():
    fig = draw_spatial_separable(5, 3, n_panels=2)
    titles = [sf._suptitle.get_text() for sf in fig.subfigs]
    assert titles == [
        "step 1, vertical: 3x1 kernel, padding 1,0: 5x5 -> 5x5",
        "step 2, horizontal: 1x3 kernel, padding 0,1: 5x5 -> 5x5",
    ]


def test_draw_depthwise_separable_counts_the_weights_of_both_steps():
    fig = draw_depthwise_separable(c_in=3, c_out=4, kernel=3)
    assert fig._suptitle.get_text() == (
        "depthwise-separable: 27 + 12 = 39 weights; a standard 3x3 conv would need 108"
    )
    with pytest.raises(ValueError, match=r"position \(3, 0\) is outside the 3x3 output"):
        draw_depthwise_separable(position=(3, 0))


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


def test_explorer_refuses_presets_that_are_not_geometries():
    with pytest.raises(ValueError, match="preset 'x' is not a ConvGeometry"):
        conv_explorer({"x": (5, 3)})


@pytest.mark.parametrize("geom", CONVS, ids=lambda g: g.describe())
def test_the_filter_window_computes_what_conv2d_computes_on_every_channel(geom):
    rng = np.random.default_rng(1)
    c_in, c_out = 3, 2
    x = rng.normal(size=(c_in, *geom.size))
    w = rng.normal(size=(c_out, c_in, *geom.kernel))
    canvas = np.stack([spread_input(x[c], geom) for c in range(c_in)])
    expected = F.conv2d(
        torch.tensor(x)[None], torch.tensor(w), stride=geom.stride,
        padding=geom.padding, dilation=geom.dilation,
    )[0].numpy()  # fmt: skip
    ho, wo = geom.output_shape
    kw = geom.kernel[1]
    for o in range(c_out):
        for i in range(ho):
            for j in range(wo):
                window = filter_window(geom, c_in, i, j)
                # filter_window lists the cells channel by channel, in kernel order.
                taps = [
                    (c, t // kw, t % kw) for c in range(c_in) for t in range(len(window) // c_in)
                ]
                value = sum(
                    canvas[cell] * w[o][tap] for cell, tap in zip(window, taps, strict=True)
                )
                assert value == pytest.approx(expected[o, i, j], abs=1e-12)


@pytest.mark.parametrize("geom", CONVS, ids=lambda g: g.describe())
def test_volume_counts_agree_with_the_measured_cost_of_the_module(geom):
    counts = conv_volume_counts(geom, c_in=3, c_out=5)
    cost = conv_cost(geom.module(3, 5), (3, *geom.size))
    assert counts.weights == cost.params
    assert counts.mult_adds == cost.mult_adds
    assert counts.outputs == np.prod(cost.output_shape)


def test_filter_window_is_k_by_k_on_every_input_channel():
    window = filter_window(ConvGeometry(5, 3), 3, 1, 2)
    assert len(window) == 27
    assert {c for c, _, _ in window} == {0, 1, 2}
    assert {(r, col) for _, r, col in window} == {(r, c) for r in (1, 2, 3) for c in (2, 3, 4)}
    with pytest.raises(ValueError, match="c_in must be a positive int, got 0"):
        filter_window(ConvGeometry(5, 3), 0, 0, 0)
    with pytest.raises(ValueError, match="got a transposed geometry"):
        filter_window(ConvGeometry(3, 3, transposed=True), 1, 0, 0)


def test_draw_conv_volume_states_the_counts_of_the_rgb_layer():
    fig = draw_conv_volume(c_in=3, c_out=4, size=5, kernel=3)
    cost = conv_cost(torch.nn.Conv2d(3, 4, 3, bias=False), (3, 5, 5))
    title = fig._suptitle.get_text()
    assert f"= {cost.mult_adds:,} multiply-adds; {cost.params:,} weights" in title
    assert title.startswith("one output value: 27 multiply-adds")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert {"R", "G", "B", "input\n5x5x3", "4 filters\neach 3x3x3", "output\n3x3x4"} <= set(texts)
    with pytest.raises(ValueError, match=r"position \(3, 0\) is outside the 3x3 output"):
        draw_conv_volume(position=(3, 0))
    with pytest.raises(ValueError, match="a 5x5 kernel does not fit a 4x4 input"):
        draw_conv_volume(size=4, kernel=5)
