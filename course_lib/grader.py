"""Grade a model against the assignment: every rule measured on the running model.

``grade(model)`` runs the model once under a torch function mode that records every conv and
pooling call, made through a module or functionally, and every feature map; the rules are read
off that record and off gradients, never off layer names. ``python -m course_lib check`` grades
students' files and notebooks with it (``add_check_parser``, ``run_check``).

Used in lesson 04.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .models import NUM_CLASSES, count_parameters
from .receptive_field import (
    _bind,
    _EvalMode,
    _model_dtype_device,
    _pair,
    empirical_receptive_field,
    positive_probe,
    receptive_field,
)

MAX_PARAMETERS = 200_000
MIN_RECEPTIVE_FIELD = 44  # the RF must be larger than this
MIN_ACCURACY = 0.85


@dataclass(frozen=True)
class Rule:
    """One line of a verdict. ``key`` heads its column in the summary; a bonus is reported as
    yes/no and never fails a submission."""

    key: str
    rule: str
    measured: str
    passed: bool
    bonus: bool = False

    @property
    def verdict(self) -> str:
        if self.bonus:
            return "yes" if self.passed else "no"
        return "PASS" if self.passed else "FAIL"


@dataclass(frozen=True)
class _Conv:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    c_in: int
    c_out: int

    @property
    def dilated(self) -> bool:  # dilation on a 1-wide kernel axis changes nothing
        return any(d > 1 and k > 1 for d, k in zip(self.dilation, self.kernel, strict=True))


def _size(hw) -> str:
    return f"{hw[0]}" if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}"


class _Recorder(TorchFunctionMode):
    """Sees every torch function a forward pass calls: ``nn.Conv2d`` and ``F.conv2d`` both arrive
    as ``conv2d``, ``nn.MaxPool2d``, ``F.max_pool2d`` and its ``return_indices`` variant as a
    ``*max_pool*`` call. The mode sits above autograd, so the feature maps it keeps are the
    graph's own tensors and gradients can be taken with respect to them."""

    def __init__(self) -> None:
        super().__init__()
        self.convs: list[_Conv] = []  # in call order
        self.max_pools: list[str] = []
        self.shrinks: list[tuple[str, tuple, tuple]] = []  # (how, size in, size out)
        self.maps: list[Tensor] = []  # every 4-D float output with more than one position

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        op = getattr(func, "__name__", "")
        x = args[0] if args else kwargs.get("input")
        y = out[0] if isinstance(out, (tuple, list)) and out else out
        if not (isinstance(x, Tensor) and isinstance(y, Tensor) and x.dim() >= 3):
            return out
        hw_in, hw_out = tuple(x.shape[-2:]), tuple(y.shape[-2:])
        if "max_pool" in op:
            self.max_pools.append(f"{op} {_size(hw_in)}->{_size(hw_out)}")
        how = "max-pooling" if "max_pool" in op else "average pooling" if "avg_pool" in op else op
        if op == "conv2d":
            names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
            b = _bind(args, kwargs, names, stride=1, dilation=1, groups=1)
            c_out, c_group, kh, kw = b["weight"].shape
            g = int(b["groups"])
            c = _Conv((kh, kw), _pair(b["stride"]), _pair(b["dilation"]), g, c_group * g, c_out)
            self.convs.append(c)
            how = "stride" if max(c.stride) > 1 else "dilation" if c.dilated else "unpadded conv"
        # A map shrunk to 1x1 has been pooled away (the GAP rule judges that), not downsampled.
        if y.dim() == 4 and y.is_floating_point() and hw_out[0] * hw_out[1] > 1:
            self.maps.append(y)
            if x.dim() == 4 and (hw_out[0] < hw_in[0] or hw_out[1] < hw_in[1]):
                self.shrinks.append((how, hw_in, hw_out))
        return out


# ---------------------------------------------------------------- the rules


def _parameters(model: nn.Module) -> Rule:
    n = count_parameters(model)
    return Rule("<200k", "parameters < 200,000", f"{n:,} trainable", n < MAX_PARAMETERS)


