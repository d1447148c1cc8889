"""Forward + backward time of each layer type of the final model, in each precision.

Every conv and batch norm of ``build_model("dilated")`` is timed on its own, at the shape it
sees in the model, in fp32 (default layout), fp32 ``channels_last`` and bf16 autocast
``channels_last``; the times are summed per layer type. This table is why ``course_lib.device``
trains dilated depthwise convs in fp32 on CPU (``depthwise_trains_faster_in_fp32``).

    python benchmarks/precision_per_layer.py [--batch-size 256] [--repeats 5]

Measured on the 2-core CPU machine (AMD EPYC with avx512_bf16, no AMX; torch 2.14, 2 threads;
load average 1-2.5 from other jobs), ``--repeats 5``, ms per training step summed over the
model's layers of each type (results/precision_per_layer_b256.json, _b128.json):

    layer type (count)           batch 256: fp32 / fp32 cl / bf16 cl   batch 128: same
    full 3x3 (5)                 1408 /  808 /  363                     377 / 342 / 182
    full 3x3 dilated (1)          272 /  193 /   75                      77 /  76 /  36
    depthwise 3x3 (2)             546 /  151 /   46                      58 /  33 /  23
    depthwise 3x3 dilated (5)     847 /  311 /  563                     348 / 141 / 266
    pointwise 1x1 (7)             873 /  433 /  173                     192 / 151 /  77
    batch norm (13)               659 /  683 /  161                     163 / 108 /  70
    all (33)                     4605 / 2580 / 1381                    1214 / 852 / 653

Only the dilated depthwise convs are slower in bf16 (1.8-1.9x), and only in their backward
pass: their bf16 forward pass alone is 2.6-12x faster than the fp32 one (measured apart).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections import defaultdict

import torch
from _common import BATCH_SIZE, save
from torch import nn

from course_lib.models import build_model

PRECISIONS = ("fp32", "fp32 channels_last", "bf16 channels_last")


def layer_type(module: nn.Module) -> str:
    if isinstance(module, nn.BatchNorm2d):
        return "batch norm"
    if module.kernel_size == (1, 1):
        return "pointwise 1x1"
    kind = "depthwise 3x3" if module.groups == module.in_channels > 1 else "full 3x3"
    return f"{kind} dilated" if module.dilation != (1, 1) else kind


def layers_with_inputs(model: nn.Module, batch_size: int) -> list[tuple[nn.Module, torch.Size]]:
    """Each conv and batch norm with the input shape it sees in one forward pass."""
    seen = []
    hooks = [
        m.register_forward_hook(lambda m, inp, out: seen.append((m, inp[0].shape)))
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.BatchNorm2d)
    ]
    with torch.no_grad():
        model(torch.zeros(batch_size, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    return seen


def forward_backward(module: nn.Module, shape: torch.Size, precision: str):
    """A function running one forward + backward of ``module`` as the training step would."""
    layout = torch.contiguous_format if precision == "fp32" else torch.channels_last
    bf16 = precision.startswith("bf16")
    module = copy.deepcopy(module).to(memory_format=layout).train()
    # Under autocast a layer receives the bf16 output of the layer before it.
    x = torch.randn(shape, dtype=torch.bfloat16 if bf16 else torch.float32)
    x = x.contiguous(memory_format=layout).requires_grad_(shape[1] > 3)

    def run():
        module.zero_grad(set_to_none=True)  # as the training step does
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = module(x)
        out.backward(torch.ones_like(out))

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the median is kept")
    args = parser.parse_args()

    torch.manual_seed(0)
    layers = layers_with_inputs(build_model("dilated"), args.batch_size)
    runs = {
        (i, p): forward_backward(m, s, p) for i, (m, s) in enumerate(layers) for p in PRECISIONS
    }
    times = defaultdict(list)
    for _ in range(args.repeats + 1):  # the first round warms up; precisions alternate
        for key, run in runs.items():
            t = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - t)
    ms = defaultdict(float)  # (layer type, precision) -> total ms over the model's layers
    count = defaultdict(int)
    for (i, precision), samples in times.items():
        kind = layer_type(layers[i][0])
        ms[kind, precision] += 1000 * statistics.median(samples[1:])
        count[kind] += precision == PRECISIONS[0]

    kinds = sorted(count, key=lambda k: -ms[k, PRECISIONS[0]])
    print(f"batch {args.batch_size}, forward + backward, ms summed over the model's layers")
    print(f"{'layer type':<24}{'n':>3}" + "".join(f"{p:>20}" for p in PRECISIONS))
    for kind in [*kinds, "all"]:
        row = [sum(ms[k, p] for k in kinds) if kind == "all" else ms[kind, p] for p in PRECISIONS]
        n = sum(count.values()) if kind == "all" else count[kind]
        print(f"{kind:<24}{n:>3}" + "".join(f"{v:>20.1f}" for v in row))
    result = {
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "ms_forward_backward": {k: {p: ms[k, p] for p in PRECISIONS} for k in kinds},
        "layers": dict(count),
    }
    print(f"saved to {save(f'precision_per_layer_b{args.batch_size}', result).name}")


if __name__ == "__main__":
    main()
