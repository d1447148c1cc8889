"""The course's networks: C1-C2-C3-C4-output, where only the conv that shrinks each block's map
differs: unpadded and dilated (``"dilated"``, the final model: 32 -> 28 -> 24 -> 16 -> 8), at
stride 2 (``"strided"``) or followed by max-pooling (``"maxpool"``, the forbidden baseline).
Used in lessons 01, 02, 04 and 06.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torchinfo import summary as torchinfo_summary

from .layers import conv_bn_relu, residual_pair

NUM_CLASSES = 10
DOWNSAMPLING = ("dilated", "strided", "maxpool")


@dataclass(frozen=True)
class NetPlan:
    """Everything that defines a C1-C2-C3-C4-output network; the tuples hold one value per block.

    widths: channels inside C1..C4 (the downsampling conv of Ci outputs widths[i+1], or
        ``head_width``); res_dilation is padded to keep the size; an unpadded conv with
        down_dilation d and down_padding p trims ``2 * (d - p)`` pixels.
    """

    widths: tuple[int, int, int, int] = (32, 64, 96, 112)
    separable: tuple[bool, bool, bool, bool] = (False, False, True, True)
    down_separable: tuple[bool, bool, bool, bool] = (False, True, True, True)
    res_dilation: tuple[int, int, int, int] = (1, 1, 1, 2)
    down_dilation: tuple[int, int, int, int] = (2, 2, 4, 4)
    down_padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    head_width: int = 112
    downsampling: str = "dilated"
    input_size: int = 32


class FourBlockNet(nn.Module):
    """C1 C2 C3 C4 then output, built from a ``NetPlan``. Used in lessons 02 and 06."""

    def __init__(self, plan: NetPlan = NetPlan()) -> None:
        super().__init__()
        if plan.downsampling not in DOWNSAMPLING:
            raise ValueError(
                f"downsampling must be one of {DOWNSAMPLING}, got {plan.downsampling!r}"
            )
        self.plan = plan
        self.prep = conv_bn_relu(3, plan.widths[0])
        outs = (*plan.widths[1:], plan.head_width)
        size = plan.input_size
        blocks = zip(plan.widths, outs, plan.separable, plan.down_separable, plan.res_dilation,
                     plan.down_dilation, plan.down_padding, strict=True)  # fmt: skip
        for i, (c, c_next, sep, down_sep, dil, down_dil, down_pad) in enumerate(blocks):
            block = nn.Sequential()
            block.add_module("res", residual_pair(c, separable=sep, dilation=dil))
            down = _downsample(plan.downsampling, c, c_next, down_dil, down_pad, down_sep)
            block.add_module("down", down)
            self.add_module(f"c{i + 1}", block)
            dilated = plan.downsampling == "dilated"
            size = size - 2 * (down_dil - down_pad) if dilated else size // 2
            if size < 1:
                raise ValueError(
                    f"the plan shrinks the {plan.input_size}px input to nothing in C{i + 1}"
                )
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(plan.head_width, NUM_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prep(x)
        x = self.c4(self.c3(self.c2(self.c1(x))))
        return self.fc(self.gap(x).flatten(1))


def _downsample(
    kind: str, c_in: int, c_out: int, dilation: int, padding: int, separable: bool
) -> nn.Module:
    if kind == "dilated":  # unpadded, it trims 2 * (dilation - padding) pixels
        if padding >= dilation:
            raise ValueError(f"padding {padding} >= dilation {dilation} would not shrink the map")
        return conv_bn_relu(c_in, c_out, separable=separable, padding=padding, dilation=dilation)
    if kind == "strided":
        return conv_bn_relu(c_in, c_out, separable=separable, stride=2)
    return nn.Sequential(*conv_bn_relu(c_in, c_out, separable=separable), nn.MaxPool2d(2))


# Every network the course trains, by name: "halving" trims with dilations 8, 4, 2, 1 (lessons 02,
# 06); "standard" has no depthwise-separable conv (lesson 06).
ALL_STANDARD = (False, False, False, False)
PLANS: dict[str, NetPlan] = {
    "dilated": NetPlan(),
    "strided": NetPlan(downsampling="strided"),
    "maxpool": NetPlan(downsampling="maxpool"),
    "halving": NetPlan(down_dilation=(8, 4, 2, 1)),
    "standard": NetPlan(separable=ALL_STANDARD, down_separable=ALL_STANDARD),
}
MODELS = ("dilated", "strided", "maxpool")  # what ``python -m course_lib train --model`` offers


def build_model(name: str = "dilated") -> nn.Module:
    """A fresh, randomly initialised network of ``PLANS``. Used in lessons 01, 02, 04, the CLI."""
    if name not in PLANS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(PLANS)}")
    return FourBlockNet(PLANS[name])


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters. Used in lessons 01, 02, 06, the grader, the CLI."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def summary(model: nn.Module, input_size: tuple[int, int, int] = (3, 32, 32), depth: int = 3):
    """torchinfo's summary for one image. Used in lessons 01, 02, 04, 06 and the CLI."""
    return torchinfo_summary(
        model,
        input_size=(1, *input_size),
        depth=depth,
        col_names=("output_size", "num_params", "mult_adds"),
        row_settings=("var_names",),
        verbose=0,
    )
