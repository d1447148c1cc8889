"""Tests for course_lib.conv_arithmetic: formulas against PyTorch, counts, rank-1 algebra, census."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from course_lib.conv_arithmetic import (
    census_table,
    comparison_table,
    conv_cost,
    conv_from_kernel,
    conv_kind,
    conv_layers,
    conv_matrix,
    conv_output_size,
    conv_transpose_output_size,
    equivalent_kernel,
    kernel_rank,
    layers_table,
    rank1_error,
    rank1_factors,
    separable_ratio_table,
    spatial_separable_from_kernel,
)
from course_lib.layers import DepthwiseSeparableConv2d, SpatialSeparableConv2d
from course_lib.models import build_model, count_parameters

GEOMETRIES = [  # (n, kernel, stride, padding, dilation)
    (32, 3, 1, 1, 1),
    (32, 3, 1, 0, 8),
    (7, 3, 2, 0, 1),
    (8, 5, 3, 2, 2),
    (4, 3, 1, 1, 2),
    (5, 1, 2, 0, 1),
]


@pytest.mark.parametrize("n, k, s, p, d", GEOMETRIES)
def test_conv_output_size_matches_pytorch(n, k, s, p, d):
    y = nn.Conv2d(1, 1, k, s, p, d)(torch.zeros(1, 1, n, n))
    assert conv_output_size(n, k, s, p, d) == y.shape[-1]


@pytest.mark.parametrize("n, k, s, p, d", GEOMETRIES)
def test_conv_transpose_output_size_matches_pytorch(n, k, s, p, d):
    for op in range(max(s, d)):  # PyTorch's rule: output_padding < max(stride, dilation)
        layer = nn.ConvTranspose2d(1, 1, k, s, p, op, dilation=d)
        y = layer(torch.zeros(1, 1, n, n))
        assert conv_transpose_output_size(n, k, s, p, d, op) == y.shape[-1]


def test_transposed_size_undoes_the_conv_size():
    n = conv_output_size(32, 3, stride=2, padding=1)
    assert conv_transpose_output_size(n, 3, stride=2, padding=1, output_padding=1) == 32


def test_output_size_formulas_explain_bad_arguments():
    with pytest.raises(ValueError, match="kernel spans 17 pixels but the padded input has only 8"):
        conv_output_size(8, 3, dilation=8)
    with pytest.raises(ValueError, match="stride must be an integer >= 1, got 0"):
        conv_output_size(8, 3, stride=0)
    with pytest.raises(ValueError, match="output_padding must be smaller than stride or dilation"):
        conv_transpose_output_size(4, 3, stride=2, output_padding=2)


def test_standard_conv_cost_is_cin_cout_k2_per_output_pixel():
    cost = conv_cost(nn.Conv2d(64, 64, 3, padding=1, bias=False), (64, 32, 32), "std")
    assert cost.output_shape == (64, 32, 32)
    assert cost.params == 64 * 64 * 9
    assert cost.mult_adds == 64 * 64 * 9 * 32 * 32
    assert str(cost) == ("std: 64x32x32 -> 64x32x32, 36,864 parameters, 37,748,736 multiply-adds")


def test_depthwise_separable_cost_adds_its_two_convs():
    cost = conv_cost(DepthwiseSeparableConv2d(16, 32, 3), (16, 8, 8))
    assert cost.params == 16 * 9 + 16 * 32
    assert cost.mult_adds == (16 * 9 + 16 * 32) * 8 * 8


def test_transposed_conv_counts_each_input_pixel_times_its_kernel():
    layer = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1, bias=False)
    cost = conv_cost(layer, (8, 5, 5))
    assert cost.output_shape == (4, 10, 10)
    assert cost.mult_adds == 8 * 5 * 5 * 4 * 9


def test_mult_adds_agree_with_torchinfo_on_plain_convs():
    torchinfo = pytest.importorskip("torchinfo")
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.Conv2d(8, 8, 3, dilation=2, groups=8, bias=False),
        nn.Conv2d(8, 16, 1, bias=False),
    )
    info = torchinfo.summary(model, input_size=(1, 3, 12, 12), verbose=0)
    assert conv_cost(model, (3, 12, 12)).mult_adds == info.total_mult_adds


def test_conv_cost_leaves_the_module_in_training_mode_and_bn_stats_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    before = model[1].running_mean.clone()
    conv_cost(model, (3, 8, 8))
    assert model.training
    assert torch.equal(model[1].running_mean, before)


def test_conv_cost_explains_a_bad_input_shape():
    with pytest.raises(ValueError, match=r"input_shape must be \(channels, height, width\)"):
        conv_cost(nn.Conv2d(3, 4, 3), (1, 3, 8, 8))


def test_comparison_table_is_fixed_width_and_relative_to_the_baseline():
    layers = {
        "standard": nn.Conv2d(8, 8, 3, padding=1, bias=False),
        "pointwise": nn.Conv2d(8, 8, 1, bias=False),
    }
    table = comparison_table(layers, (8, 4, 4))
    lines = table.splitlines()
    assert lines[0].split() == ["layer", "output", "params", "mult-adds", "params", "ratio"] + [
        "MACs",
        "ratio",
    ]
    assert lines[2].split() == ["standard", "8x4x4", "576", "9,216", "1.000", "1.000"]
    assert lines[3].split() == ["pointwise", "8x4x4", "64", "1,024", "0.111", "0.111"]
    assert len(lines[2]) == len(lines[3])  # fixed width
    assert lines[-1] == "input 8x4x4; ratios are relative to 'standard'"
    assert table == comparison_table(layers, (8, 4, 4))  # deterministic


def test_comparison_table_rejects_an_unknown_baseline():
    with pytest.raises(ValueError, match="baseline 'big' is not one of \\['a'\\]"):
        comparison_table({"a": nn.Conv2d(1, 1, 1)}, (1, 2, 2), baseline="big")


def test_separable_ratio_table_measures_exactly_one_over_cout_plus_one_over_k2():
    table = separable_ratio_table(32, [16, 64], kernel=3)
    rows = [line.split() for line in table.splitlines()[2:4]]
    for c_out, standard, depthwise, pointwise, _dw, _pw, total, formula in rows:
        assert total == formula
        assert int(standard.replace(",", "")) == 32 * int(c_out) * 9
        assert int(depthwise.replace(",", "")) == 32 * 9
        assert int(pointwise.replace(",", "")) == 32 * int(c_out)


def test_separable_ratio_table_puts_one_over_cout_on_the_depthwise_half():
    # The depthwise half is the 1/c_out term and the pointwise half the 1/k^2 term, not the
    # other way round: with k = 5 and c_out = 8 the two terms differ.
    table = separable_ratio_table(16, [8], kernel=5)
    header = table.splitlines()[0].split()
    row = dict(zip(header, table.splitlines()[2].split(), strict=False))
    assert float(row["dw/std"]) == pytest.approx(1 / 8, abs=5e-5)
    assert float(row["pw/std"]) == pytest.approx(1 / 25, abs=5e-5)
    assert table.splitlines()[-1] == "c_in = 16, k = 5, 1/k^2 = 0.0400"


def test_rank_one_kernel_makes_the_separable_pair_equal_the_full_conv():
    sobel = torch.outer(torch.tensor([1.0, 2.0, 1.0]), torch.tensor([1.0, 0.0, -1.0]))
    assert kernel_rank(sobel) == 1
    assert rank1_error(sobel) == pytest.approx(0.0, abs=1e-7)
    x = torch.randn(2, 1, 9, 9, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(
            spatial_separable_from_kernel(sobel)(x), conv_from_kernel(sobel)(x)
        )


def test_full_rank_kernel_loses_exactly_the_eckart_young_error():
    k = torch.randn(3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    col, row = rank1_factors(k)
    s = torch.linalg.svdvals(k)
    assert kernel_rank(k) == 3
    assert rank1_error(k) == pytest.approx(float(s[1:].norm() / s.norm()))
    assert float((k - torch.outer(col, row)).norm() / k.norm()) == pytest.approx(rank1_error(k))


def test_every_spatial_separable_filter_has_rank_one_and_reproduces_the_module():
    torch.manual_seed(0)
    sep = SpatialSeparableConv2d(3, 4, 5)
    w = equivalent_kernel(sep)
    assert w.shape == (4, 3, 5, 5)
    assert all(kernel_rank(w[o, i]) == 1 for o in range(4) for i in range(3))
    x = torch.randn(1, 3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(sep(x), F.conv2d(x, w, padding=2))


def test_rank_helpers_explain_a_kernel_of_the_wrong_shape():
    with pytest.raises(
        ValueError, match=r"kernel must be a 2-D tensor \(k_h, k_w\), got \(1, 3, 3\)"
    ):
        kernel_rank(torch.ones(1, 3, 3))
    with pytest.raises(ValueError, match="square with an odd side, got 4x4"):
        conv_from_kernel(torch.ones(4, 4))
    with pytest.raises(ValueError, match="expected a SpatialSeparableConv2d, got Conv2d"):
        equivalent_kernel(nn.Conv2d(1, 1, 3))


def test_transposed_conv_multiplies_by_the_transpose_of_the_conv_matrix():
    conv = nn.Conv2d(1, 1, 3, stride=2, bias=False)
    up = nn.ConvTranspose2d(1, 1, 3, stride=2, bias=False)
    up.weight.data = conv.weight.data.clone()
    c = conv_matrix(conv, (1, 5, 5))
    assert c.shape == (4, 25)
    torch.testing.assert_close(conv_matrix(up, (1, 2, 2)), c.T)


def test_conv_kind_tells_the_six_kinds_apart():
    assert conv_kind(nn.Conv2d(4, 8, 3)) == "standard"
    assert conv_kind(nn.Conv2d(4, 8, 1)) == "pointwise"
    assert conv_kind(nn.Conv2d(4, 4, 3, groups=4, dilation=2)) == "depthwise"
    assert conv_kind(nn.Conv2d(4, 8, 3, groups=2)) == "grouped"
    assert conv_kind(nn.Conv2d(4, 8, (3, 1))) == "asymmetric"
    assert conv_kind(nn.ConvTranspose2d(4, 8, 3)) == "transposed"
    with pytest.raises(ValueError, match="expected nn.Conv2d or nn.ConvTranspose2d, got Linear"):
        conv_kind(nn.Linear(2, 2))


def test_census_of_the_final_model_finds_its_depthwise_and_dilated_convs():
    model = build_model("dilated")
    rows = conv_layers(model)
    dilated = [r for r in rows if r.dilation > 1]
    down = [r for r in dilated if ".down." in r.name]
    assert [r.name for r in down] == [
        f"c{i}.down.0" + ("" if i == 1 else ".depthwise") for i in (1, 2, 3, 4)
    ]
    assert [r.dilation for r in down] == [2, 2, 4, 4]
    # Unpadded, each trims 2d pixels: 32 -> 28 -> 24 -> 16 -> 8.
    assert [r.padding for r in down] == [0, 0, 0, 0]
    assert [(r.input_shape[1], r.output_shape[1]) for r in down] == [
        (32, 28), (28, 24), (24, 16), (16, 8),
    ]  # fmt: skip
    # C4's residual pair is dilated too, padded so that it keeps the 16x16 map.
    res = [r for r in dilated if ".res." in r.name]
    assert [(r.name[:2], r.dilation, r.padding) for r in res] == [("c4", 2, 2), ("c4", 2, 2)]
    assert all(r.input_shape[1] == r.output_shape[1] == 16 for r in res)
    assert len(dilated) == len(down) + len(res)
    assert sum(r.kind == "depthwise" for r in rows) == sum(r.kind == "pointwise" for r in rows)
    conv_params = sum(count_parameters(m) for m in model.modules() if isinstance(m, nn.Conv2d))
    assert sum(r.params for r in rows) == conv_params
    census = census_table(rows).splitlines()
    assert census[-1].split()[:4] == ["all", "convs", str(len(rows)), str(len(dilated))]
    assert layers_table(dilated).splitlines()[2].split()[:3] == ["c1.down.0", "standard", "3x3"]


def test_census_tables_refuse_an_empty_list():
    with pytest.raises(ValueError, match="census_table: no conv layers given"):
        census_table([])
    with pytest.raises(ValueError, match="layers_table: no conv layers given"):
        layers_table([])
