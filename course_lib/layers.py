"""Convolution building blocks shared by the course's models.

Lesson 01 takes each block apart (what it computes, its parameters and multiply-adds);
lessons 02, 04 and 06 assemble them into the C1-C2-C3-C4-output networks of ``models``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def same_padding(kernel: int, dilation: int = 1) -> int:
    """Padding that keeps the spatial size of a stride-1 conv: half the effective kernel.

    Used in lesson 01.
    """
    return dilation * (kernel - 1) // 2


class ConvBNReLU(nn.Sequential):
    """conv -> batch norm -> ReLU (-> dropout). The conv has no bias: BN's shift replaces it.

    ``padding=None`` keeps the size at stride 1 (``same_padding``); pass ``padding=0`` for a
    "valid" conv that shrinks the map by ``dilation * (kernel - 1)``.

    Used in lessons 01 and 04.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int = 3,
        *,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        dropout: float = 0.0,
    ) -> None:
        padding = same_padding(kernel, dilation) if padding is None else padding
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class DepthwiseSeparableConv2d(nn.Module):
    """A k x k depthwise conv (one filter per input channel) followed by a 1x1 pointwise conv.

    Drop-in for ``nn.Conv2d(c_in, c_out, k)``; its weights number
    ``c_in*k*k + c_in*c_out`` instead of ``c_in*c_out*k*k``, a ratio of ``1/c_out + 1/k**2``.

    With ``train_depthwise_in_fp32`` set, the depthwise conv leaves autocast while training and
    runs in fp32: on CPU, the bf16 backward pass of a dilated depthwise conv is slower than
    the fp32 one, unlike that of other convs, so ``device.prepare`` sets the flag there.
    Without gradients (evaluation) it stays in bf16, whose forward pass is the faster one.
    The pointwise conv, still under autocast, casts the fp32 map back to bf16.

    Used in lessons 01 and 04.
    """

    train_depthwise_in_fp32 = False

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int = 3,
        *,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        padding = same_padding(kernel, dilation) if padding is None else padding
        self.depthwise = nn.Conv2d(
            c_in, c_in, kernel, stride, padding, dilation, groups=c_in, bias=False
        )
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        # Only while gradients are recorded: the bf16 backward pass is the slow one.
        fp32 = self.train_depthwise_in_fp32 and torch.is_grad_enabled()
        if fp32 and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                x = self.depthwise(x.float())
            return self.pointwise(x)
        return self.pointwise(self.depthwise(x))


class SeparableConvBNReLU(nn.Sequential):
    """``DepthwiseSeparableConv2d`` -> batch norm -> ReLU (-> dropout).

    Used in lesson 04.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int = 3,
        *,
        padding: int | None = None,
        dilation: int = 1,
        dropout: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = [
            DepthwiseSeparableConv2d(c_in, c_out, kernel, padding=padding, dilation=dilation),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class SpatialSeparableConv2d(nn.Module):
    """A (k x 1) conv then a per-channel (1 x k) conv: about 1/k of a full k x k conv's weights.

    It can only represent kernels that are an outer product (rank 1) of a column and a row,
    which lesson 01 checks numerically.

    Used in lesson 01.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, *, padding: int | None = None):
        super().__init__()
        padding = same_padding(kernel) if padding is None else padding
        self.vertical = nn.Conv2d(c_in, c_out, (kernel, 1), padding=(padding, 0), bias=False)
        self.horizontal = nn.Conv2d(
            c_out, c_out, (1, kernel), padding=(0, padding), groups=c_out, bias=False
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.horizontal(self.vertical(x))


class DilatedDownsample(nn.Sequential):
    """Shrink the map with an unpadded dilated 3x3 conv instead of stride or pooling.

    A 3x3 kernel with dilation ``d`` spans ``2d + 1`` pixels, so without padding it trims
    ``2d`` pixels: ``size -> size - 2d`` (``size - 2d + 2p`` with padding ``p``), and the
    receptive field grows by ``2d`` in the same layer. No pixel is skipped, unlike with a
    stride: every output is computed.

    Used in lessons 02 and 04.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        dilation: int,
        *,
        padding: int = 0,
        separable: bool = False,
        dropout: float = 0.0,
    ) -> None:
        if padding >= dilation:
            raise ValueError(f"padding {padding} >= dilation {dilation} would not shrink the map")
        block = SeparableConvBNReLU if separable else ConvBNReLU
        super().__init__(
            *block(c_in, c_out, 3, padding=padding, dilation=dilation, dropout=dropout)
        )


class Residual(nn.Module):
    """``x + body(x)``: the identity path lets a block start as a no-op and learn a correction.

    Used in lesson 04.
    """

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def residual_pair(
    channels: int, *, separable: bool = False, dilation: int = 1, dropout: float = 0.0
) -> Residual:
    """Two same-size 3x3 conv-BN-ReLU layers (optionally dilated) wrapped in a skip connection.

    Used in lesson 04.
    """
    block = SeparableConvBNReLU if separable else ConvBNReLU
    return Residual(
        nn.Sequential(
            block(channels, channels, dilation=dilation, dropout=dropout),
            block(channels, channels, dilation=dilation),
        )
    )
