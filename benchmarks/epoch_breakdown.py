"""Where an epoch of the final model's training goes: data, forward + backward, evaluation.

Each part is timed on its own over a whole epoch (50,000 training and 10,000 test images):
the loader alone, the training steps on pre-loaded batches, and the test pass.

    python benchmarks/epoch_breakdown.py

Measured on the 2-core CPU machine (batch 256): data 9.3 s, forward + backward 209.7 s,
evaluation 8.6 s, 227.6 s in all (results/epoch_breakdown.json), against a median of 232 s
per epoch in the committed ``make train`` run: the model's arithmetic is 92% of an epoch,
so a faster CPU epoch has to come from fewer multiply-adds, not from the data pipeline.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from _common import loaders, save

from course_lib.device import autocast, default_device, prepare, to_device
from course_lib.models import build_model
from course_lib.train import TrainConfig, evaluate_loss_acc, make_optimizer


def main() -> None:
    device = default_device()
    train, test = loaders()
    torch.manual_seed(0)
    model = prepare(build_model("dilated"), device)
    opt = make_optimizer(model, TrainConfig())

    t = time.perf_counter()
    batches = [(to_device(x, device), y.to(device)) for x, y in train]
    data_s = time.perf_counter() - t

    model.train()
    for x, y in batches[:2]:  # warm-up
        with autocast(device):
            F.cross_entropy(model(x), y).backward()
    t = time.perf_counter()
    for x, y in batches:
        with autocast(device):
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    step_s = time.perf_counter() - t

    t = time.perf_counter()
    evaluate_loss_acc(model, test, device)
    eval_s = time.perf_counter() - t

    total = data_s + step_s + eval_s
    result = {
        "data_s": data_s,
        "forward_backward_s": step_s,
        "evaluation_s": eval_s,
        "total_s": total,
    }
    for name, s in [
        ("data (augment + collate)", data_s),
        ("forward + backward", step_s),
        ("evaluation", eval_s),
    ]:
        print(f"{name:<26} {s:7.1f} s  {s / total:6.1%}")
    print(
        f"{'epoch total':<26} {total:7.1f} s   ({device.type}; saved to {save('epoch_breakdown', result).name})"
    )


if __name__ == "__main__":
    main()
