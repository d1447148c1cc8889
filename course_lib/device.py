"""Device and precision, the one place for CPU and CUDA differences (measured in ``benchmarks/``).
Used in lesson 04, by the trainer and by the evaluation (lesson 05)."""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np
import torch
from torch import nn

from .layers import DepthwiseSeparableConv2d


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CPU and on GPUs that compute it natively; fp16 on the others (T4, V100)."""
    # is_bf16_supported() alone says True on a T4, which only emulates bf16, slowly
    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, enabled: bool = True) -> torch.autocast:
    """Mixed precision on ``device`` in ``autocast_dtype(device)``; a no-op unless ``enabled``."""
    return torch.autocast(device.type, dtype=autocast_dtype(device), enabled=enabled)


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler, active only under fp16 (bf16 has fp32's range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=autocast_dtype(device) == torch.float16)


def depthwise_trains_faster_in_fp32(device: torch.device, dilated: bool) -> bool:
    """Whether depthwise convs train faster in fp32 than under autocast here (measured on CPU:
    ``benchmarks/precision_per_layer.py``). A fixed answer, so a resumed run computes alike."""
    return device.type == "cpu" and dilated


def prepare(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` on ``device`` in ``channels_last`` layout, which the bf16 conv kernels prefer,
    each depthwise conv set to train in the precision measured faster there."""
    model = model.to(device=device, memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, DepthwiseSeparableConv2d):
            dilated = module.depthwise.dilation != (1, 1)
            module.train_depthwise_in_fp32 = depthwise_trains_faster_in_fp32(device, dilated)
    return model


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """An image batch (N, C, H, W) on ``device`` in ``channels_last`` layout."""
    return x.to(device, non_blocking=True, memory_format=torch.channels_last)


def environment_info(device: torch.device) -> dict[str, Any]:
    """Device, precision and library versions, for the JSON record beside every checkpoint."""
    import albumentations

    dtype = str(autocast_dtype(device)).removeprefix("torch.")
    dilated = "float32" if depthwise_trains_faster_in_fp32(device, dilated=True) else dtype
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return dict(
        device=device.type, autocast=dtype, dilated_depthwise_training=dilated,
        device_name=name or platform.machine(), cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(), python=platform.python_version(),
        torch=torch.__version__, albumentations=albumentations.__version__, numpy=np.__version__,
    )  # fmt: skip
