"""Grade a model against the assignment: every rule measured on the running model, never read
off layer names. Used in lesson 04 and by ``python -m course_lib check``."""

from __future__ import annotations

import argparse
import copy
import csv
import itertools
import json
import sys
import traceback
import types
from contextlib import suppress
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair
from torch.overrides import TorchFunctionMode

from .models import NUM_CLASSES, count_parameters
from .receptive_field import empirical_receptive_field, receptive_field
from .tables import format_table

MAX_PARAMETERS = 200_000
MIN_RECEPTIVE_FIELD = 44  # the receptive field must be larger than this
MIN_ACCURACY = 0.85
RULES = {  # key (a column of the CLI's summary): the rule
    "parameters": f"parameters < {MAX_PARAMETERS:,}",
    "RF": f"receptive field > {MIN_RECEPTIVE_FIELD}",
    "no maxpool": "no max-pooling",
    "dw-sep": "a depthwise-separable conv",
    "dilated": "a dilated conv",
    "GAP": "global average pooling",
    "shape": f"output shape (N, {NUM_CLASSES})",
    "accuracy": f"test accuracy >= {MIN_ACCURACY:.0%}",
    "bonus": "bonus: downsampling by dilation",  # reported as yes/no, never fails
}


class Rule(NamedTuple):
    """One line of a verdict: the rule ``RULES[key]``, what was measured, whether it passed."""

    key: str
    measured: str
    passed: bool
    verdict = property(lambda r: ["FAIL", "PASS", "no", "yes"][2 * (r.key == "bonus") + r.passed])


def _conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """A ``conv2d`` call's arguments as the rules read them: the largest dilation along an axis
    where the kernel is wider than 1, and how it shrinks a map (stride wins over dilation)."""
    c_out, c_group, *kernel = weight.shape
    dilation = max([d for d, k in zip(_pair(dilation), kernel, strict=True) if k > 1], default=1)
    how = "stride" if max(_pair(stride)) > 1 else "dilation" if dilation > 1 else "unpadded conv"
    return types.SimpleNamespace(kernel=tuple(kernel), dilation=dilation, groups=groups,
        c_in=c_group * groups, c_out=c_out, how=how)  # fmt: skip


class _Recorder(TorchFunctionMode):
    """Records each call of a forward pass from a 4-D tensor to a 4-D tensor, module or functional
    (op, sizes in and out, conv), and the last map of over one unit, above autograd: the graph's."""

    def __init__(self) -> None:
        super().__init__()
        self.calls, self.last_map = [], None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs := kwargs or {}))
        op, x = getattr(func, "__name__", ""), args[0] if args else kwargs.get("input")
        y = out[0] if isinstance(out, (tuple, list)) and out else out  # max-pooling's indices
        if isinstance(x, Tensor) and isinstance(y, Tensor) and x.dim() == y.dim() == 4:
            conv = _conv(*args, **kwargs) if op == "conv2d" else None  # nn.Conv2d and F.conv2d
            self.calls.append((op, tuple(x.shape[2:]), tuple(y.shape[2:]), conv))
            if y.is_floating_point() and y.shape[2:].numel() > 1:
                self.last_map = y
        return out


def _size(hw) -> str:
    return f"{hw[0]}" if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}"


def _n(count: int, thing: str, detail: str = "") -> str:
    return f"{count} {thing}{'s' * (count != 1)}{detail}" if count else f"no {thing}"


def _receptive_field(model: nn.Module, input_size) -> tuple[str, bool]:
    """By the lesson-02 calculator, checked by gradient on an input the field fits inside; where
    the calculator refuses the model, the gradient alone decides."""
    try:
        calc, refused = receptive_field(model, input_size), ""
    except Exception as err:  # the course's errors start with "caller: "
        calc, refused = None, str(err).split(": ", 1)[-1].split(";")[0]  # its first clause
    grad, side = None, 32 * -(-(calc + 16) // 32) if calc else 96
    for s in (side, side + 64):  # the larger input in case the calculator undercounts
        with suppress(Exception):
            grad = grad or empirical_receptive_field(model, (input_size[0], s, s)).size
    calculator = f"the calculator says {calc}" if calc else f"the calculator refused: {refused}"
    if grad is None:
        text = f"{calc or '-'} ({calculator}; the gradient measurement failed)"
        return text, (calc or 0) > MIN_RECEPTIVE_FIELD
    how = "calculator, confirmed by gradient" if grad == calc else f"gradient; {calculator}"
    return f"{grad} ({how})", grad > MIN_RECEPTIVE_FIELD


def _depthwise_separable(convs: list) -> tuple[str, bool]:
    """A depthwise conv (one filter per input channel) counts only if the next conv the forward
    runs is a pointwise 1x1 over its output channels: alone it mixes no channels."""
    dw = [(c, n) for c, n in itertools.pairwise([*convs, None]) if c.groups == c.c_in > 1]
    good = sum(n.kernel == (1, 1) and n.groups == 1 and n.c_in == c.c_out for c, n in dw if n)
    if good:
        return _n(good, "depthwise conv", " followed by a pointwise 1x1"), True
    return _n(len(dw), "depthwise conv", ", none followed by a pointwise 1x1"), False


def _global_average_pooling(fmap: Tensor | None, out) -> tuple[str, bool]:
    """GAP by behaviour: if the logits see the last feature map only through its spatial mean,
    their gradient with respect to that map is the same at every position."""
    if fmap is None or not isinstance(out, Tensor) or not out.requires_grad:
        return "the output depends on no feature map", False
    size = "{}x{}".format(*fmap.shape[2:])
    # A random mix of the logits tests every class with one gradient; a head that is not an
    # average could only look like one for this mix by a measure-zero coincidence.
    mix = torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out)
    (grad,) = torch.autograd.grad((out * mix).sum(), fmap, materialize_grads=True)
    scale = grad.abs().max().item()  # zero: the logits ignore every position
    if scale and (grad - grad.mean((2, 3), keepdim=True)).abs().max().item() <= 1e-5 * scale:
        return f"logits see the last {size} map only through its mean", True
    if ignored := (grad.abs().amax((0, 1)) <= 1e-7 * scale).nonzero().tolist():
        where = ", ".join(f"({r},{c})" for r, c in ignored[:6]) + ", ..." * (len(ignored) > 6)
        return f"not global: ignores positions {where} of the {size} map", False
    return f"not an average: weights the {size} map's positions unequally", False


