"""Where the model runs and in which precision: one place for CPU and CUDA differences.

On CPU, bf16 autocast plus ``channels_last``, with the dilated depthwise convs trained in
fp32 (``prepare``), trains the final model 3.3x faster than a plain fp32 loop on a 2-core
machine, 2.0x faster than fp32 ``channels_last`` and 1.13x faster than bf16 for every conv
(197, 59, 98 and 174 images/s at batch 256: ``python benchmarks/train_throughput.py``);
on CUDA, autocast uses bf16 where the GPU computes it natively, else fp16 with a gradient
scaler (Colab's free T4 only emulates bf16, slowly, yet ``is_bf16_supported()`` says True).

Used in lessons 04 and 05.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from .layers import DepthwiseSeparableConv2d


def default_device() -> torch.device:
    """CUDA when available, else CPU.

    Used in lesson 04.
    """
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CPU and on GPUs that compute it natively; fp16 on the others (T4, V100)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.float16
    return torch.bfloat16


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler that is active only under fp16 autocast, where small gradients
    would underflow; bf16 has fp32's range and needs none. Used by ``train.fit``.
    """
    enabled = autocast_dtype(device) == torch.float16
    return torch.amp.GradScaler(device.type, enabled=enabled)


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """Mixed precision for the forward pass on ``device`` (a no-op when ``enabled`` is False).

    Used in lesson 04.
    """
    with torch.autocast(device.type, dtype=autocast_dtype(device), enabled=enabled):
        yield


def prepare(model: nn.Module, device: torch.device) -> nn.Module:
    """Move the model to ``device`` in ``channels_last`` layout, which the bf16 conv kernels prefer,
    and train each depthwise conv in the precision measured faster there.

    Used in lesson 04.
    """
    model = model.to(device=device, memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, DepthwiseSeparableConv2d):
            dilated = module.depthwise.dilation != (1, 1)
            module.train_depthwise_in_fp32 = depthwise_trains_faster_in_fp32(device, dilated)
    return model


def depthwise_trains_faster_in_fp32(device: torch.device, dilated: bool) -> bool:
    """Whether depthwise convs (dilated or not) train faster in fp32 than under autocast here.

    Measured on CPU (``python benchmarks/precision_per_layer.py``): a dilated depthwise conv
    trains 1.8x slower in bf16 than in fp32 on a 2-core AMD EPYC with avx512_bf16 (in its
    backward pass; the forward alone is faster in bf16) and 3x slower on issue 11's 2-core
    Xeon with AMX, while on the EPYC undilated depthwise, full and pointwise convs and batch
    norm train 2-4x faster in bf16. A fixed answer rather than a timing at start-up: on a
    busy machine such a timing flipped from run to run, and a run and its resumption must
    compute in the same precision. GPUs were not measured (no GPU was at hand): autocast
    keeps every conv there, as before.
    """
    return device.type == "cpu" and dilated


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move an image batch (N, C, H, W) to ``device`` in ``channels_last`` layout."""
    return x.to(device, non_blocking=True, memory_format=torch.channels_last)
