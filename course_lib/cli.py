"""Command line: ``python -m course_lib {train,evaluate,models,check} --help``.

``make train`` calls ``train`` with its defaults (writing under ``runs/``; ``--publish``
replaces the published checkpoint); ``evaluate`` re-measures a checkpoint with its own loop;
``models`` prints parameters, multiply-adds and receptive field; ``check`` grades students'
models (``grader.py``). Every expected failure prints one ``error:`` line, no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from collections.abc import Sequence

from .grader import add_check_parser, run_check
from .train import TrainConfig, published_out

HELP = {
    "model": "architecture name for build_model: dilated, strided or maxpool",
    "epochs": "number of passes over the training set",
    "batch_size": "images per optimizer step",
    "lr": "peak learning rate of the schedule",
    "schedule": "learning-rate schedule: one_cycle, or step (halved every quarter of the run)",
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
        if f.name == "model":
            continue  # added with its choices, so a typo fails before the data loads
        flag = "--" + f.name.replace("_", "-")
        kind = int if f.name == "num_workers" else type(f.default)
        parser.add_argument(
            flag, type=kind, default=f.default, help=f"{HELP[f.name]} (default: %(default)s)"
        )


def _parser() -> argparse.ArgumentParser:
    from .models import MODELS

    parser = argparse.ArgumentParser(
        prog="python -m course_lib",
        description="Advanced Convolutions on CIFAR-10: train and evaluate.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="train a model and write <out>.pt and <out>.json",
        description="Train a model. The defaults train the final model for 15 epochs: about an "
        "hour on a 2-core CPU, about a minute on one modern GPU. Ctrl-C stops the run and "
        "keeps the finished epochs; the same command then resumes after them.",
    )
    _add_config_options(train)
    train.add_argument("--model", choices=MODELS, default=TrainConfig.model, help=HELP["model"])
    train.add_argument(
        "--out",
        default=None,
        help="output path without suffix: writes exactly <out>.pt and <out>.json "
        "(default: runs/<model>_seed<seed>)",
    )
    train.add_argument(
        "--publish",
        action="store_true",
        help="write the course's published checkpoint data/checkpoints/final_<model> "
        "(or replace a published file named by --out); without it they are never touched",
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
        default=str(published_out(TrainConfig.model)),
        help="the trainer's --out, i.e. the path without .pt/.json "
        "(default: the published final model)",
    )
    ev.add_argument(
        "--test-size",
        type=int,
        default=0,
        help="a class-stratified subset of test images (0 = all)",
    )
    ev.add_argument(
        "--data-root", default=None, help="dataset cache folder (default: the repository's data/)"
    )
    sub.add_parser("models", help="parameters, multiply-adds and receptive field of every model")
    add_check_parser(sub)
    return parser


def _train(args: argparse.Namespace) -> int:
    from .train import default_out, run

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    if args.fast:
        values.update(epochs=1, train_size=2000, test_size=1000)
    cfg = TrainConfig.from_dict(values)
    out = args.out or (published_out(cfg.model) if args.publish else default_out(cfg))
    record = run(
        cfg, out, publish=args.publish, data_root=args.data_root, resume=not args.no_resume
    )
    epochs = len(record["history"])
    print(
        f"final test accuracy {record['final_test_acc']:.2%} after {epochs} "
        f"epoch{'s' if epochs != 1 else ''} in {record['wall_seconds']:.0f} s -> {out}.pt, {out}.json"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .data import load_cifar10, subset
    from .evaluate import eval_loader, load_checkpoint, predict

    if args.test_size < 0:
        raise ValueError(f"--test-size must be 0 (all) or positive, got {args.test_size}")
    model, record = load_checkpoint(args.checkpoint)  # a bad checkpoint fails before the data load
    data = load_cifar10(args.data_root)
    if args.test_size:
        if args.test_size > len(data.y_test):
            raise ValueError(
                f"--test-size {args.test_size} is more than the {len(data.y_test):,} test images"
            )
        data = subset(data, None, args.test_size)
    loader = eval_loader(data.x_test, data.y_test, record["normalize"])
    plain = predict(model, loader, progress=True)
    tta = predict(model, loader, tta=True, progress=True)
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


def resume_command(argv: Sequence[str]) -> str:
    """The command line that continues an interrupted run: the same one, without --no-resume."""
    return " ".join(["python -m course_lib", *(shlex.quote(a) for a in argv if a != "--no-resume")])


def main(argv: Sequence[str] | None = None) -> int:
    from .data import DatasetNotFoundError
    from .train import TrainingDiverged, TrainingInterrupted

    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    command = {"train": _train, "evaluate": _evaluate, "models": _models, "check": run_check}
    command = command[args.command]
    try:
        return command(args)
    except TrainingInterrupted as err:
        print(f"stopped: {err}; resume with: {resume_command(argv)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("stopped by Ctrl-C", file=sys.stderr)
        return 130
    except (DatasetNotFoundError, TrainingDiverged, OSError, ValueError) as err:
        # these errors carry their own explanation and fix; a traceback would bury it
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
