"""Tests for course_lib.receptive_field: hand-checked tables, gradient checks, widget maths."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from course_lib.receptive_field import (
    COLUMNS,
    LayerSpec,
    dilation_footprint,
    effective_receptive_field,
    empirical_receptive_field,
    erf_extent,
    format_rf_table,
    receptive_field,
    receptive_field_table,
    rf_growth,
    stack_footprint,
    table_from_specs,
)

C = 4  # channels of the toy networks: the receptive field does not depend on width


def conv(k=3, s=1, p=0, d=1, c_in=C, c_out=C, **kw) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, **kw)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv(p=1, c_in=3)
        self.block = nn.Sequential(conv(p=1), nn.BatchNorm2d(C), nn.ReLU(), conv(p=1))

    def forward(self, x):
        x = self.stem(x)
        return x + self.block(x)


class TwoBranch(nn.Module):
    """The wide branch runs first, so the last row is the narrow one."""

    def __init__(self, merge="add"):
        super().__init__()
        self.merge = merge
        self.wide = conv(k=5, p=2, c_in=3)
        self.narrow = conv(k=3, p=1, c_in=3)

    def forward(self, x):
        a, b = self.wide(x), self.narrow(x)
        return a + b if self.merge == "add" else torch.cat([a, b], dim=1)


class OptionAShortcut(nn.Module):
    """The CIFAR ResNet downsampling block: strided conv path plus a subsampled, channel-padded
    identity."""

    def __init__(self):
        super().__init__()
        self.stem = conv(p=1, c_in=3)
        self.main = nn.Sequential(
            conv(s=2, p=1, c_out=2 * C), nn.ReLU(), conv(p=1, c_in=2 * C, c_out=2 * C)
        )

    def forward(self, x):
        x = self.stem(x)
        shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, C // 2, C // 2))
        return F.relu(self.main(x) + shortcut)


def published_net() -> nn.Sequential:
    """A CIFAR-10 network whose authors hand-added its receptive field to 47."""

    def block(c_in, c_out, k=3, p=1, d=1, groups=1):
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, k, padding=p, dilation=d, groups=groups, bias=False),
            nn.ReLU(),
            nn.BatchNorm2d(c_out),
            nn.Dropout(0.05),
        )

    return nn.Sequential(
        block(3, 16), block(16, 32), block(32, 32, p=0, d=2), block(32, 16, k=1, p=0),
        block(16, 64), block(64, 64), block(64, 64, p=0, d=4), block(64, 16, k=1, p=0),
        block(16, 64), block(64, 64), block(64, 64, p=0, d=8), block(64, 16, k=1, p=0),
        block(16, 16, groups=16), block(16, 32, k=1, p=0), block(32, 64), block(64, 64, k=2, p=0),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(64, 10),
    )  # fmt: skip


# ---------------------------------------------------------------- hand-checked tables


def test_three_3x3_convs_have_rf_7():
    model = nn.Sequential(conv(p=1, c_in=3), nn.ReLU(), conv(p=1), nn.ReLU(), conv(p=1))
    assert [r.r_out for r in receptive_field_table(model)] == [3, 5, 7]
    assert receptive_field(model) == 7


def test_stride_2_doubles_the_jump_so_the_next_3x3_adds_4():
    model = nn.Sequential(conv(s=2, p=1, c_in=3), conv(p=1))
    first, second = receptive_field_table(model)
    assert (first.r_out, first.j_out, first.n_out) == (3, 2, 16)
    assert (second.j_in, second.r_out, second.n_out) == (2, 7, 16)


def test_dilation_2_makes_a_3x3_kernel_span_5_pixels():
    (row,) = receptive_field_table(nn.Sequential(conv(d=2, c_in=3)))
    assert (row.kernel, row.dilation, row.eff_kernel, row.r_out) == (3, 2, 5, 5)
    assert (row.n_in, row.n_out, row.start) == (32, 28, 2.5)


def test_unpadded_dilation_8_shrinks_32_to_16():
    (row,) = receptive_field_table(nn.Sequential(conv(d=8, c_in=3)))
    assert (row.eff_kernel, row.n_out, row.r_out) == (17, 16, 17)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_padding_strings_same_keeps_the_size_and_valid_pads_nothing():
    model = nn.Sequential(conv(k=(2, 3), p="same", c_in=3), conv(k=3, p="valid"))
    same, valid = receptive_field_table(model)
    assert (same.n_out, same.r_out_hw) == (32, (2, 3))
    assert (valid.padding, valid.n_out, valid.r_out_hw) == (0, 30, (4, 5))


def test_reflect_padded_conv_reports_its_padding_like_a_zero_padded_one():
    reflect = nn.Sequential(conv(p=1, c_in=3, padding_mode="reflect"))
    zeros = nn.Sequential(conv(p=1, c_in=3))
    assert receptive_field_table(reflect) == receptive_field_table(zeros)


def test_ceil_mode_pooling_rows_match_torch_output_sizes():
    model = nn.Sequential(
        conv(p=1, c_in=3), nn.MaxPool2d(3, 2, ceil_mode=True), nn.AvgPool2d(2, ceil_mode=True)
    )
    rows = receptive_field_table(model, (3, 33, 33))
    assert [(r.n_out, r.r_out, r.j_out) for r in rows] == [(33, 3, 1), (16, 5, 2), (8, 7, 4)]


def test_published_network_fields_are_46_at_the_last_conv_and_47_after_its_avgpool():
    # By hand: 3,5 | d2 +4 = 9 | 1x1 | 11,13 | d4 +8 = 21 | 1x1 | 23,25 | d8 +16 = 41 | 1x1 |
    # dw 43 | 1x1 | 45 | 2x2 46 | AvgPool2d(2) on the 3x3 map: one window, 46 + 1 = 47.
    rows = receptive_field_table(published_net())
    assert [r.r_out for r in rows] == [
        3, 5, 9, 9, 11, 13, 21, 21, 23, 25, 41, 41, 43, 43, 45, 46, 47,
    ]  # fmt: skip
    conv2x2, pool = rows[-2:]
    assert (conv2x2.name, conv2x2.n_out, conv2x2.r_out) == ("15.0", 3, 46)
    assert (pool.name, pool.kernel, pool.stride, pool.n_in, pool.n_out) == ("16", 2, 2, 3, 1)
    assert receptive_field(published_net()) == 47


def test_published_network_field_is_measured_as_47():
    assert empirical_receptive_field(published_net(), (3, 56, 56)).size == 47


# ---------------------------------------------------------------- analytic == measured

NETWORKS = {
    "plain_stack": lambda: nn.Sequential(
        conv(p=1, c_in=3), nn.ReLU(), conv(p=1), nn.BatchNorm2d(C), conv()
    ),
    "strided_dilated_mix": lambda: nn.Sequential(
        conv(s=2, p=1, c_in=3), nn.ReLU(), conv(d=2, p=2), nn.ReLU(), conv(s=2, d=3), conv(k=1)
    ),
    "maxpool": lambda: nn.Sequential(
        conv(p=1, c_in=3), nn.MaxPool2d(2), conv(p=1), nn.MaxPool2d(3, 2, padding=1, dilation=2)
    ),
    "residual": Residual,
    "option_a_shortcut": OptionAShortcut,
    "depthwise_separable": lambda: nn.Sequential(
        conv(p=1, c_in=3), conv(p=1, groups=C), nn.ReLU(), conv(k=1, c_out=2 * C)
    ),
    "non_square": lambda: nn.Sequential(conv(k=(1, 5), c_in=3), nn.ReLU(), conv(k=(3, 1))),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_rf_matches_gradient_measurement(name):
    model = NETWORKS[name]()
    last = receptive_field_table(model)[-1]
    measured = empirical_receptive_field(model)
    assert measured.size == receptive_field(model)
    assert measured.hw == last.r_out_hw


def test_non_square_kernels_report_both_axes():
    model = nn.Sequential(conv(k=(1, 3), c_in=3), conv(k=(3, 1)))
    first, second = receptive_field_table(model)
    assert first.r_out_hw == (1, 3) and first.kernel == 3
    assert second.r_out_hw == (3, 3)


def test_dilated_stack_measurement_shows_gridding_holes_inside_the_box():
    model = nn.Sequential(conv(d=2, c_in=3), conv(d=2), conv(d=2))
    measured = empirical_receptive_field(model)
    assert measured.size == receptive_field(model) == 13
    rows, cols = np.nonzero(measured.grad)
    box = measured.grad[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    np.testing.assert_array_equal(box > 0, stack_footprint([LayerSpec("conv", dilation=2)] * 3) > 0)


def test_measurement_of_a_named_layer_stops_the_forward_there():
    model = nn.Sequential(conv(p=1, c_in=3), conv(p=1), nn.Flatten(), nn.Linear(C * 32 * 32, 2))
    assert empirical_receptive_field(model, layer="0").size == 3
    assert empirical_receptive_field(model).size == 5


def test_measurement_of_an_unknown_layer_names_it():
    model = nn.Sequential(conv(p=1, c_in=3))
    with pytest.raises(ValueError, match="the model has no layer named 'conv9'"):
        empirical_receptive_field(model, layer="conv9")


def test_measurement_refuses_an_input_that_clips_the_field():
    model = nn.Sequential(*[conv(p=1, c_in=3 if i == 0 else C) for i in range(6)])
    with pytest.raises(ValueError, match="reaches the border of the 12x12 input.*clipped"):
        empirical_receptive_field(model, (3, 12, 12))


# ---------------------------------------------------------------- forward-order tracing


class Block(nn.Module):
    def __init__(self, c_in):
        super().__init__()
        self.conv = conv(p=1, c_in=c_in)
        self.bn = nn.BatchNorm2d(C)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Reordered(nn.Module):
    def __init__(self):
        super().__init__()
        self.late = conv(s=2)  # defined first, called second
        self.c1 = nn.ModuleList([nn.Sequential(Block(3), Block(C))])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(C, 10))

    def forward(self, x):
        for stage in self.c1:
            x = stage(x)
        return self.head(self.late(x))


def test_rows_follow_execution_order_with_qualified_names():
    rows = receptive_field_table(Reordered())
    assert [r.name for r in rows] == ["c1.0.0.conv", "c1.0.1.conv", "late"]
    assert receptive_field(Reordered()) == 7


def test_global_pooling_ends_the_table_without_a_row():
    class FunctionalGlobal(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = conv(p=1, c_in=3)

        def forward(self, x):
            return F.avg_pool2d(self.c(x), 32).flatten(1)

    assert [r.name for r in receptive_field_table(FunctionalGlobal())] == ["c"]
    assert receptive_field(FunctionalGlobal()) == 3


@pytest.mark.parametrize("merge", ["add", "cat"])
def test_merging_branches_takes_the_larger_field(merge):
    model = TwoBranch(merge)
    assert [r.r_out for r in receptive_field_table(model)] == [5, 3]
    assert receptive_field(model) == 5


def test_merging_branches_with_different_jumps_names_the_layer():
    class Mismatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.strided = conv(s=2, p=1, c_in=3)
            self.valid = conv(k=5, c_in=3)

        def forward(self, x):
            return self.strided(x) + self.valid(x)

    with pytest.raises(
        ValueError,
        match=r"layer '<Mismatch>' \(Mismatch\): add merges maps with different jumps \[1, 2\]",
    ):
        receptive_field_table(Mismatch(), (3, 8, 8))


def test_table_restores_training_mode_and_leaves_gradients_alone():
    model = nn.Sequential(conv(p=1, c_in=3), nn.BatchNorm2d(C)).train()
    before = model[1].running_mean.clone()
    receptive_field_table(model)
    assert model.training and model[1].training
    assert torch.equal(model[1].running_mean, before)
    assert model[0].weight.grad is None


# ---------------------------------------------------------------- errors


def test_kernel_larger_than_padded_input_names_the_layer():
    model = nn.Sequential(conv(p=1, c_in=3), conv(k=7))
    with pytest.raises(
        ValueError,
        match=r"layer '1' \(Conv2d\): effective kernel 7 .* larger than the padded input 4",
    ):
        receptive_field_table(model, (3, 4, 4))


@pytest.mark.parametrize("attr", ["dilation", "stride"])
def test_zero_dilation_or_stride_is_refused_before_the_forward(attr):
    model = nn.Sequential(conv(p=1, c_in=3), conv())
    setattr(model[1], attr, (0, 0))
    with pytest.raises(
        ValueError, match=rf"layer '1' \(Conv2d\): {attr} must be a positive integer"
    ):
        receptive_field_table(model)


def test_upsample_is_unsupported_and_named():
    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = conv(p=1, c_in=3)
            self.up = nn.Upsample(scale_factor=2)

        def forward(self, x):
            return self.up(self.c(x))

    with pytest.raises(ValueError, match=r"layer 'up' \(Upsample\) is not supported: interpolate"):
        receptive_field_table(Decoder())


def test_model_without_spatial_layers_has_no_receptive_field():
    with pytest.raises(ValueError, match="Sequential has no spatial layer"):
        receptive_field(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), (3, 2, 2))


# ---------------------------------------------------------------- widget maths


def test_dilation_footprint_marks_kernel_squared_taps_on_a_dilated_grid():
    fp = dilation_footprint(3, 2)
    assert fp.shape == (5, 5) and fp.sum() == 9
    assert fp[0, 0] == fp[2, 4] == 1 and fp[1, 1] == 0
    assert dilation_footprint(3, 1).sum() == 9


def test_dilation_footprint_refuses_dilation_0():
    with pytest.raises(
        ValueError, match="dilation_footprint: kernel 3, dilation 0: dilation must be a positive"
    ):
        dilation_footprint(3, 0)


def test_rf_growth_includes_the_input_and_grows_linearly_or_geometrically():
    assert rf_growth(3, 1, 1, 3) == [1, 3, 5, 7]
    assert rf_growth(3, 2, 1, 2) == [1, 5, 9]
    assert rf_growth(3, 1, 2, 3) == [1, 3, 7, 15]


def test_table_from_specs_matches_the_model_table():
    specs = [
        LayerSpec("conv", stride=2, padding=1),
        LayerSpec("maxpool", 2, 2),
        LayerSpec("conv", dilation=2),
    ]
    model = nn.Sequential(conv(s=2, p=1, c_in=3), nn.MaxPool2d(2), conv(d=2))
    strip = lambda rows: [{k: v for k, v in vars(r).items() if k != "name"} for r in rows]  # noqa: E731
    assert strip(table_from_specs(specs)) == strip(receptive_field_table(model))
    assert [r.name for r in table_from_specs(specs)] == ["conv1", "maxpool2", "conv3"]


def test_table_from_specs_refuses_unknown_kinds_and_oversized_kernels():
    with pytest.raises(ValueError, match="layer 'fc' \\(dense\\): kind must be one of"):
        table_from_specs([LayerSpec("dense", name="fc")])
    with pytest.raises(
        ValueError, match="layer 'conv1' \\(conv\\): effective kernel 9 .* padded input 8"
    ):
        table_from_specs([LayerSpec("conv", dilation=4)], input_size=8)


def test_stack_footprint_shows_gridding_and_counts_paths():
    gridded = stack_footprint([LayerSpec("conv", dilation=2)] * 3, ndim=1)
    assert gridded.tolist() == [1, 0] * 6 + [1]
    exponential = stack_footprint([LayerSpec("conv", dilation=d) for d in (1, 2, 4)], ndim=1)
    assert len(exponential) == 15 and exponential.all()
    counts = stack_footprint([LayerSpec("conv")] * 3, ndim=1, counts=True)
    assert counts.tolist() == [1, 3, 6, 7, 6, 3, 1]
    assert stack_footprint([LayerSpec("conv", stride=2), LayerSpec("conv")]).shape == (7, 7)


def test_format_rf_table_has_a_header_and_one_line_per_row():
    rows = table_from_specs([LayerSpec("conv", padding=1), LayerSpec("maxpool", 2, 2)])
    lines = format_rf_table(rows).splitlines()
    assert lines[0].split() == list(COLUMNS)
    assert len(lines) == 1 + len(rows)
    assert lines[2].split() == [
        "maxpool2",
        "2",
        "2",
        "0",
        "1",
        "2",
        "32",
        "16",
        "1",
        "2",
        "3",
        "4",
        "1.0",
    ]


def test_format_rf_table_adds_both_axes_for_non_square_layers():
    rows = receptive_field_table(nn.Sequential(conv(k=(1, 3), c_in=3)))
    assert format_rf_table(rows).splitlines()[1].endswith("1x3")


# ---------------------------------------------------------------- effective receptive field


def test_effective_field_is_normalised_seeded_and_zero_outside_the_analytic_field():
    torch.manual_seed(0)
    model = nn.Sequential(conv(p=1, c_in=3), nn.ReLU(), conv(p=1), nn.ReLU(), conv(p=1)).train()
    erf = effective_receptive_field(model, n=8)
    assert erf.shape == (32, 32) and erf.max() == 1.0
    rows, cols = np.nonzero(erf)
    assert rows.max() - rows.min() + 1 <= 7 and cols.max() - cols.min() + 1 <= 7
    np.testing.assert_array_equal(erf, effective_receptive_field(model, n=8))
    assert model.training


# ---------------------------------------------------------------- effective-RF extent


def test_erf_extent_is_the_side_of_the_centred_square_holding_the_mass():
    delta = np.zeros((9, 9))
    delta[4, 4] = 1.0
    assert erf_extent(delta) == 1
    block = np.zeros((16, 16))
    block[5:10, 5:10] = 1.0  # a 5x5 square centred on pixel (7, 7)
    assert erf_extent(block, mass=1.0) == 5
    assert erf_extent(block, mass=0.3) == 3  # the central 3x3 holds 9/25 of it


def test_erf_extent_of_a_gaussian_grows_with_its_width():
    ys, xs = np.indices((41, 41)) - 20
    narrow, wide = (np.exp(-(ys**2 + xs**2) / (2 * s**2)) for s in (2.0, 5.0))
    assert erf_extent(narrow) < erf_extent(wide) < 41


def test_erf_extent_refuses_an_empty_map_with_a_message():
    with pytest.raises(ValueError, match="erf_extent: the map is all zeros"):
        erf_extent(np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"erf_extent: mass must be in \(0, 1\], got 0"):
        erf_extent(np.ones((4, 4)), mass=0)