def _gradient_rf(model: nn.Module, input_size) -> int:
    """For models the calculator refuses: the measurement of ``empirical_receptive_field``
    (positive weights, identity BatchNorm, float64, an all-ones input), from the centre of the
    last feature map the recorder saw. Max-pooling passes gradient to one input per window, so
    for a net with max-pooling this is a lower bound."""
    m = positive_probe(model)
    _, device = _model_dtype_device(m)
    x = torch.ones(1, *input_size, dtype=torch.float64, device=device, requires_grad=True)
    rec = _Recorder()
    try:
        with rec:
            m(x)
    except Exception:  # a head sized for 32x32 fails after the last feature map was recorded
        pass
    if not rec.maps:
        raise ValueError("no feature map with more than one position")
    h, w = rec.maps[-1].shape[-2:]
    (grad,) = torch.autograd.grad(rec.maps[-1][:, :, h // 2, w // 2].sum(), x)
    rows, cols = grad[0].abs().sum(0).nonzero(as_tuple=True)
    if min(rows.min(), cols.min()) == 0 or max(rows.max(), cols.max()) == input_size[1] - 1:
        raise ValueError("the receptive field is clipped by the input's border")
    return int(max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1))


def _receptive_field(model: nn.Module, input_size) -> Rule:
    """By the lesson-02 calculator, confirmed by a gradient measurement; where the calculator
    refuses a layer, the gradient alone decides and the measured column says so."""
    try:
        calc, note = receptive_field(model, input_size), "calculator, confirmed by gradient"
    except Exception as err:
        calc, note = None, f"gradient; the calculator refused: {_reason(err)}"
    # The measured field must fit inside the input: size it from the calculator's answer.
    first = 32 * -(-(calc + 16) // 32) if calc else 96
    grad, why = None, ""
    for side in (first, first + 64):
        size = (input_size[0], side, side)
        try:
            grad = (
                empirical_receptive_field(model, size).size if calc else _gradient_rf(model, size)
            )
            break
        except Exception as err:
            why = _reason(err)
    if grad is None and calc is None:
        return Rule("RF>44", "receptive field > 44", f"- ({note[10:]}; gradient: {why})", False)
    if grad is None:
        rf, note = calc, f"calculator; the gradient measurement failed: {why}"
    else:
        rf, note = grad, note if calc in (None, grad) else f"gradient; the calculator says {calc}"
    return Rule("RF>44", "receptive field > 44", f"{rf} ({note})", rf > MIN_RECEPTIVE_FIELD)


def _reason(err: Exception) -> str:  # without the "caller: " prefix of the course's errors
    return str(err).split(": ", 1)[-1]


def _n(count: int, thing: str) -> str:
    return f"{count} {thing}{'s' * (count != 1)}"


def _no_max_pooling(rec: _Recorder) -> Rule:
    n, calls = len(rec.max_pools), ", ".join(rec.max_pools[:4]) + ", ..." * (len(rec.max_pools) > 4)
    text = f"{_n(n, 'max-pooling call')}: {calls}" if n else "no max-pooling call"
    return Rule("no maxpool", "no max-pooling", text, n == 0)


def _depthwise_separable(convs: list[_Conv]) -> Rule:
    """A depthwise conv (one filter per input channel) counts only if the next conv the forward
    runs is a pointwise 1x1 over its output channels: alone it mixes no channels."""
    key, name = "dw-sep", "a depthwise-separable conv"
    pairs, problems = 0, []
    for conv, nxt in zip(convs, [*convs[1:], None], strict=True):
        if not conv.groups == conv.c_in > 1:
            continue
        if nxt and nxt.kernel == (1, 1) and nxt.groups == 1 and nxt.c_in == conv.c_out:
            pairs += 1
        else:
            then = "no conv" if nxt is None else "a {}x{} conv".format(*nxt.kernel)
            k = "{}x{}".format(*conv.kernel)
            problems.append(f"depthwise {k} conv is followed by {then}, not a pointwise 1x1")
    if pairs:
        return Rule(key, name, f"{_n(pairs, 'depthwise conv')} followed by a pointwise 1x1", True)
    return Rule(key, name, problems[0] if problems else "no depthwise conv", False)


def _dilated(convs: list[_Conv]) -> Rule:
    dilated = [c for c in convs if c.dilated]
    rates = ", ".join(str(d) for d in sorted({max(c.dilation) for c in dilated}))
    text = f"{_n(len(dilated), 'dilated conv')} (dilation {rates})" if dilated else "none"
    return Rule("dilated", "a dilated conv", text, bool(dilated))


def _global_average_pooling(rec: _Recorder, out) -> Rule:
    """GAP by behaviour: if the logits see the last feature map only through its spatial mean,
    their gradient with respect to that map is the same at every position."""
    key, name = "GAP", "global average pooling"
    if not rec.maps or not isinstance(out, Tensor) or not out.requires_grad:
        return Rule(key, name, "the output depends on no feature map", False)
    fmap, size = rec.maps[-1], "x".join(str(s) for s in rec.maps[-1].shape[-2:])
    # A random mix of the logits tests every class with one gradient; a head that is not an
    # average could only look like one for this mix by a measure-zero coincidence.
    mix = torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out)
    (grad,) = torch.autograd.grad((out * mix).sum(), fmap, allow_unused=True)
    scale = 0.0 if grad is None else grad.abs().max().item()
    if scale == 0:
        return Rule(key, name, f"the logits do not depend on the last {size} map", False)
    if (grad - grad.mean((2, 3), keepdim=True)).abs().max().item() <= 1e-5 * scale:
        return Rule(key, name, f"logits see the last {size} map only through its mean", True)
    ignored = (grad.abs().amax((0, 1)) <= 1e-7 * scale).nonzero().tolist()
    if ignored:
        where = ", ".join(f"({r},{c})" for r, c in ignored[:6]) + ", ..." * (len(ignored) > 6)
        return Rule(key, name, f"not global: ignores positions {where} of the {size} map", False)
    return Rule(key, name, f"not an average: weights the {size} map's positions unequally", False)


def _output_shape(out, x: Tensor) -> Rule:
    got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
    want = (x.shape[0], NUM_CLASSES)
    return Rule("(N,10)", "output shape (N, 10)", f"{got} for input {tuple(x.shape)}", got == want)


def _downsampling(rec: _Recorder) -> Rule:
    key, name = "bonus", "bonus: downsampling by dilation"
    kinds = list(dict.fromkeys(how for how, _, _ in rec.shrinks))
    if not kinds:
        return Rule(key, name, "the map is never shrunk", False, bonus=True)
    path = [_size(rec.shrinks[0][1])]
    for _, _, hw in rec.shrinks:
        path += [_size(hw)] if _size(hw) != path[-1] else []
    by_dilation = "dilation" in kinds and set(kinds) <= {"dilation", "unpadded conv"}
    text = f"by {' + '.join(kinds)}: {'->'.join(path)}"
    return Rule(key, name, text, by_dilation, bonus=True)


def grade(model: nn.Module, input_size: tuple[int, int, int] = (3, 32, 32)) -> list[Rule]:
    """Every structural rule of the assignment, and the bonus, measured on ``model``.

    One forward pass of two random images in eval mode (the model's flags are restored
    afterwards) feeds every rule but the receptive field, which the lesson-02 calculator computes
    and a gradient measurement confirms. Used in lesson 04 and by ``python -m course_lib check``.
    """
    dtype, device = _model_dtype_device(model)
    x = torch.randn(2, *input_size, generator=torch.Generator().manual_seed(0))
    x = x.to(device, dtype).requires_grad_()  # keeps a graph even if every weight is frozen
    rec = _Recorder()
    with _EvalMode(model), rec:
        out = model(x)
    return [
        _parameters(model),
        _receptive_field(model, input_size),
        _no_max_pooling(rec),
        _depthwise_separable(rec.convs),
        _dilated(rec.convs),
        _global_average_pooling(rec, out),
        _output_shape(out, x),
        _downsampling(rec),
    ]


def _table(header, rows) -> str:
    """An aligned Markdown table: readable in a terminal and valid in a .md report."""
    rows = [[str(c).replace("|", "/") for c in row] for row in [header, *rows]]
    widths = [max(len(c) for c in col) for col in zip(*rows, strict=True)]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    return "\n".join([lines[0], "|" + "|".join("-" * (w + 2) for w in widths) + "|", *lines[1:]])


def format_grades(rules: list[Rule]) -> str:
    """The verdict as a table: rule, what was measured, PASS/FAIL (yes/no for the bonus).

    Used in lesson 04 and by ``python -m course_lib check``.
    """
    return _table(("rule", "measured", "verdict"), [(r.rule, r.measured, r.verdict) for r in rules])


# ---------------------------------------------------------------- submissions and the CLI

_COUNTER = itertools.count()


def _load(spec: str) -> tuple[str, nn.Module]:
    """Run a submission's code and instantiate its model: ``PATH`` or ``PATH:NAME``."""
    path, sep, name = spec.rpartition(":")
    path, name = (Path(path), name) if sep and name.isidentifier() else (Path(spec), "")
    if path.suffix == ".ipynb":  # its code cells in order, without magics and shell lines
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        lines = "\n".join("".join(c["source"]) for c in cells).splitlines()
        code = "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))
    else:
        code = path.read_text()
    # One mechanism for files and notebooks: a fresh module under a unique name, registered so
    # that dataclasses and pickle find its classes.
    module = types.ModuleType(f"_submission{next(_COUNTER)}_{path.stem.replace('-', '_')}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    exec(compile(code, str(path), "exec"), module.__dict__)
    if name and not hasattr(module, name):
        raise ValueError(f"{path} defines no {name!r}")
    if not name:
        classes = [v.__name__ for v in vars(module).values() if isinstance(v, type)
                   and issubclass(v, nn.Module) and v.__module__ == module.__name__]  # fmt: skip
        if len(classes) != 1:
            what = f"{len(classes)} nn.Module classes ({', '.join(classes)}); name one"
            what = what if classes else "no nn.Module class; name a factory"
            raise ValueError(f"{path} defines {what} as {path}:NAME")
        name = classes[0]
    model = getattr(module, name)()
    if not isinstance(model, nn.Module):
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
    return Rule(">=85%", "test accuracy >= 85%", f"{acc:.2%} ({how})", acc >= MIN_ACCURACY)


@dataclass
class _Report:
    name: str
    rules: list[Rule]
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.error and all(r.passed or r.bonus for r in self.rules)

    def row(self, keys: list[str]) -> list[str]:
        by_key = {r.key: r for r in self.rules}
        numbers = [by_key[k].measured.split(" ")[0] if by_key else "" for k in ("<200k", "RF>44")]
        return [self.name, *numbers, *(by_key[k].verdict if k in by_key else "" for k in keys),
                self.error]  # fmt: skip


def _grade(spec: str, args: argparse.Namespace, weights: str | None) -> _Report:
    name = Path(spec).name
    try:
        name, model = _load(spec)
        rules = grade(model)
    except (Exception, SystemExit) as err:  # a broken submission is a row, never the end of the run
        return _Report(name, [], _describe(err, spec))
    if weights or args.train:
        try:
            rules.insert(-1, _accuracy(model, name, args, weights))
        except Exception as err:
            rules.insert(-1, Rule(">=85%", "test accuracy >= 85%", _describe(err, spec), False))
    return _Report(name, rules)


def run_check(args: argparse.Namespace) -> int:
    """``python -m course_lib check``: grade each submission, print its table, then a summary
    row per submission; exit status 0 if every submission passes every rule, else 1."""
    n, weights = len(args.submissions), args.weights or [None] * len(args.submissions)
    if args.report and not args.report.endswith((".csv", ".md")):
        raise ValueError(f"--report {args.report}: the file must end in .csv or .md")
    if len(weights) != n or (args.weights and args.train):
        raise ValueError("give --weights once per submission, in order, and not with --train")
    reports = []
    for spec, w in zip(args.submissions, weights, strict=True):
        reports.append(report := _grade(spec, args, w))
        print(f"{report.name}: {'passes every rule' if report.passed else 'FAILS'}")
        print(format_grades(report.rules) if report.rules else f"error: {report.error}", end="\n\n")
    keys = list(dict.fromkeys(r.key for report in reports for r in report.rules))
    header = ["submission", "parameters", "RF", *keys, "error"]
    rows = [r.row(keys) for r in reports]
    if n > 1:
        print(_table(header, rows))
    if args.report and args.report.endswith(".csv"):
        with open(args.report, "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
    elif args.report:
        details = [
            f"## {r.name}\n\n{format_grades(r.rules) if r.rules else r.error}\n" for r in reports
        ]
        Path(args.report).write_text(
            "\n".join(["# Grades\n", _table(header, rows) + "\n", *details])
        )
    return 0 if all(r.passed for r in reports) else 1


def add_check_parser(subparsers) -> None:
    """Register ``check`` on the CLI's subparsers (called by ``cli.py``)."""
    from .train import TrainConfig

    p = subparsers.add_parser(
        "check",
        help="grade submitted models against every rule of the assignment",
        description="Measure every rule of the assignment on each submission's model and print "
        "one table per submission, then a summary. WARNING: a submission is code and grading "
        "runs it (a notebook: all its code cells, so strip training first); grade untrusted "
        "files in a sandbox.",
    )
    add = p.add_argument
    add("submissions", nargs="+", metavar="PATH[:NAME]", help="a .py file or a notebook; NAME: "
        "a class or zero-argument factory, needed unless the file defines one nn.Module class")  # fmt: skip
    add("--train", action="store_true", help="train each submission with the course's trainer "
        "and recipe and report its final-epoch test accuracy (files in runs/check/)")  # fmt: skip
    add("--epochs", type=int, default=TrainConfig.epochs, help="epochs for --train (default: "
        "%(default)s, the trainer's: about an hour per submission on a 2-core CPU)")  # fmt: skip
    add("--weights", action="append", metavar="FILE", help="evaluate a student's state_dict "
        "instead: once per submission, in order, loaded with weights_only=True; test images are "
        "normalised with the training set's channel mean and std")  # fmt: skip
    add("--report", metavar="FILE", help="also write the summary to FILE (.csv or .md)")
    add("--data-root", default=None, help="dataset cache folder (default: the repository's data/)")