def _downsampling(calls: list) -> tuple[str, bool]:
    """How the map shrinks, and its sizes; the bonus: by dilated convs, no stride or pooling."""
    shrinks = [(op, a, b, conv) for op, a, b, conv in calls if 1 < b[0] * b[1] < a[0] * a[1]]
    if not shrinks:
        return "the map is never shrunk", False
    kinds = list(dict.fromkeys(conv.how if conv else "max-pooling" if "max_pool" in op else op
                               for op, _, _, conv in shrinks))  # fmt: skip
    sizes = [_size(shrinks[0][1]), *(_size(b) for _, _, b, _ in shrinks)]
    path = "->".join(size for size, _ in itertools.groupby(sizes))
    bonus = "dilation" in kinds and set(kinds) <= {"dilation", "unpadded conv"}
    return f"by {' + '.join(kinds)}: {path}", bonus


def grade(model: nn.Module, input_size: tuple[int, int, int] = (3, 32, 32)) -> list[Rule]:
    """Every structural rule and the bonus, measured on one forward pass of two random images
    through an eval-mode copy of ``model`` and by ``_receptive_field``. Used in lesson 04."""
    p = next(model.parameters(), torch.empty(0))
    x = torch.randn(2, *input_size, generator=torch.Generator().manual_seed(0))
    twin = copy.deepcopy(model).eval()  # the model's own modes stay as they are
    with (rec := _Recorder()):
        out = twin(x.to(p).requires_grad_())  # a graph to differentiate even if all is frozen
    n, convs = count_parameters(model), [conv for *_, conv in rec.calls if conv]
    pools = [f"{op} {_size(a)}->{_size(b)}" for op, a, b, _ in rec.calls if "max_pool" in op]
    dilated = sorted(c.dilation for c in convs if c.dilation > 1)
    rates = ", ".join(map(str, dict.fromkeys(dilated)))
    shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
    measured = {
        "parameters": (f"{n:,} trainable", n < MAX_PARAMETERS),
        "RF": _receptive_field(model, input_size),
        "no maxpool": (_n(len(pools), "max-pooling call", ": " + ", ".join(pools)), not pools),
        "dw-sep": _depthwise_separable(convs),
        "dilated": (_n(len(dilated), "dilated conv", f" (dilation {rates})"), bool(dilated)),
        "GAP": _global_average_pooling(rec.last_map, out),
        "shape": (f"{shape} for input {tuple(x.shape)}", shape == (len(x), NUM_CLASSES)),
        "bonus": _downsampling(rec.calls),
    }
    return [Rule(key, *result) for key, result in measured.items()]


def format_grades(rules: list[Rule]) -> str:
    """Rule, what was measured, PASS/FAIL (yes/no for the bonus). Used in lesson 04 and the CLI."""
    rows = [(RULES[r.key], r.measured, r.verdict) for r in rules]
    return format_table(("rule", "measured", "verdict"), rows, align="lll")


def _load(spec: str) -> tuple[str, nn.Module]:
    """Run a submission's code and instantiate its model: ``PATH`` or ``PATH:NAME``."""
    path, sep, name = spec.rpartition(":")
    path, name = (Path(path), name) if sep and name.isidentifier() else (Path(spec), "")
    code = path.read_text()
    if path.suffix == ".ipynb":  # its code cells in order, without magics and shell lines
        cells = [c for c in json.loads(code)["cells"] if c["cell_type"] == "code"]
        lines = "\n".join("".join(c["source"]) for c in cells).splitlines()
        code = "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))
    module = types.ModuleType(f"submission:{path}")  # registered for dataclasses and pickle
    module.__file__, sys.modules[module.__name__] = str(path), module
    exec(compile(code, str(path), "exec"), module.__dict__)
    classes = [k for k, v in vars(module).items() if isinstance(v, type)
               and issubclass(v, nn.Module) and v.__module__ == module.__name__]  # fmt: skip
    if not name and len(classes) != 1:
        found = f"{len(classes)} models ({', '.join(classes)})" if classes else "no model"
        raise ValueError(f"{path} defines {found}; give its class or factory as {path}:NAME")
    if not hasattr(module, name := name or classes[0]):
        raise ValueError(f"{path} defines no {name!r}")
    if not isinstance(model := getattr(module, name)(), nn.Module):
        raise TypeError(f"{name}() returned a {type(model).__name__}, not an nn.Module")
    return f"{path.name}:{name}", model


