"""Precision choice per device and layer type: bf16 only where the GPU computes it natively,
depthwise convs in fp32 where that was measured faster."""

import pytest
import torch

from course_lib import device as device_module
from course_lib.device import (
    autocast,
    autocast_dtype,
    depthwise_trains_faster_in_fp32,
    grad_scaler,
    prepare,
)
from course_lib.layers import DepthwiseSeparableConv2d
from course_lib.models import build_model

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


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


@pytest.mark.parametrize(
    ("device", "dilated", "fp32"),
    [(CPU, True, True), (CPU, False, False), (CUDA, True, False), (CUDA, False, False)],
)
def test_only_dilated_depthwise_convs_train_in_fp32_and_only_on_cpu(device, dilated, fp32):
    assert depthwise_trains_faster_in_fp32(device, dilated) is fp32


def test_prepare_decides_dilated_and_plain_depthwise_convs_separately():
    model = prepare(build_model("dilated"), CPU)
    separable = [m for m in model.modules() if isinstance(m, DepthwiseSeparableConv2d)]
    assert {m.train_depthwise_in_fp32 for m in separable} == {True, False}
    for m in separable:
        assert m.train_depthwise_in_fp32 == (m.depthwise.dilation != (1, 1))


def depthwise_fp32(model, fp32: bool):
    for m in model.modules():
        if isinstance(m, DepthwiseSeparableConv2d):
            m.train_depthwise_in_fp32 = fp32
    return model


def depthwise_output_dtypes(model, x):
    dtypes = []
    hooks = [
        m.depthwise.register_forward_hook(lambda m, inputs, out: dtypes.append(out.dtype))
        for m in model.modules()
        if isinstance(m, DepthwiseSeparableConv2d)
    ]
    with autocast(CPU):
        logits = model(x)
    for hook in hooks:
        hook.remove()
    assert logits.dtype == torch.bfloat16
    return set(dtypes)


@pytest.mark.parametrize("fp32", [True, False])
def test_chosen_depthwise_convs_train_in_fp32_under_autocast(fp32):
    model = depthwise_fp32(build_model("dilated"), fp32)
    x = torch.randn(2, 3, 32, 32)
    assert depthwise_output_dtypes(model, x) == {torch.float32 if fp32 else torch.bfloat16}
    with torch.no_grad():  # evaluation: the bf16 forward pass is the faster one
        assert depthwise_output_dtypes(model, x) == {torch.bfloat16}


def test_both_depthwise_precisions_agree_within_bf16_error():
    torch.manual_seed(0)
    model = build_model("dilated").train()
    with torch.no_grad():  # a few batches give batch norm realistic running statistics
        for _ in range(2):
            model(torch.randn(32, 3, 32, 32))
    model.eval()
    x = torch.randn(32, 3, 32, 32)
    reference = model(x).detach()
    logits = {}
    for fp32 in (False, True):  # with gradients on, as in training
        with autocast(CPU):
            logits[fp32] = depthwise_fp32(model, fp32)(x).detach().float()
    bf16_error = (logits[False] - reference).abs().max()
    torch.testing.assert_close(logits[True], logits[False], atol=2 * bf16_error, rtol=0)
