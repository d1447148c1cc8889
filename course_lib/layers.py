"""The conv blocks of the course's networks: conv-BN-ReLU, depthwise-separable, residual.

``DepthwiseSeparableConv2d`` is written in lesson 01; ``models`` (lessons 02, 04, 06) builds its
networks from these blocks, and ``device.prepare`` sets the depthwise conv's precision.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation
from torchvision.ops.misc import ConvNormActivation

# >>> written in the lessons' #@save cells: edit the lesson, then run `make export`


# from lessons/01_convolution_types.ipynb


class DepthwiseSeparableConv2d(nn.Module):
    """A k x k depthwise conv (one filter per input channel), then a 1x1 pointwise conv.

    A drop-in for ``nn.Conv2d(c_in, c_out, kernel)``; ``padding=None`` keeps the size.
    """

    train_depthwise_in_fp32 = False  # device.prepare sets it where bf16 trains it slower

    def __init__(self, c_in, c_out, kernel=3, stride=1, padding=None, dilation=1, bias=False):
        super().__init__()
        padding = dilation * (kernel - 1) // 2 if padding is None else padding
        self.depthwise = nn.Conv2d(
            c_in, c_in, kernel, stride, padding, dilation, groups=c_in, bias=False
        )
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=bias)

    def forward(self, x):
        device = x.device.type
        fp32 = self.train_depthwise_in_fp32 and torch.is_grad_enabled()
        if fp32 and torch.is_autocast_enabled(device):  # training: bf16 forward alone is faster
            with torch.autocast(device, enabled=False):
                x = self.depthwise(x.float())
            return self.pointwise(x)  # under autocast again: back to bf16
        return self.pointwise(self.depthwise(x))


# <<< end of the lessons' code


class SeparableConv2dNormActivation(ConvNormActivation):
    """``Conv2dNormActivation`` with a ``DepthwiseSeparableConv2d`` in place of its conv."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, **kwargs) -> None:
        # ConvNormActivation passes groups=1 to its conv: the separable pair takes no groups.
        def conv(*args, groups: int, **kw) -> DepthwiseSeparableConv2d:
            return DepthwiseSeparableConv2d(*args, **kw)

        super().__init__(c_in, c_out, kernel, conv_layer=conv, **kwargs)


def conv_bn_relu(
    c_in: int, c_out: int, kernel: int = 3, *, separable: bool = False, **kwargs
) -> ConvNormActivation:
    """conv (no bias: BN's shift replaces it) -> BN -> ReLU; ``padding=None`` keeps the size."""
    block = SeparableConv2dNormActivation if separable else Conv2dNormActivation
    return block(c_in, c_out, kernel, **kwargs)


class Residual(nn.Module):
    """``x + body(x)``: the identity path lets a block start as a no-op and learn a correction."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def residual_pair(channels: int, *, separable: bool = False, dilation: int = 1) -> Residual:
    """Two same-size 3x3 conv-BN-ReLU layers (optionally dilated) in a skip connection."""
    def layer() -> Conv2dNormActivation:
        return conv_bn_relu(channels, channels, separable=separable, dilation=dilation)

    return Residual(nn.Sequential(layer(), layer()))
