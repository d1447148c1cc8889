"""Batch-norm statistics re-estimated on clean training images: does the test accuracy move?

During training every batch norm keeps running means and variances of augmented batches
(rotated, zoomed, with a 16x16 mean-filled hole), yet the test images are clean. This script
resets those statistics of a trained checkpoint, re-estimates them as a plain average over
``--images`` un-augmented training images (no test image is used), and compares the test
accuracy before and after, with and without flip test-time augmentation.

    python benchmarks/bn_recalibration.py [CHECKPOINT] [--images 10000]

CHECKPOINT defaults to the committed final model (``data/checkpoints/final_dilated``).
Measured on the 2-core CPU (CIFAR-10 JPEG copy, 10,000 images, one thread while two training
runs shared the CPU, 4.3 min), committed final model (trimming, seed 0, 15 epochs): 85.11% ->
85.33%, with flip TTA 85.89% -> 86.18%. One checkpoint: a +0.22-point change is inside the
0.7-point seed spread. ``architecture_probes.py --paired-emas`` measures it on fresh runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _common import save
from torch import nn
from torch.optim.swa_utils import update_bn

from course_lib.data import load_cifar10
from course_lib.device import default_device, prepare, to_device
from course_lib.evaluate import eval_loader, load_checkpoint, predict, published_checkpoint


def recalibrate_batchnorm(model: nn.Module, loader, device: torch.device) -> nn.Module:
    """``model`` on ``device``, in eval mode, with each batch norm's running statistics replaced
    by their plain average over ``loader``'s images (torch's ``update_bn``: one fp32 pass)."""
    model = prepare(model, device)
    update_bn((to_device(x, device) for x, _ in loader), model)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default=None)
    parser.add_argument("--images", type=int, default=10_000, help="clean training images")
    args = parser.parse_args()
    path = args.checkpoint or published_checkpoint()
    model, record = load_checkpoint(path)
    data, device = load_cifar10(), default_device()
    test = eval_loader(data.x_test, data.y_test, record["normalize"])

    def accuracies() -> dict[str, float]:
        return {"plain": predict(model, test).accuracy,
                "flip_tta": predict(model, test, tta=True).accuracy}  # fmt: skip

    before = accuracies()
    train = eval_loader(data.x_train[: args.images], data.y_train[: args.images],
                        record["normalize"], batch_size=250)  # fmt: skip
    model = recalibrate_batchnorm(model, train, device)
    after = accuracies()
    print(f"test accuracy  as trained {before}  recalibrated {after}")
    save("bn_recalibration", {"checkpoint": Path(path).name, "images": args.images,
                              "dataset": data.label, "as_trained": before, "recalibrated": after})  # fmt: skip


if __name__ == "__main__":
    main()
