"""Grade a model against the assignment: every rule measured on the running model, never read
off layer names. Used in lesson 04 and by ``python -m course_lib check``, which grades students'
files and notebooks."""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import traceback
import types
from collections import namedtuple
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .models import NUM_CLASSES, count_parameters
from .receptive_field import empirical_receptive_field, receptive_field
from .tables import format_table

MAX_PARAMETERS = 200_000
MIN_RECEPTIVE_FIELD = 44  # the receptive field must be larger than this
MIN_ACCURACY = 0.85
PARAMETERS_KEY, RF_KEY = f"<{MAX_PARAMETERS // 1000}k", f"RF>{MIN_RECEPTIVE_FIELD}"
ACCURACY_KEY, SHAPE_KEY = f">={MIN_ACCURACY:.0%}", f"(N,{NUM_CLASSES})"
RULES = {  # key (a column of the CLI's summary): the rule
    PARAMETERS_KEY: f"parameters < {MAX_PARAMETERS:,}",
    RF_KEY: f"receptive field > {MIN_RECEPTIVE_FIELD}",
    "no maxpool": "no max-pooling",
    "dw-sep": "a depthwise-separable conv",
    "dilated": "a dilated conv",
    "GAP": "global average pooling",
    SHAPE_KEY: f"output shape (N, {NUM_CLASSES})",
    ACCURACY_KEY: f"test accuracy >= {MIN_ACCURACY:.0%}",
    "bonus": "bonus: downsampling by dilation",  # reported as yes/no, never fails
}
# stride: the larger of the two; dilation: the largest along an axis where the kernel is > 1
_Conv = namedtuple("_Conv", "kernel stride dilation groups c_in c_out")


@dataclass(frozen=True)
class Rule:
    """One line of a verdict: the rule ``RULES[key]``, what was measured, whether it passed."""

    key: str
    measured: str
    passed: bool

    rule = property(lambda self: RULES[self.key])
    bonus = property(lambda self: self.key == "bonus")
    verdict = property(lambda self: ["FAIL", "PASS", "no", "yes"][2 * self.bonus + self.passed])


class _Recorder(TorchFunctionMode):
    """Records every conv and pooling call of a forward pass, made through a module or
    functionally, and every feature map; it sits above autograd, so the maps are the graph's."""

    def __init__(self) -> None:
        super().__init__()
        self.convs, self.max_pools, self.shrinks, self.maps = [], [], [], []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs := kwargs or {}))
        op, x = getattr(func, "__name__", ""), args[0] if args else kwargs.get("input")
        y = out[0] if isinstance(out, (tuple, list)) and out else out
        if not (isinstance(x, Tensor) and isinstance(y, Tensor) and x.dim() == y.dim() == 4):
            return out
        hw_in, hw_out = tuple(x.shape[2:]), tuple(y.shape[2:])
        how = "max-pooling" if "max_pool" in op else "average pooling" if "avg_pool" in op else op
        if "max_pool" in op:  # nn.MaxPool2d, F.max_pool2d, its return_indices and adaptive kin
            self.max_pools.append(f"{op} {_size(hw_in)}->{_size(hw_out)}")
        if op == "conv2d":  # nn.Conv2d and F.conv2d
            names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
            a = {"stride": 1, "dilation": 1, "groups": 1, **dict(zip(names, args, strict=False))}
            a.update(kwargs)
            c_out, c_group, *kernel = a["weight"].shape
            axes = zip(_pair(a["dilation"]), kernel, strict=True)
            dilation, g = max([d for d, k in axes if k > 1], default=1), int(a["groups"])
            conv = _Conv(tuple(kernel), max(_pair(a["stride"])), dilation, g, c_group * g, c_out)
            self.convs.append(conv)
            how = "stride" if conv.stride > 1 else "dilation" if dilation > 1 else "unpadded conv"
        if y.is_floating_point() and hw_out[0] * hw_out[1] > 1:  # 1x1: the GAP rule's business
            self.maps.append(y)
            if hw_out[0] < hw_in[0] or hw_out[1] < hw_in[1]:
                self.shrinks.append((how, hw_in, hw_out))
        return out


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _size(hw) -> str:
    return f"{hw[0]}" if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}"


def _n(count: int, thing: str) -> str:
    return f"{count} {thing}{'s' * (count != 1)}"


