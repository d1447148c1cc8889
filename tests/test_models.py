import pytest
import torch
from torch import nn

from course_lib.models import MODELS, build_model, count_parameters
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


def test_dilated_model_blocks_halve_the_map_32_16_8_4_2():
    model = build_model("dilated").eval()
    x = model.prep(torch.randn(1, 3, 32, 32))
    sizes = []
    for block in (model.c1, model.c2, model.c3, model.c4):
        x = block(x)
        sizes.append(x.shape[-1])
    assert sizes == [16, 8, 4, 2]


def test_strided_and_maxpool_variants_downsample_the_way_their_names_say():
    assert any(c.stride == (2, 2) for c in convs(build_model("strided")))
    assert any(isinstance(m, nn.MaxPool2d) for m in build_model("maxpool").modules())


def test_unknown_model_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown model 'resnet'.*dilated"):
        build_model("resnet")
