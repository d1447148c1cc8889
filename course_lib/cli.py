"""Command line: ``python -m course_lib {train,evaluate,models} --help``.

``make train`` calls ``train`` with its defaults; ``evaluate`` re-measures a published
checkpoint with its own loop; ``models`` prints parameters, multiply-adds and receptive field.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from .grader import add_check_parser, run_check
from .train import TrainConfig

HELP = {
    "model": "architecture name for build_model: dilated, strided or maxpool",
    "epochs": "number of passes over the training set",
    "batch_size": "images per optimizer step",
    "lr": "peak learning rate of the one-cycle schedule",
    "warmup": "fraction of steps spent warming the learning rate up",
    "momentum": "Nesterov momentum",
    "weight_decay": "L2 penalty on conv and linear weights",
    "label_smoothing": "label smoothing of the cross-entropy",
    "ema_decay": "per-step EMA decay of the weights (0 disables it)",
    "batch_aug": "extra batch-level regulariser: none, cutout or ricap",
    "cutout_p": "probability of CoarseDropout's 16x16 hole",
    "train_size": "use a class-stratified subset of this many training images (0 = all)",
    "test_size": "use a class-stratified subset of this many test images (0 = all)",
    "seed": "random seed (data order, augmentation, initialisation)",
    "num_workers": "DataLoader worker processes (default: the measured best for the device)",
}


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = int if f.name == "num_workers" else type(f.default)
        parser.add_argument(
            flag, type=kind, default=f.default, help=f"{HELP[f.name]} (default: %(default)s)"
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m course_lib",
        description="Advanced Convolutions on CIFAR-10: train and evaluate.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model and write <out>.pt and <out>.json")
    _add_config_options(train)
    train.add_argument(
        "--out",
        default="data/checkpoints/final_dilated",
        help="output path without suffix (default: %(default)s)",
    )
    train.add_argument(
        "--data-root", default=None, help="dataset cache folder (default: the repository's data/)"
    )
    train.add_argument(
        "--fast", action="store_true", help="smoke run: 1 epoch on 2,000 train / 1,000 test images"
    )
    train.add_argument(
        "--no-resume", action="store_true", help="start afresh even if <out>.resume.pt exists"
    )
    ev = sub.add_parser(
        "evaluate", help="re-measure a checkpoint's test accuracy with a plain loop"
    )
    ev.add_argument(
        "--checkpoint",
        default="data/checkpoints/final_dilated",
        help="path without suffix (default: %(default)s)",
    )
    ev.add_argument(
        "--data-root", default=None, help="dataset cache folder (default: the repository's data/)"
    )
    sub.add_parser("models", help="parameters, multiply-adds and receptive field of every model")
    add_check_parser(sub)
    return parser


def _train(args: argparse.Namespace) -> int:
    from .train import run

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    if args.fast:
        values.update(epochs=1, train_size=2000, test_size=1000)
    record = run(
        TrainConfig.from_dict(values), args.out, data_root=args.data_root, resume=not args.no_resume
    )
    print(
        f"final test accuracy {record['final_test_acc']:.2%} after {len(record['history'])} epochs "
        f"in {record['wall_seconds']:.0f} s -> {args.out}.pt, {args.out}.json"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .data import load_cifar10
    from .evaluate import load_checkpoint, predict, test_loader

    model, record = load_checkpoint(args.checkpoint)
    data = load_cifar10(args.data_root)
    loader = test_loader(data.x_test, data.y_test, record["normalize"])
    plain, tta = predict(model, loader), predict(model, loader, tta=True)
    print(f"recorded final-epoch test accuracy: {record['final_test_acc']:.2%}")
    print(f"re-measured test accuracy:          {plain.accuracy:.2%}  ({len(plain.labels)} images)")
    print(f"with flip TTA:                      {tta.accuracy:.2%}")
    return 0


def _models(_: argparse.Namespace) -> int:
    from .models import MODELS, build_model, count_parameters, summary
    from .receptive_field import receptive_field

    print(f"{'model':<8} {'parameters':>10} {'mult-adds':>10} {'RF':>4}")
    for name in MODELS:
        model = build_model(name)
        macs = summary(model).total_mult_adds
        print(
            f"{name:<8} {count_parameters(model):>10,} {macs / 1e6:>9.1f}M {receptive_field(model):>4}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from .data import DatasetNotFoundError
    from .train import TrainingDiverged

    args = _parser().parse_args(argv)
    command = {"train": _train, "evaluate": _evaluate, "models": _models, "check": run_check}
    command = command[args.command]
    try:
        return command(args)
    except (DatasetNotFoundError, TrainingDiverged, FileNotFoundError, ValueError) as err:
        # these errors carry their own explanation and fix; a traceback would bury it
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