def _receptive_field(model: nn.Module, input_size) -> tuple[str, bool]:
    """By the lesson-02 calculator, checked by gradient on an input the field fits inside; where
    the calculator refuses the model, the gradient alone decides."""
    try:
        calc, refused = receptive_field(model, input_size), ""
    except Exception as err:  # the course's errors start with "caller: "
        calc, refused = None, str(err).split(": ", 1)[-1]
    grad, side = None, 32 * -(-(calc + 16) // 32) if calc else 96
    for s in (side, side + 64):  # the larger input in case the calculator undercounts
        with suppress(Exception):
            grad = empirical_receptive_field(model, (input_size[0], s, s)).size
            break
    calculator = f"the calculator says {calc}" if calc else f"the calculator refused: {refused}"
    if grad is None:
        text = f"{calc or '-'} ({calculator}; the gradient measurement failed)"
        return text, (calc or 0) > MIN_RECEPTIVE_FIELD
    how = "calculator, confirmed by gradient" if grad == calc else f"gradient; {calculator}"
    return f"{grad} ({how})", grad > MIN_RECEPTIVE_FIELD


def _depthwise_separable(convs: list[_Conv]) -> tuple[str, bool]:
    """A depthwise conv (one filter per input channel) counts only if the next conv the forward
    runs is a pointwise 1x1 over its output channels: alone it mixes no channels."""
    follows = zip(convs, [*convs[1:], None], strict=True)
    depthwise = [(c, n) for c, n in follows if c.groups == c.c_in > 1]
    good = [n and n.kernel == (1, 1) and n.groups == 1 and n.c_in == c.c_out for c, n in depthwise]
    if any(good):
        return f"{_n(sum(map(bool, good)), 'depthwise conv')} followed by a pointwise 1x1", True
    if not depthwise:
        return "no depthwise conv", False
    (c, n), k = depthwise[0], "{}x{}".format
    then = "no conv" if n is None else f"a {k(*n.kernel)} conv"
    return f"depthwise {k(*c.kernel)} conv is followed by {then}, not a pointwise 1x1", False


def _global_average_pooling(rec: _Recorder, out) -> tuple[str, bool]:
    """GAP by behaviour: if the logits see the last feature map only through its spatial mean,
    their gradient with respect to that map is the same at every position."""
    if not rec.maps or not isinstance(out, Tensor) or not out.requires_grad:
        return "the output depends on no feature map", False
    fmap, size = rec.maps[-1], "{}x{}".format(*rec.maps[-1].shape[2:])
    # A random mix of the logits tests every class with one gradient; a head that is not an
    # average could only look like one for this mix by a measure-zero coincidence.
    mix = torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out)
    (grad,) = torch.autograd.grad((out * mix).sum(), fmap, allow_unused=True)
    scale = 0.0 if grad is None else grad.abs().max().item()
    if scale == 0:
        return f"the logits do not depend on the last {size} map", False
    if (grad - grad.mean((2, 3), keepdim=True)).abs().max().item() <= 1e-5 * scale:
        return f"logits see the last {size} map only through its mean", True
    ignored = (grad.abs().amax((0, 1)) <= 1e-7 * scale).nonzero().tolist()
    where = ", ".join(f"({r},{c})" for r, c in ignored[:6]) + ", ..." * (len(ignored) > 6)
    if ignored:
        return f"not global: ignores positions {where} of the {size} map", False
    return f"not an average: weights the {size} map's positions unequally", False


def _downsampling(rec: _Recorder) -> tuple[str, bool]:
    if not rec.shrinks:
        return "the map is never shrunk", False
    kinds = list(dict.fromkeys(how for how, _, _ in rec.shrinks))
    path = [_size(rec.shrinks[0][1])]
    for _, _, hw in rec.shrinks:
        path += [_size(hw)] if _size(hw) != path[-1] else []
    by_dilation = "dilation" in kinds and set(kinds) <= {"dilation", "unpadded conv"}
    return f"by {' + '.join(kinds)}: {'->'.join(path)}", by_dilation


