"""Tests for course_lib.conv_arithmetic: the conv list that lesson 01 writes and lesson 04 uses."""

from torch import nn

from course_lib.conv_arithmetic import conv_layers
from course_lib.models import build_model


def test_conv_layers_lists_every_conv_of_the_final_model_in_forward_order():
    model = build_model("dilated")
    rows = conv_layers(model)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [r.conv for r in rows] == convs  # modules() follows forward here: one chain of blocks
    assert rows[0].name == "prep.0" and rows[0].input_shape == (3, 32, 32)
    assert rows[-1].name == "c4.down.0.pointwise" and rows[-1].output_shape == (112, 8, 8)
    for r in rows:
        assert r.params == sum(p.numel() for p in r.conv.parameters())
        # no bias: one multiply-add per weight per pixel of an output channel
        assert r.mult_adds == r.params * r.output_shape[1] * r.output_shape[2]


def test_conv_layers_follows_the_input_size_and_finds_transposed_convs():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, bias=False), nn.ConvTranspose2d(4, 1, 2, 2))
    down, up = conv_layers(model, (1, 9, 9))
    assert (down.name, down.output_shape, down.mult_adds) == ("0", (4, 4, 4), 36 * 16)
    assert (up.name, up.input_shape, up.output_shape) == ("1", (4, 4, 4), (1, 8, 8))
    assert up.params == 4 * 4 + 1


def test_the_dilated_model_computes_more_than_the_strided_one_with_the_same_parameters():
    # Lesson 02's comparison: the same weights on larger maps cost more multiply-adds.
    rows = {n: conv_layers(build_model(n)) for n in ("dilated", "strided")}
    params = {n: sum(r.params for r in rs) for n, rs in rows.items()}
    macs = {n: sum(r.mult_adds for r in rs) for n, rs in rows.items()}
    assert params["dilated"] == params["strided"]
    assert macs["dilated"] > 2 * macs["strided"]
