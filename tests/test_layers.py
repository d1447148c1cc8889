import pytest
import torch
from torch import nn

from course_lib.layers import DepthwiseSeparableConv2d, conv_bn_relu, residual_pair
from course_lib.models import count_parameters


@pytest.mark.parametrize("c_in, c_out, k", [(16, 32, 3), (64, 128, 3), (32, 32, 5)])
def test_depthwise_separable_has_1_over_cout_plus_1_over_k2_of_the_weights(c_in, c_out, k):
    separable = count_parameters(DepthwiseSeparableConv2d(c_in, c_out, k))
    standard = count_parameters(nn.Conv2d(c_in, c_out, k, bias=False))
    assert separable == c_in * k * k + c_in * c_out
    assert separable / standard == pytest.approx(1 / c_out + 1 / k**2)


def test_depthwise_separable_keeps_the_size_by_default_like_a_padded_conv():
    x = torch.randn(1, 4, 16, 16)
    assert DepthwiseSeparableConv2d(4, 8, 3, dilation=3)(x).shape == (1, 8, 16, 16)
    assert DepthwiseSeparableConv2d(4, 8, 3, 2)(x).shape == (1, 8, 8, 8)
    assert DepthwiseSeparableConv2d(4, 8, 3, padding=0, dilation=2)(x).shape == (1, 8, 12, 12)


def test_fp32_flag_runs_only_the_depthwise_half_outside_autocast_and_only_while_training():
    layer = DepthwiseSeparableConv2d(4, 8, 3, dilation=2)
    layer.train_depthwise_in_fp32 = True
    seen = []
    layer.depthwise.register_forward_hook(lambda m, args, y: seen.append(y.dtype))
    x = torch.randn(1, 4, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16  # the pointwise half is back under autocast
        with torch.no_grad():
            layer(x)
    assert seen == [torch.float32, torch.bfloat16]


def test_conv_bn_relu_is_torchvisions_block_with_the_checkpoints_keys():
    block = conv_bn_relu(4, 8, dilation=2)
    assert list(block.state_dict())[:3] == ["0.weight", "1.weight", "1.bias"]
    assert block[0].bias is None and block[0].padding == (2, 2)
    separable = conv_bn_relu(4, 8, separable=True, padding=0, dilation=2)
    assert list(separable.state_dict())[:2] == ["0.depthwise.weight", "0.pointwise.weight"]
    assert separable(torch.randn(2, 4, 16, 16)).shape == (2, 8, 12, 12)


def test_residual_pair_adds_its_input():
    block = residual_pair(4)
    for p in block.body.parameters():
        nn.init.zeros_(p)
    x = torch.randn(1, 4, 8, 8)
    torch.testing.assert_close(block.eval()(x), x)
