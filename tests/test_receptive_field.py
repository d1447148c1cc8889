"""Tests for course_lib.receptive_field: the recurrence by hand, the walk over a model's modules,
and the walk against gradient measurement on the course's networks and on others."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.vgg import make_layers

from course_lib.layers import Residual
from course_lib.models import PLANS, build_model, count_parameters
from course_lib.receptive_field import (
    LayerSpec,
    empirical_receptive_field,
    feature_map,
    format_rf_table,
    positive_probe,
    receptive_field,
    receptive_field_table,
    rf_step,
    stack_footprint,
    table_from_specs,
)

C = 4  # channels of the toy networks: the receptive field does not depend on width


def conv(k=3, s=1, p=0, d=1, c_in=C, c_out=C, **kw) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, **kw)


def published_net() -> nn.Sequential:
    """The write-up's network that lesson 02 rebuilds (mkthoma/era_v1, Session 9): its comments
    add the field up by hand to 47 at the 2x2 conv."""

    def unit(c_in, c_out, k=3, p=1, d=1):
        layer = nn.Conv2d(c_in, c_out, k, padding=p, dilation=d, bias=False)
        return nn.Sequential(layer, nn.ReLU(), nn.BatchNorm2d(c_out), nn.Dropout(0.1))

    def transition(c_in):
        return nn.Sequential(nn.Conv2d(c_in, 16, 1, bias=False))

    depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
    return nn.Sequential(OrderedDict(
        convblock1=unit(3, 16), convblock2=unit(16, 32), convblock3=unit(32, 32, p=0, d=2),
        transblock1=transition(32), convblock4=unit(16, 32), convblock5=unit(32, 64),
        convblock6=unit(64, 64, p=0, d=4), transblock2=transition(64),
        convblock7=unit(16, 32), convblock8=unit(32, 64), convblock9=unit(64, 64, p=0, d=8),
        transblock3=transition(64), convblock10=nn.Sequential(depthwise, *unit(16, 32, 1, 0)),
        convblock11=unit(32, 64), convblock12=unit(64, 64, k=2, p=0),
        gap=nn.AvgPool2d(2), flatten=nn.Flatten(), fc=nn.Linear(64, 10, bias=False),
    ))  # fmt: skip


# ---------------------------------------------------------------- the recurrence (lesson 02)


def test_three_3x3_convs_have_rf_7_and_a_stride_doubles_the_next_layers_growth():
    plain = table_from_specs([LayerSpec("conv", padding=1)] * 3)
    assert [r.r_out for r in plain] == [3, 5, 7] and plain[-1].n_out == 32
    strided = table_from_specs([LayerSpec("conv", stride=2, padding=1), LayerSpec("conv")])
    assert [(r.j_out, r.r_out, r.n_out) for r in strided] == [(2, 3, 16), (2, 7, 14)]


def test_dilation_2_makes_a_3x3_kernel_span_5_pixels_and_moves_the_start():
    (row,) = table_from_specs([LayerSpec("conv", dilation=2)])
    assert (row.kind, row.n_in, row.n_out, row.r_in, row.r_out, row.start) == (
        "conv", 32, 28, 1, 5, 2.5
    )
    (pad,) = table_from_specs([LayerSpec("conv", padding=2, dilation=2)])
    assert (pad.n_out, pad.start) == (32, 0.5)  # padded: the first unit sits on the first pixel


def test_unpadded_dilation_8_shrinks_32_to_16():
    assert rf_step(LayerSpec("conv", dilation=8), 32, 1, 1, 0.5).n_out == 16


def test_a_kernel_wider_than_the_padded_input_is_refused_naming_the_layer():
    with pytest.raises(
        ValueError, match=r"layer 'conv2' \(conv\): effective kernel 9 .* padded input 8"
    ):
        table_from_specs([LayerSpec("conv", padding=1), LayerSpec("conv", dilation=4)], 8)


def test_table_names_unnamed_layers_by_kind_and_position():
    specs = [LayerSpec("conv"), LayerSpec("maxpool", 2, 2), LayerSpec("avgpool", name="gap")]
    assert [r.name for r in table_from_specs(specs)] == ["conv1", "maxpool2", "gap"]


def test_format_rf_table_has_a_header_and_one_line_per_layer():
    rows = table_from_specs([LayerSpec("conv", padding=1), LayerSpec("maxpool", 2, 2)])
    lines = format_rf_table(rows).splitlines()
    assert lines[0].replace("|", " ").split() == [
        "name", "kind", "kernel", "stride", "padding", "dilation",
        "n_in", "n_out", "j_in", "j_out", "r_in", "r_out", "start",
    ]  # fmt: skip
    assert len(lines) == 2 + len(rows)  # the header, its rule, the rows
    assert lines[-1].replace("|", " ").split() == [
        "maxpool2", "maxpool", "2", "2", "0", "1", "32", "16", "1", "2", "3", "4", "1.0",
    ]  # fmt: skip


def test_stack_footprint_shows_gridding_and_counts_paths():
    gridded = stack_footprint([LayerSpec("conv", dilation=2)] * 3)
    assert gridded.tolist() == [1, 0, 3, 0, 6, 0, 7, 0, 6, 0, 3, 0, 1]
    doubling = stack_footprint([LayerSpec("conv", dilation=d) for d in (1, 2, 4)])
    assert len(doubling) == 15 and doubling.all()
    assert stack_footprint([LayerSpec("conv")] * 3).tolist() == [1, 3, 6, 7, 6, 3, 1]
    wide_stride = stack_footprint([LayerSpec("conv", 2, 3)] * 2)
    assert wide_stride.tolist() == [1, 1, 0, 1, 1]
    assert stack_footprint([]).tolist() == [1]


# ---------------------------------------------------------------- the walk over modules


def test_a_sequential_gives_the_same_table_as_its_specs_with_module_names():
    model = nn.Sequential(
        nn.Sequential(conv(s=2, p=1, c_in=3), nn.BatchNorm2d(C), nn.ReLU()),
        nn.MaxPool2d(2),
        conv(d=2),
        nn.Dropout(0.1),
    )
    specs = [LayerSpec("conv", 3, 2, 1), LayerSpec("maxpool", 2, 2), LayerSpec("conv", dilation=2)]
    rows, expected = receptive_field_table(model), table_from_specs(specs)
    assert [r.name for r in rows] == ["0.0", "1", "2"]
    assert [vars(r) | {"name": ""} for r in rows] == [vars(r) | {"name": ""} for r in expected]


def test_a_residual_block_has_the_larger_field_of_its_branch_and_skip():
    body = nn.Sequential(conv(p=1), nn.ReLU(), conv(p=2, d=2))
    model = nn.Sequential(conv(p=1, c_in=3), Residual(body), conv(k=1))
    assert [r.r_out for r in receptive_field_table(model)] == [3, 5, 9, 9]
    assert receptive_field(model) == 9


def test_a_torchvision_block_follows_its_strided_branch_and_its_projection():
    block = torchvision.models.resnet.BasicBlock(
        C, 2 * C, stride=2, downsample=nn.Sequential(conv(k=1, s=2, c_out=2 * C))
    )
    rows = receptive_field_table(nn.Sequential(conv(p=1, c_in=3), block))
    assert [(r.name, r.r_out, r.j_out) for r in rows] == [
        ("0", 3, 1), ("1.conv1", 5, 2), ("1.conv2", 9, 2), ("1.downsample.0", 3, 2),
    ]  # fmt: skip
    assert receptive_field(nn.Sequential(conv(p=1, c_in=3), block)) == 9


def test_global_pooling_flatten_and_linear_end_the_table():
    head = nn.Sequential(conv(p=1, c_in=3), conv(p=1))
    ends = [nn.AdaptiveAvgPool2d(1), nn.AvgPool2d(32), nn.MaxPool2d(32), nn.Flatten()]
    for end in ends:
        model = nn.Sequential(*head, end, nn.Flatten(), nn.Linear(C, 2))
        assert [r.name for r in receptive_field_table(model)] == ["0", "1"], end
        assert receptive_field(model) == 5
    not_global = nn.Sequential(*head, nn.AvgPool2d(2), nn.Flatten())
    assert receptive_field(not_global) == 6


def test_vgg16_has_the_field_of_212_that_araujo_et_al_report():
    # Distill 2019, "Computing receptive fields of convolutional neural networks", its table
    with torch.device("meta"):  # no weights needed: the walk reads the geometry
        model = torchvision.models.vgg16()
    assert receptive_field(model, (3, 224, 224)) == 212


def test_a_model_without_spatial_layers_has_a_field_of_one_pixel():
    assert receptive_field(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), (3, 2, 2)) == 1


def test_the_field_is_that_of_the_last_map_of_more_than_one_unit():
    model = nn.Sequential(conv(c_in=3), conv(), nn.Flatten())  # 5x5 -> 3x3 -> 1x1
    assert [r.r_out for r in receptive_field_table(model, (3, 5, 5))] == [3, 5]
    assert receptive_field(model, (3, 5, 5)) == 3
    assert feature_map(model, torch.zeros(1, 3, 5, 5)).shape == (1, C, 3, 3)


def test_an_unknown_module_is_refused_naming_the_layer():
    class MyBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv(p=1)

        def forward(self, x):
            return torch.cat([x, self.conv(x)], 1)

    model = nn.Sequential(OrderedDict(stem=conv(p=1, c_in=3), c3=nn.Sequential(MyBlock())))
    match = r"^receptive_field: cannot follow layer 'c3.0' \(MyBlock\); it follows Sequential"
    with pytest.raises(ValueError, match=match):
        receptive_field(model)
    with pytest.raises(ValueError, match=r"cannot follow layer 'stem' \(Upsample\)"):
        receptive_field(nn.Sequential(OrderedDict(stem=nn.Upsample(scale_factor=2))))


@pytest.mark.parametrize(
    ("layer", "why"),
    [
        (conv(k=(1, 3), c_in=3), r"'kernel_size': \(1, 3\)"),
        (conv(p="same", c_in=3), r"'padding': \('same', 'same'\)"),
        (nn.MaxPool2d(3, 2, ceil_mode=True), "without ceil_mode"),
    ],
)
def test_layers_the_recurrence_does_not_follow_are_refused_naming_them(layer, why):
    name = type(layer).__name__
    with pytest.raises(ValueError, match=rf"receptive_field: layer '0' \({name}\) .*{why}"):
        receptive_field(nn.Sequential(layer))


def test_a_residual_whose_branch_and_skip_differ_is_refused():
    model = nn.Sequential(Residual(conv(s=2, p=1, c_in=3, c_out=3)))
    with pytest.raises(ValueError, match=r"layer '0' \(Residual\) adds maps of different sizes"):
        receptive_field(model)


def test_a_non_square_input_is_refused():
    with pytest.raises(ValueError, match="the input must be square, got 32x16"):
        receptive_field(nn.Sequential(conv(c_in=3)), (3, 32, 16))


# ---------------------------------------------------------------- the walk == the gradient


def truncated_resnet18() -> nn.Sequential:
    return nn.Sequential(*list(torchvision.models.resnet18().children())[:6])  # up to layer2


def truncated_resnet50() -> nn.Sequential:
    return nn.Sequential(*list(torchvision.models.resnet50().children())[:5])  # up to layer1


def vgg_style() -> nn.Sequential:
    features = make_layers([8, "M", 16, "M", 32, 32, "M"], batch_norm=True)
    return nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


OTHER_NETWORKS = {
    "plain_stack": lambda: nn.Sequential(conv(p=1, c_in=3), nn.ReLU(), conv(), conv(s=2, d=3)),
    "published": published_net,
    "resnet18_to_layer2": truncated_resnet18,
    "resnet50_to_layer1": truncated_resnet50,
    "vgg_style": vgg_style,
}


@pytest.mark.parametrize("name", PLANS)
def test_the_walk_agrees_with_the_gradient_on_every_course_network(name):
    model = build_model(name)
    rf = receptive_field(model)
    assert empirical_receptive_field(model, (3, rf + 9, rf + 9)).size == rf


@pytest.mark.parametrize("name", OTHER_NETWORKS)
def test_the_walk_agrees_with_the_gradient_on_networks_the_course_does_not_build(name):
    model = OTHER_NETWORKS[name]()
    rf = receptive_field(model, (3, 64, 64))
    measured = empirical_receptive_field(model, (3, rf + 13, rf + 13))
    assert measured.size == rf and measured.hw == (rf, rf)


def test_the_published_network_measures_46_at_the_2x2_conv_and_47_after_its_pool():
    assert count_parameters(published_net()) == 173_856  # as the write-up states: the same net
    rows = {r.name: r.r_out for r in receptive_field_table(published_net())}
    assert (rows["convblock12.0"], rows["gap"]) == (46, 47)
    # its pool leaves one unit, whose field is 47: a map of one unit is not the last map
    assert receptive_field(published_net()) == 46
    assert empirical_receptive_field(published_net(), (3, 64, 64), "gap").size == 47


def test_the_gradient_measures_models_the_walk_refuses_even_with_a_head_for_32x32():
    class Custom(nn.Module):  # not a chain the walk knows, and flattening by hand
        def __init__(self):
            super().__init__()
            self.a, self.b, self.fc = conv(p=1, c_in=3), conv(d=2), nn.Linear(C * 28 * 28, 10)

        def forward(self, x):
            return self.fc(self.b(torch.relu(self.a(x))).flatten(1))

    with pytest.raises(ValueError, match=r"cannot follow layer '<model>' \(Custom\)"):
        receptive_field(Custom())
    assert empirical_receptive_field(Custom(), (3, 48, 48)).size == 7  # the head fails at 48


def test_a_dilated_stack_measures_its_field_with_the_holes_stack_footprint_predicts():
    measured = empirical_receptive_field(nn.Sequential(*[conv(d=2, c_in=3)] + [conv(d=2)] * 2))
    rows, cols = np.nonzero(measured.grad)
    box = measured.grad[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    row = stack_footprint([LayerSpec("conv", dilation=2)] * 3) > 0
    np.testing.assert_array_equal(box > 0, np.outer(row, row))


def test_measurement_refuses_an_input_that_clips_the_field():
    model = nn.Sequential(conv(p=1, c_in=3), *[conv(p=1) for _ in range(5)])
    with pytest.raises(ValueError, match="reaches the border of the 12x12 input.*clipped"):
        empirical_receptive_field(model, (3, 12, 12))


def test_positive_probe_is_a_float64_copy_with_averaging_convs_and_no_batchnorm_or_max():
    model = nn.Sequential(conv(p=1, c_in=3), nn.BatchNorm2d(C), nn.MaxPool2d(2)).train()
    probe = positive_probe(model)
    assert isinstance(probe[1], nn.Identity) and isinstance(probe[2], nn.AvgPool2d)
    assert probe[0].weight.dtype == torch.float64 and not probe.training
    assert torch.all(probe[0].weight == 1 / 27)
    assert isinstance(model[1], nn.BatchNorm2d) and model.training  # the model is untouched


# ---------------------------------------------------------------- feature_map


def test_feature_map_stops_at_the_last_spatial_map_or_at_a_named_layer():
    model = nn.Sequential(conv(p=1, c_in=3), conv(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.zeros(2, 3, 32, 32)
    assert feature_map(model, x).shape == (2, C, 30, 30)
    assert feature_map(model, x, "0").shape == (2, C, 32, 32)
    assert feature_map(nn.Sequential(conv(c_in=3)), x).shape == (2, C, 30, 30)  # the output


def test_feature_map_names_a_layer_that_is_missing_or_never_called():
    class Partial(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = conv(p=1, c_in=3), conv()

        def forward(self, x):
            return self.used(x)

    model = Partial()
    with pytest.raises(ValueError, match="feature_map: the model has no layer named 'conv9'"):
        feature_map(model, torch.zeros(1, 3, 8, 8), "conv9")
    with pytest.raises(ValueError, match="layer 'unused' is not called in the forward pass"):
        feature_map(model, torch.zeros(1, 3, 8, 8), "unused")