def _describe(err: BaseException, spec: str) -> str:
    """One line: the error and, if it was raised by the submission's own code, where."""
    own = [f for f in traceback.extract_tb(err.__traceback__) if spec.startswith(f.filename)]
    where = f" ({Path(own[-1].filename).name} line {own[-1].lineno})" if own else ""
    return f"{type(err).__name__}: {err}{where}".replace("\n", " ")


def _accuracy(model: nn.Module, spec: str, label: str, args, weights: str | None) -> Rule:
    """The accuracy rule, by ``weights`` or a training run; a failure is a FAIL naming its error."""
    from .data import channel_stats, load_cifar10
    from .evaluate import eval_loader, predict
    from .train import TrainConfig, read_state, run

    try:
        if weights:
            model.load_state_dict(read_state(weights))  # weights_only: never unpickles code
            data = load_cifar10(args.data_root, verbose=False)
            loader = eval_loader(data.x_test, data.y_test, channel_stats(data.x_train))
            acc = predict(model, loader).accuracy  # normalised as in training
            how = f"{Path(weights).name}, {len(data.y_test):,} test images, {data.label}"
        else:
            cfg = TrainConfig(model=label, epochs=args.epochs or TrainConfig.epochs)
            out = Path("runs/check") / label.replace(":", "_").replace(".", "_")
            record = run(cfg, out, data_root=args.data_root, resume=False, model=model)
            acc, data_label = record["final_test_acc"], record["dataset"]
            how = f"final epoch of {cfg.epochs}, trained with the course's recipe, {data_label}"
    except Exception as err:
        return Rule("accuracy", _describe(err, spec), False)
    return Rule("accuracy", f"{acc:.2%} ({how})", acc >= MIN_ACCURACY)


def run_check(args: argparse.Namespace) -> int:
    """``python -m course_lib check``: a table per submission, a summary; 1 unless all pass."""
    weights = args.weights or [None] * len(args.submissions)
    if args.report and not args.report.endswith((".csv", ".md")):
        raise ValueError(f"--report {args.report}: the file must end in .csv or .md")
    if len(weights) != len(args.submissions) or (args.weights and args.train):
        raise ValueError("give --weights once per submission, in order, and not with --train")
    keys = [k for k in RULES if k != "accuracy" or args.weights or args.train]
    header, rows = ["submission", *keys, "error"], []
    for spec, w in zip(args.submissions, weights, strict=True):
        name, rules, error = Path(spec).name, [], ""
        try:
            name, model = _load(spec)
            rules = grade(model)
        except (Exception, SystemExit) as err:  # a broken submission is a row, not the run's end
            error = _describe(err, spec)
        if rules and (w or args.train):
            rules.insert(-1, _accuracy(model, spec, name, args, w))
        verdicts = {r.key: r.verdict for r in rules}
        rows.append([name, *(verdicts.get(k, "") for k in keys), error])
        print(f"{name}: {'FAILS' if error or 'FAIL' in rows[-1] else 'passes every rule'}")
        print(format_grades(rules) if rules else f"error: {error}", end="\n\n")
    summary = format_table(header, rows, align="l" * len(header))
    if len(rows) > 1:
        print(summary)
    if args.report and args.report.endswith(".csv"):
        with open(args.report, "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])
    elif args.report:
        Path(args.report).write_text(f"# Grades\n\n{summary}\n")
    return 1 if any(row[-1] or "FAIL" in row for row in rows) else 0


def add_check_parser(subparsers) -> None:
    """Register ``check`` on the CLI's subparsers (called by ``cli.py``)."""
    warning = "Grading runs each submission's code: grade untrusted files in a sandbox."
    p = subparsers.add_parser(
        "check", help="grade models against the assignment", description=warning
    )
    add = p.add_argument
    add("submissions", nargs="+", metavar="PATH[:NAME]", help="a .py file or a notebook; NAME: "
        "its model's class or factory, unless it defines one nn.Module class")  # fmt: skip
    add("--train", action="store_true", help="train each with the course's recipe (runs/check/)")
    add("--epochs", type=int, help="epochs for --train (default: as `train`)")
    add("--weights", action="append", metavar="FILE", help="instead, test a state_dict (loaded "
        "with weights_only=True), once per submission in order")  # fmt: skip
    add("--report", metavar="FILE", help="also write the summary to FILE (.csv or .md)")
    add("--data-root", help="dataset cache folder (default: the repository's data/)")
