"""Tests for course_lib.published: the write-up's network and the check of its RF comments."""

import torch

from course_lib.models import count_parameters
from course_lib.published import (
    CLAIMED,
    STATED_PARAMETERS,
    check_claims,
    format_claims,
    published_dilated_net,
)
from course_lib.receptive_field import empirical_receptive_field, receptive_field_table


def test_published_net_has_the_write_ups_173856_parameters_and_10_logits():
    model = published_dilated_net()
    assert count_parameters(model) == STATED_PARAMETERS == 173_856
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_published_net_field_is_46_at_the_2x2_conv_and_47_after_its_pool():
    rows = {r.name: r for r in receptive_field_table(published_dilated_net())}
    conv2x2, pool = rows["convblock12.0"], rows["gap"]
    assert (conv2x2.kernel, conv2x2.n_out, conv2x2.r_out) == (2, 3, 46)
    # AvgPool2d(2) on the 3x3 map: one window over its top-left 2x2, not a global average
    assert (pool.kernel, pool.stride, pool.n_in, pool.n_out, pool.r_out) == (2, 2, 3, 1, 47)


def test_gradients_confirm_46_at_the_2x2_conv():
    measured = empirical_receptive_field(published_dilated_net(), (3, 56, 56), layer="convblock12")
    assert measured.size == 46


def test_only_the_2x2_conv_contradicts_its_comment_in_both_size_and_rf():
    claims = check_claims()
    assert [c.block for c in claims] == [*CLAIMED, "gap"]
    wrong = [c for c in claims if c.agrees is False]
    assert [(c.block, c.claimed_n, c.n, c.claimed_rf, c.rf) for c in wrong] == [
        ("convblock12", 2, 3, 47, 46)
    ]
    assert claims[-1].agrees is None  # the write-up states nothing for its pool


def test_format_claims_marks_the_wrong_row_only():
    lines = format_claims(check_claims()).splitlines()
    assert lines[0].split() == [
        "block",
        "n",
        "stated",
        "n",
        "computed",
        "RF",
        "stated",
        "RF",
        "computed",
    ]
    marked = [line.split()[0] for line in lines if line.endswith("<- differs")]
    assert marked == ["convblock12"]
    assert lines[-1].split() == ["gap", "-", "1", "-", "47"]
