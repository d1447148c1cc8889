"""Command line: ``python -m course_lib {train,evaluate,models,check} --help``.
An expected failure prints one ``error:`` line, no traceback."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import shlex
import sys
from collections.abc import Sequence

from . import train as trainer
from .data import DatasetNotFoundError, load_cifar10, subset
from .evaluate import eval_loader, load_checkpoint, predict
from .grader import add_check_parser, run_check
from .models import MODELS, build_model, count_parameters, summary
from .receptive_field import receptive_field
from .tables import format_table
from .train import TrainConfig, TrainingDiverged, TrainingInterrupted, published_out


def config_help() -> dict[str, str]:
    """Each ``TrainConfig`` field's comment: the one place where an option is described."""
    return dict(re.findall(r"^    (\w+): .+?  # (.+)$", inspect.getsource(TrainConfig), re.M))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course_lib",
                                     description="Advanced Convolutions on CIFAR-10.")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model and write <out>.pt and <out>.json")
    train.description = ("Train a model (by default the final one). Ctrl-C keeps the finished "
                         "epochs; the same command then resumes after them.")
    helps = config_help()
    for f in dataclasses.fields(TrainConfig):
        kind = int if f.name == "num_workers" else type(f.default)
        train.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default,
                           choices=MODELS if f.name == "model" else None,  # before the data load
                           help=f"{helps[f.name]} (default: %(default)s)")  # fmt: skip
    train.add_argument("--out", help="path without suffix: writes exactly <out>.pt and "
                       "<out>.json (default: runs/<model>_seed<seed>)")  # fmt: skip
    train.add_argument("--publish", action="store_true", help="write the published checkpoint "
                       "data/checkpoints/final_<model>, or replace a published --out")  # fmt: skip
    train.add_argument("--fast", action="store_true",
                       help="smoke run: 1 epoch on 2,000 train / 1,000 test images")  # fmt: skip
    train.add_argument("--no-resume", action="store_true", help="ignore <out>.resume.pt")
    ev = sub.add_parser("evaluate", help="re-measure a checkpoint's test accuracy")
    ev.add_argument("--checkpoint", default=str(published_out(TrainConfig.model)),
                    help="a trainer's --out (default: the published final model)")  # fmt: skip
    ev.add_argument("--test-size", type=int, default=0, help=helps["test_size"])
    for command in (train, ev):
        command.add_argument("--data-root", help="dataset cache folder (default: data/)")
    sub.add_parser("models", help="parameters, multiply-adds and receptive field of each model")
    add_check_parser(sub)
    return parser


def _train(args: argparse.Namespace) -> int:
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    if args.fast:
        cfg = dataclasses.replace(cfg, epochs=1, train_size=2000, test_size=1000)
    out = args.out or (published_out(cfg.model) if args.publish else trainer.default_out(cfg))
    resume = not args.no_resume
    record = trainer.run(cfg, out, publish=args.publish, data_root=args.data_root, resume=resume)
    epochs = f"{cfg.epochs} epoch{'s' * (cfg.epochs != 1)}"
    print(f"final test accuracy {record['final_test_acc']:.2%} after {epochs} in "
          f"{record['wall_seconds']:.0f} s -> {out}.pt, {out}.json")  # fmt: skip
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    model, record = load_checkpoint(args.checkpoint)  # a bad checkpoint fails before the data load
    data = load_cifar10(args.data_root)
    data = subset(data, None, args.test_size) if args.test_size else data  # checks the size
    loader = eval_loader(data.x_test, data.y_test, record["normalize"])
    plain = predict(model, loader, progress=True)
    tta = predict(model, loader, tta=True, progress=True)
    print(f"recorded final-epoch test accuracy: {record['final_test_acc']:.2%}")
    print(f"re-measured test accuracy:          {plain.accuracy:.2%}  ({len(plain.labels)} images)")
    print(f"with flip TTA:                      {tta.accuracy:.2%}")
    return 0


def _models(_: argparse.Namespace) -> int:
    rows = []
    for name in MODELS:
        model = build_model(name)
        macs = summary(model).total_mult_adds / 1e6
        rows.append([name, f"{count_parameters(model):,}", f"{macs:.1f}M", receptive_field(model)])
    print(format_table(["model", "parameters", "mult-adds", "RF"], rows))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    command = {"train": _train, "evaluate": _evaluate, "models": _models, "check": run_check}
    try:
        return command[args.command](args)
    except TrainingInterrupted as err:
        again = shlex.join(["python", "-m", "course_lib", *(a for a in argv if a != "--no-resume")])
        print(f"stopped: {err}; resume with: {again}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("stopped by Ctrl-C", file=sys.stderr)
        return 130
    except (DatasetNotFoundError, TrainingDiverged, OSError, ValueError) as err:
        # these errors carry their own explanation and fix; a traceback would bury it
        print(f"error: {err}", file=sys.stderr)
        return 2
