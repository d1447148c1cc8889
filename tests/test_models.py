import pytest
import torch
from torch import nn

from course_lib.models import MODELS, FourBlockNet, NetPlan, build_model, count_parameters
from course_lib.receptive_field import receptive_field


def convs(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_maps_a_cifar_batch_to_10_logits(name):
    model = build_model(name).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_dilated_model_obeys_every_rule_of_the_assignment():
    model = build_model("dilated")
    assert count_parameters(model) < 200_000
    assert receptive_field(model, (3, 32, 32)) > 44
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert all(c.stride == (1, 1) for c in convs(model)), "no strided conv anywhere"
    assert any(c.groups == c.in_channels > 1 for c in convs(model)), "a depthwise conv"
    assert any(c.dilation[0] > 1 for c in convs(model)), "a dilated conv"
    assert isinstance(model.gap, nn.AdaptiveAvgPool2d) and model.gap.output_size in (1, (1, 1))


def block_sizes(model):
    """Side of the map after C1, C2, C3 and C4."""
    x = model.prep(torch.randn(1, 3, 32, 32))
    sizes = []
    for block in (model.c1, model.c2, model.c3, model.c4):
        x = block(x)
        sizes.append(x.shape[-1])
    return sizes


def test_dilated_model_trims_the_map_32_28_24_16_8_and_sees_47_pixels():
    model = build_model("dilated").eval()
    assert block_sizes(model) == [28, 24, 16, 8]
    assert receptive_field(model, (3, 32, 32)) == 47


def test_a_padded_downsampling_conv_trims_less_with_the_same_parameters():
    # Dilations 8, 4, 2 unpadded halve the map; then dilation 2 with padding 1 trims 2 pixels.
    halving = FourBlockNet(
        NetPlan(down_dilation=(8, 4, 2, 2), down_padding=(0, 0, 0, 1), res_dilation=(1, 1, 1, 1))
    ).eval()
    assert block_sizes(halving) == [16, 8, 4, 2]
    assert receptive_field(halving, (3, 32, 32)) == 51
    assert count_parameters(halving) == count_parameters(build_model("dilated"))


@pytest.mark.parametrize("name", ["strided", "maxpool"])
def test_strided_and_maxpool_variants_halve_the_map_32_16_8_4_2(name):
    assert block_sizes(build_model(name).eval()) == [16, 8, 4, 2]


def test_plan_that_trims_the_map_to_nothing_names_the_block():
    with pytest.raises(ValueError, match="shrinks the 32px input to nothing in C3"):
        FourBlockNet(NetPlan(down_dilation=(4, 4, 8, 2)))


def test_strided_and_maxpool_variants_downsample_the_way_their_names_say():
    assert any(c.stride == (2, 2) for c in convs(build_model("strided")))
    assert any(isinstance(m, nn.MaxPool2d) for m in build_model("maxpool").modules())


def test_unknown_model_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown model 'resnet'.*dilated"):
        build_model("resnet")


def test_a_downsampling_conv_padded_as_much_as_it_is_dilated_is_refused():
    with pytest.raises(ValueError, match="padding 2 >= dilation 2 would not shrink the map"):
        FourBlockNet(NetPlan(down_padding=(0, 2, 0, 0)))


def test_separable_blocks_replace_the_conv_of_torchvisions_block():
    model = build_model("dilated")
    assert [type(m).__name__ for m in model.c3.down] == [
        "DepthwiseSeparableConv2d", "BatchNorm2d", "ReLU"
    ]
    assert list(model.prep.state_dict())[:2] == ["0.weight", "1.weight"]
