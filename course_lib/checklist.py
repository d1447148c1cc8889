"""The assignment's rules, checked on a model instead of claimed in prose.

Used in lesson 04.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .models import count_parameters
from .receptive_field import receptive_field

MAX_PARAMETERS = 200_000
MIN_RECEPTIVE_FIELD = 44  # the RF must be larger than this


@dataclass(frozen=True)
class Rule:
    rule: str
    measured: str
    passed: bool


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def _has_global_average_pool(model: nn.Module) -> bool:
    return any(
        isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1))
        for m in model.modules()
    )


def check_assignment(
    model: nn.Module, input_size: tuple[int, int, int] = (3, 32, 32)
) -> list[Rule]:
    """Every structural rule of the assignment, measured on ``model``.

    Used in lesson 04.
    """
    convs = _convs(model)
    params = count_parameters(model)
    rf = receptive_field(model, input_size)
    pools = sum(isinstance(m, nn.MaxPool2d) for m in model.modules())
    strided = [c for c in convs if max(c.stride) > 1]
    depthwise = [c for c in convs if c.groups == c.in_channels > 1]
    dilated = [c for c in convs if max(c.dilation) > 1]
    return [
        Rule("parameters < 200,000", f"{params:,}", params < MAX_PARAMETERS),
        Rule("receptive field > 44", str(rf), rf > MIN_RECEPTIVE_FIELD),
        Rule("no max-pooling", f"{pools} MaxPool2d", pools == 0),
        Rule("no strided conv", f"{len(strided)} strided convs", not strided),
        Rule("a depthwise-separable conv", f"{len(depthwise)} depthwise convs", bool(depthwise)),
        Rule("a dilated conv", f"{len(dilated)} dilated convs", bool(dilated)),
        Rule(
            "global average pooling",
            "AdaptiveAvgPool2d(1)" if _has_global_average_pool(model) else "none",
            _has_global_average_pool(model),
        ),
    ]


def format_checklist(rules: list[Rule]) -> str:
    """The checklist as aligned text: a mark, the rule and what was measured.

    Used in lesson 04.
    """
    width = max(len(r.rule) for r in rules)
    return "\n".join(
        f"{'PASS' if r.passed else 'FAIL'}  {r.rule:<{width}}  {r.measured}" for r in rules
    )
