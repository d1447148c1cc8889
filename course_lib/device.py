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
from collections.abc import Iterator

import torch
from torch import nn


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
    """Move the model to ``device`` in ``channels_last`` layout, which the bf16 conv kernels prefer.

    Used in lesson 04.
    """
    return model.to(device=device, memory_format=torch.channels_last)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move an image batch (N, C, H, W) to ``device`` in ``channels_last`` layout."""
    return x.to(device, non_blocking=True, memory_format=torch.channels_last)
