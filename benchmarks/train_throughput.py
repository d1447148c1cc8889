"""Training throughput (images/s): course_lib's training step against a plain fp32 loop.

The plain loop is written the way the public solutions of this assignment write theirs:
fp32, default memory layout, ``optimizer.zero_grad(); loss.backward(); optimizer.step()``.
Same model, same batches (pre-loaded, so the data pipeline is out of the picture), same
process, alternating so that machine noise hits both alike.

    python benchmarks/train_throughput.py [--batches 10] [--repeats 3]

Measured on the 2-core CPU machine (torch 2.14, 2 threads), build_model("dilated"), batch 256:
plain fp32 68 images/s, course_lib 233 images/s: 3.43x (results/train_throughput.json).
The course's previous final model, with a quarter of the multiply-adds at 2x2, gave 298 vs
825 images/s (2.77x).
"""

from __future__ import annotations

import argparse
import copy
import itertools

import torch
import torch.nn.functional as F
from _common import BATCH_SIZE, loaders, median_seconds, save

from course_lib.device import autocast, default_device, prepare, to_device
from course_lib.models import build_model
from course_lib.train import TrainConfig, make_optimizer


def plain_fp32_step(model, opt, x, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()


def course_step(model, opt, x, y):
    with autocast(x.device):
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

    plain = copy.deepcopy(base).to(device)
    plain_opt = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9)
    plain_batches = [(x.to(device), y.to(device)) for x, y in batches]

    ours = prepare(copy.deepcopy(base), device)
    ours_opt = make_optimizer(ours, TrainConfig(lr=0.01))
    our_batches = [(to_device(x, device), y.to(device)) for x, y in batches]

    def run(step, model, opt, data):
        def go():
            model.train()
            for x, y in data:
                step(model, opt, x, y)
            if device.type == "cuda":
                torch.cuda.synchronize()

        return go

    n = args.batches * args.batch_size
    t_plain = median_seconds(run(plain_fp32_step, plain, plain_opt, plain_batches), args.repeats)
    t_ours = median_seconds(run(course_step, ours, ours_opt, our_batches), args.repeats)
    result = {
        "images_per_timed_run": n,
        "plain_fp32_images_per_s": n / t_plain,
        "course_lib_images_per_s": n / t_ours,
        "speedup": t_plain / t_ours,
        "device": device.type,
    }
    path = save("train_throughput", result)
    print(f"plain fp32 loop : {result['plain_fp32_images_per_s']:8.0f} images/s")
    print(f"course_lib step : {result['course_lib_images_per_s']:8.0f} images/s")
    print(f"speed-up        : {result['speedup']:8.2f}x   ({device.type}; saved to {path.name})")


if __name__ == "__main__":
    main()
