"""Precision choice per device: bf16 only where the GPU computes it natively."""

import pytest
import torch

from course_lib import device as device_module
from course_lib.device import autocast_dtype, grad_scaler

CUDA = torch.device("cuda")


def fake_gpu(monkeypatch, native_bf16: bool):
    """A GPU that emulates bf16 (Colab's T4) or computes it natively (A100, H100)."""

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return native_bf16 or including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)


class RecordingScaler:
    def __init__(self, device_type, enabled=True):
        self.device_type, self.enabled = device_type, enabled


@pytest.mark.parametrize(("native", "dtype"), [(False, torch.float16), (True, torch.bfloat16)])
def test_emulated_bf16_gpus_get_fp16_with_a_gradient_scaler(monkeypatch, native, dtype):
    fake_gpu(monkeypatch, native_bf16=native)
    monkeypatch.setattr(device_module.torch.amp, "GradScaler", RecordingScaler)
    assert autocast_dtype(CUDA) == dtype
    scaler = grad_scaler(CUDA)
    assert scaler.device_type == "cuda" and scaler.enabled == (dtype == torch.float16)


def test_cpu_trains_in_bf16_without_a_scaler():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu) == torch.bfloat16
    assert not grad_scaler(cpu).is_enabled()
