"""Training throughput (images/s): course_lib's training step against plainer precisions.

Four ways to run the same step on the same model and batches (pre-loaded, so the data
pipeline is out of the picture), alternating in one process so that machine noise hits all:

- plain fp32: the loop as the public solutions of this assignment write it: fp32, default
  memory layout, ``optimizer.zero_grad(); loss.backward(); optimizer.step()``;
- fp32 channels_last: course_lib's step without autocast;
- bf16 everywhere: course_lib's step with every conv under bf16 autocast (before issue 11);
- course_lib: bf16 autocast with the depthwise convs that ``device.prepare`` picks (the
  dilated ones on CPU) trained in fp32.

The time per layer type, in each precision, is ``benchmarks/precision_per_layer.py``.

    python benchmarks/train_throughput.py [--batches 10] [--repeats 3]

Measured on the 2-core CPU machine (AMD EPYC with avx512_bf16, no AMX; torch 2.14,
2 threads; no other job running, load average 1.4-1.9), build_model("dilated"), batch 256,
``--batches 4 --repeats 3``: plain fp32 59, fp32 channels_last 98, bf16 everywhere 174,
course_lib 197 images/s: 3.31x the plain loop, 2.0x fp32 channels_last, 1.13x bf16
everywhere (results/train_throughput.json). The 3.43x (233 vs 68 images/s) recorded
before, for bf16 everywhere, came from another 2-core machine; issue 11's Xeon with AMX
gave 2.24x.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import time

import torch
import torch.nn.functional as F
from _common import BATCH_SIZE, loaders, save

from course_lib.device import (
    autocast,
    default_device,
    depthwise_trains_faster_in_fp32,
    prepare,
    to_device,
)
from course_lib.layers import DepthwiseSeparableConv2d
from course_lib.models import build_model
from course_lib.train import TrainConfig, make_optimizer


def plain_fp32_step(model, opt, x, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()


def course_step(model, opt, x, y, amp=True):
    with autocast(x.device, enabled=amp):
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10, help="batches per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is kept")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    args = parser.parse_args()

    device = default_device()
    train, _ = loaders(args.batch_size)
    batches = list(itertools.islice(train, args.batches))
    torch.manual_seed(0)
    base = build_model("dilated")

    def variant(step, *, channels_last=True, bf16_depthwise=False, **step_args):
        model = prepare(copy.deepcopy(base), device) if channels_last else copy.deepcopy(base)
        model = model.to(device)
        if bf16_depthwise:  # undo prepare's choice: every conv under autocast
            for m in model.modules():
                if isinstance(m, DepthwiseSeparableConv2d):
                    m.train_depthwise_in_fp32 = False
        opt = (
            torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            if step is plain_fp32_step
            else make_optimizer(model, TrainConfig(lr=0.01))
        )
        move = to_device if channels_last else lambda x, device: x.to(device)
        data = [(move(x, device), y.to(device)) for x, y in batches]

        def run():
            model.train()
            for x, y in data:
                step(model, opt, x, y, **step_args)
            if device.type == "cuda":
                torch.cuda.synchronize()

        return run

    runs = {
        "plain fp32": variant(plain_fp32_step, channels_last=False),
        "fp32 channels_last": variant(course_step, amp=False),
        "bf16 everywhere": variant(course_step, bf16_depthwise=True),
        "course_lib": variant(course_step),
    }
    seconds = {name: [] for name in runs}
    for _ in range(args.repeats + 1):  # the first round warms up; the variants alternate
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)

    n = args.batches * args.batch_size
    images_per_s = {name: n / statistics.median(s[1:]) for name, s in seconds.items()}
    result = {
        "command": f"python benchmarks/train_throughput.py --batches {args.batches} "
        f"--repeats {args.repeats} --batch-size {args.batch_size}",
        "images_per_timed_run": n,
        "images_per_s": images_per_s,
        "speedup_over_plain_fp32": {
            k: v / images_per_s["plain fp32"] for k, v in images_per_s.items()
        },
        "depthwise_in_fp32": {
            "dilated": depthwise_trains_faster_in_fp32(device, True),
            "not dilated": depthwise_trains_faster_in_fp32(device, False),
        },
        "device": device.type,
    }
    path = save("train_throughput", result)
    for name, rate in images_per_s.items():
        print(f"{name:<20} {rate:8.0f} images/s  {rate / images_per_s['plain fp32']:5.2f}x")
    print(
        f"depthwise convs in fp32: {result['depthwise_in_fp32']}  ({device.type}; saved to {path.name})"
    )


if __name__ == "__main__":
    main()
