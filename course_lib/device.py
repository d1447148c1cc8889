"""Where the model runs and in which precision: one place for CPU and CUDA differences.

On CPU, bf16 autocast plus ``channels_last`` trains the final model 3.4x faster than a plain
fp32 loop on a 2-core machine (233 vs 68 images/s at batch 256:
``python benchmarks/train_throughput.py``);
on CUDA, autocast uses bf16 where the GPU computes it natively, else fp16 with a gradient
scaler (Colab's free T4 only emulates bf16, slowly, yet ``is_bf16_supported()`` says True).

Used in lessons 04 and 05.
"""

from __future__ import annotations

import contextlib
import functools
import time
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


@functools.cache
def depthwise_trains_faster_in_fp32(device: torch.device, dilated: bool) -> bool:
    """Whether depthwise convs (dilated or not) train faster in fp32 than under autocast here.

    On CPU, oneDNN's bf16 backward pass of a depthwise conv can be slower than its fp32 one,
    for dilated ones most, by an amount that depends on the CPU
    (``python benchmarks/precision_per_layer.py``); so both are timed, once per process and
    device (about 0.5 s). Full and pointwise convs and batch norm were 1.5-4x faster in bf16
    on every CPU measured. GPUs are not measured (no GPU was at hand for it): there autocast
    keeps every conv, as before.
    """
    if device.type != "cpu":
        return False
    fp32_s, autocast_s = _depthwise_seconds(device, dilated)
    return fp32_s < autocast_s


def _depthwise_seconds(
    device: torch.device, dilated: bool, repeats: int = 5
) -> tuple[float, float]:
    """Seconds of forward + backward through a depthwise-separable conv at one of the final
    model's sizes (batch 32), with its depthwise conv in fp32 and under autocast.

    The two alternate, and the fastest of ``repeats`` runs is kept: other programs on the
    machine can only add time, and they also change which precision looks faster.
    """
    # fork_rng: initialising the probe must not shift the training's random stream.
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        layer = DepthwiseSeparableConv2d(96, 96, dilation=2 if dilated else 1)
        layer = layer.to(device, memory_format=torch.channels_last)
        x = torch.randn(32, 96, 24, 24, device=device, dtype=autocast_dtype(device))
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
        seconds: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(repeats + 1):  # the first round warms up
            for fp32 in seconds:
                layer.train_depthwise_in_fp32 = fp32
                start = time.perf_counter()
                with autocast(device):
                    out = layer(x)
                out.sum().backward()
                seconds[fp32].append(time.perf_counter() - start)
    return min(seconds[True][1:]), min(seconds[False][1:])


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move an image batch (N, C, H, W) to ``device`` in ``channels_last`` layout."""
    return x.to(device, non_blocking=True, memory_format=torch.channels_last)