def grade(model: nn.Module, input_size: tuple[int, int, int] = (3, 32, 32)) -> list[Rule]:
    """Every structural rule of the assignment, and the bonus, measured on ``model``: one forward
    pass of two random images in eval mode (each module's flag restored afterwards), and the
    receptive field by the lesson-02 calculator and a gradient measurement. Used in lesson 04."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    p = next((t for t in tensors if t.is_floating_point()), torch.empty(0))
    x = torch.randn(2, *input_size, generator=torch.Generator().manual_seed(0))
    x = x.to(p.device, p.dtype).requires_grad_()  # keeps a graph even if every weight is frozen
    rec, flags = _Recorder(), [(m, m.training) for m in model.modules()]
    try:
        with rec:
            out = model.eval()(x)
    finally:
        for m, flag in flags:
            m.training = flag
    n, pools = count_parameters(model), rec.max_pools
    calls = ", ".join(pools)
    pooling = f"{_n(len(pools), 'max-pooling call')}: {calls}" if pools else "no max-pooling call"
    dilated = [c.dilation for c in rec.convs if c.dilation > 1]
    rates = ", ".join(map(str, sorted(set(dilated))))
    dilation = f"{_n(len(dilated), 'dilated conv')} (dilation {rates})" if dilated else "none"
    shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
    measured = {
        PARAMETERS_KEY: (f"{n:,} trainable", n < MAX_PARAMETERS),
        RF_KEY: _receptive_field(model, input_size),
        "no maxpool": (pooling, not pools),
        "dw-sep": _depthwise_separable(rec.convs),
        "dilated": (dilation, bool(dilated)),
        "GAP": _global_average_pooling(rec, out),
        SHAPE_KEY: (f"{shape} for input {tuple(x.shape)}", shape == (len(x), NUM_CLASSES)),
        "bonus": _downsampling(rec),
    }
    return [Rule(key, *result) for key, result in measured.items()]


def format_grades(rules: list[Rule]) -> str:
    """The verdict as a table: rule, what was measured, PASS/FAIL (yes/no for the bonus).
    Used in lesson 04 and by ``python -m course_lib check``."""
    rows = [(r.rule, r.measured, r.verdict) for r in rules]
    return format_table(("rule", "measured", "verdict"), rows, align="lll")


# ---------------------------------------------------------------- submissions and the CLI

_COUNTER = itertools.count()


def _load(spec: str) -> tuple[str, nn.Module]:
    """Run a submission's code and instantiate its model: ``PATH`` or ``PATH:NAME``."""
    path, sep, name = spec.rpartition(":")
    path, name = (Path(path), name) if sep and name.isidentifier() else (Path(spec), "")
    code = path.read_text()
    if path.suffix == ".ipynb":  # its code cells in order, without magics and shell lines
        cells = [c for c in json.loads(code)["cells"] if c["cell_type"] == "code"]
        lines = "\n".join("".join(c["source"]) for c in cells).splitlines()
        code = "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))
    # A fresh module under a unique name, registered so that dataclasses and pickle find it.
    module = types.ModuleType(f"_submission{next(_COUNTER)}_{path.stem.replace('-', '_')}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    exec(compile(code, str(path), "exec"), module.__dict__)
    classes = [k for k, v in vars(module).items() if isinstance(v, type)
               and issubclass(v, nn.Module) and v.__module__ == module.__name__]  # fmt: skip
    if not name and len(classes) != 1:
        what = f"{len(classes)} nn.Module classes ({', '.join(classes)}); name one"
        what = what if classes else "no nn.Module class; name a factory"
        raise ValueError(f"{path} defines {what} as {path}:NAME")
    if not hasattr(module, name := name or classes[0]):
        raise ValueError(f"{path} defines no {name!r}")
    if not isinstance(model := getattr(module, name)(), nn.Module):
        raise TypeError(f"{name}() returned a {type(model).__name__}, not an nn.Module")
    return f"{path.name}:{name}", model


def _describe(err: BaseException, spec: str) -> str:
    """One line: the error and, if it was raised by the submission's own code, where."""
    path = spec.rpartition(":")[0] if ":" in spec else spec
    lines = [f.lineno for f in traceback.extract_tb(err.__traceback__) if f.filename == path]
    where = f" ({Path(path).name} line {lines[-1]})" if lines else ""
    return f"{type(err).__name__}: {err}{where}".replace("\n", " ")


def _accuracy(model: nn.Module, label: str, args: argparse.Namespace, weights: str | None) -> Rule:
    from .data import channel_stats, load_cifar10
    from .evaluate import eval_loader, predict
    from .train import TrainConfig, read_state, run

    if weights:
        model.load_state_dict(read_state(weights))  # weights_only: never unpickles code
        data = load_cifar10(args.data_root, verbose=False)
        stats = channel_stats(data.x_train)  # the course's normalisation, as in training
        normalize = {"mean": stats["mean"].tolist(), "std": stats["std"].tolist()}
        acc = predict(model, eval_loader(data.x_test, data.y_test, normalize)).accuracy
        how = f"{Path(weights).name}, {len(data.y_test):,} test images, {data.label}"
    else:
        cfg = TrainConfig(model=label, epochs=args.epochs)
        out = Path("runs/check") / label.replace(":", "_").replace(".", "_")
        record = run(cfg, out, data_root=args.data_root, resume=False, model=model)
        acc = record["final_test_acc"]
        how = f"final epoch of {args.epochs}, trained with the course's recipe, {record['dataset']}"
    return Rule(ACCURACY_KEY, f"{acc:.2%} ({how})", acc >= MIN_ACCURACY)


def _grade(spec: str, args: argparse.Namespace, weights: str | None) -> tuple[str, list, str]:
    """A submission's name, its rules and, where it could not be graded, the error."""
    name = Path(spec).name
    try:
        name, model = _load(spec)
        rules = grade(model)
    except (Exception, SystemExit) as err:  # a broken submission is a row, never the end of the run
        return name, [], _describe(err, spec)
    if weights or args.train:
        try:
            rules.insert(-1, _accuracy(model, name, args, weights))
        except Exception as err:
            rules.insert(-1, Rule(ACCURACY_KEY, _describe(err, spec), False))
    return name, rules, ""


def run_check(args: argparse.Namespace) -> int:
    """``python -m course_lib check``: grade each submission, print its table, then a summary
    row per submission; exit status 0 if every submission passes every rule, else 1."""
    weights = args.weights or [None] * len(args.submissions)
    if args.report and not args.report.endswith((".csv", ".md")):
        raise ValueError(f"--report {args.report}: the file must end in .csv or .md")
    if len(weights) != len(args.submissions) or (args.weights and args.train):
        raise ValueError("give --weights once per submission, in order, and not with --train")
    graded, details = [], []
    for spec, w in zip(args.submissions, weights, strict=True):
        name, rules, error = result = _grade(spec, args, w)
        passed = not error and all(r.passed or r.bonus for r in rules)
        graded.append((*result, passed))
        details.append(f"## {name}\n\n{format_grades(rules) if rules else error}\n")
        print(f"{name}: {'passes every rule' if passed else 'FAILS'}")
        print(format_grades(rules) if rules else f"error: {error}", end="\n\n")
    keys = list(dict.fromkeys(r.key for _, rules, _, _ in graded for r in rules))
    header, rows = ["submission", "parameters", "RF", *keys, "error"], []
    for name, rules, error, _ in graded:
        get = {r.key: r for r in rules}.get
        numbers = [get(k).measured.split(" ")[0] if rules else "" for k in (PARAMETERS_KEY, RF_KEY)]
        rows.append([name, *numbers, *(get(k).verdict if get(k) else "" for k in keys), error])
    summary = format_table(header, rows, align="lrr" + "l" * (len(header) - 3))
    if len(graded) > 1:
        print(summary)
    if args.report and args.report.endswith(".csv"):
        with open(args.report, "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
    elif args.report:
        Path(args.report).write_text("\n".join(["# Grades\n", summary + "\n", *details]))
    return 0 if all(passed for *_, passed in graded) else 1


def add_check_parser(subparsers) -> None:
    """Register ``check`` on the CLI's subparsers (called by ``cli.py``)."""
    from .train import TrainConfig

    p = subparsers.add_parser(
        "check",
        help="grade submitted models against every rule of the assignment",
        description="Measure every rule of the assignment on each submission's model; print one "
        "table per submission, then a summary. WARNING: grading runs a submission's code (all "
        "the code cells of a notebook); grade untrusted files in a sandbox.",
    )
    add = p.add_argument
    add("submissions", nargs="+", metavar="PATH[:NAME]", help="a .py file or a notebook; NAME: "
        "a class or zero-argument factory, needed unless the file defines one nn.Module class")  # fmt: skip
    add("--train", action="store_true", help="train each submission with the course's recipe "
        "and report its final-epoch test accuracy (files in runs/check/)")  # fmt: skip
    add("--epochs", type=int, default=TrainConfig.epochs, help="epochs for --train (default: "
        "%(default)s: about an hour per submission on a 2-core CPU)")  # fmt: skip
    add("--weights", action="append", metavar="FILE", help="instead, evaluate a state_dict "
        "(loaded with weights_only=True), once per submission in order, on test images "
        "normalised with the training set's channel mean and std")  # fmt: skip
    add("--report", metavar="FILE", help="also write the summary to FILE (.csv or .md)")
    add("--data-root", default=None, help="dataset cache folder (default: the repository's data/)")
