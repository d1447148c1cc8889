import pytest
import torch
from torch import nn

from course_lib.layers import (
    ConvBNReLU,
    DepthwiseSeparableConv2d,
    DilatedDownsample,
    SpatialSeparableConv2d,
    residual_pair,
)
from course_lib.models import count_parameters


def test_conv_bn_relu_keeps_size_by_default_and_valid_padding_trims_dilated_span():
    x = torch.randn(1, 4, 16, 16)
    assert ConvBNReLU(4, 8, 3, dilation=3)(x).shape == (1, 8, 16, 16)
    assert ConvBNReLU(4, 8, 3, dilation=3, padding=0)(x).shape == (1, 8, 10, 10)


@pytest.mark.parametrize("c_in, c_out, k", [(16, 32, 3), (64, 128, 3), (32, 32, 5)])
def test_depthwise_separable_has_1_over_cout_plus_1_over_k2_of_the_weights(c_in, c_out, k):
    separable = count_parameters(DepthwiseSeparableConv2d(c_in, c_out, k))
    standard = count_parameters(nn.Conv2d(c_in, c_out, k, bias=False))
    assert separable == c_in * k * k + c_in * c_out
    assert separable / standard == pytest.approx(1 / c_out + 1 / k**2)


def test_spatial_separable_equals_full_conv_with_rank_one_kernel():
    torch.manual_seed(0)
    col, row = torch.randn(3), torch.randn(3)
    full = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    full.weight.data = torch.outer(col, row)[None, None]
    sep = SpatialSeparableConv2d(1, 1, 3)
    sep.vertical.weight.data = col.view(1, 1, 3, 1)
    sep.horizontal.weight.data = row.view(1, 1, 1, 3)
    x = torch.randn(2, 1, 9, 9)
    torch.testing.assert_close(sep(x), full(x))


@pytest.mark.parametrize(("size", "dilation"), [(32, 2), (24, 4), (16, 4), (9, 1)])
def test_dilated_downsample_trims_two_d_pixels_without_stride(size, dilation):
    down = DilatedDownsample(8, 8, dilation)
    conv = next(m for m in down.modules() if isinstance(m, nn.Conv2d))
    assert conv.dilation[0] == dilation and conv.stride == (1, 1) and conv.padding == (0, 0)
    out = size - 2 * dilation
    assert down(torch.randn(1, 8, size, size)).shape[-2:] == (out, out)


def test_residual_pair_adds_its_input():
    block = residual_pair(4)
    for p in block.body.parameters():
        nn.init.zeros_(p)
    x = torch.randn(1, 4, 8, 8)
    torch.testing.assert_close(block.eval()(x), x)
