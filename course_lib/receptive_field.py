"""Receptive fields: lesson 02's recurrence walked over a torch model's modules, and the gradient
measurement that checks it."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch
from torch import nn
from torchvision.models import VGG, ResNet
from torchvision.models.resnet import BasicBlock, Bottleneck

from .layers import DepthwiseSeparableConv2d, Residual
from .models import FourBlockNet
from .tables import format_table

# >>> written in the lessons' #@save cells: edit the lesson, then run `make export`


# from lessons/02_dilation_and_receptive_field.ipynb


@dataclass(frozen=True)
class LayerSpec:
    """One square layer: kind "conv", "maxpool" or "avgpool", and its geometry."""

    kind: str
    kernel: int = 3
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    name: str = ""


@dataclass(frozen=True)
class RFRow:
    """A layer's row: its kind and geometry; map size n, jump j, field r in and out; start."""

    name: str
    kind: str
    kernel: int
    stride: int
    padding: int
    dilation: int
    n_in: int
    n_out: int
    j_in: int
    j_out: int
    r_in: int
    r_out: int
    start: float


def rf_step(layer: LayerSpec, n: int, j: int, r: int, start: float) -> RFRow:
    """Apply one layer to a map of side n, jump j, field r and start: the layer's row."""
    k = layer.dilation * (layer.kernel - 1) + 1  # the effective kernel
    n_out = (n + 2 * layer.padding - k) // layer.stride + 1
    if n_out < 1:
        raise ValueError(
            f"layer '{layer.name}' ({layer.kind}): effective kernel {k} (kernel {layer.kernel}, "
            f"dilation {layer.dilation}) is larger than the padded input {n + 2 * layer.padding}"
        )
    j_out, r_out = j * layer.stride, r + (k - 1) * j
    start_out = start + ((k - 1) / 2 - layer.padding) * j
    geometry = (layer.kernel, layer.stride, layer.padding, layer.dilation)
    return RFRow(layer.name, layer.kind, *geometry, n, n_out, j, j_out, r, r_out, start_out)


def table_from_specs(specs: Sequence[LayerSpec], input_size: int = 32) -> list[RFRow]:
    """The receptive-field table of a chain of square layers on a square input."""
    rows, n, j, r, start = [], input_size, 1, 1, 0.5  # the input: one pixel per unit
    for i, layer in enumerate(specs):
        layer = replace(layer, name=layer.name or f"{layer.kind}{i + 1}")
        rows.append(rf_step(layer, n, j, r, start))
        n, j, r, start = rows[-1].n_out, rows[-1].j_out, rows[-1].r_out, rows[-1].start
    return rows


def format_rf_table(rows: Sequence[RFRow]) -> str:
    """The rows as a text table, one line per layer."""
    header = [f.name for f in fields(RFRow)]
    return format_table(header, [[getattr(row, h) for h in header] for row in rows])


def stack_footprint(specs: Sequence[LayerSpec]) -> np.ndarray:
    """Paths from each input pixel of a row to one output unit of the chain (0: never seen)."""
    paths = np.ones(1, dtype=np.int64)  # the unit itself
    for layer in reversed(specs):
        k = layer.dilation * (layer.kernel - 1) + 1
        below = np.zeros((len(paths) - 1) * layer.stride + k, dtype=np.int64)
        for tap in range(layer.kernel):  # each tap shifts the whole row by its offset
            offset = tap * layer.dilation
            below[offset : offset + (len(paths) - 1) * layer.stride + 1 : layer.stride] += paths
        paths = below
    return paths


# <<< end of the lessons' code


# How the walk reads a model. Chains: forward runs the children one after another, in the order
# they were added. Residual blocks return branch(x) + skip(x), the skip being the child named
# `downsample` (torchvision's projection) or else x, the branch every other child in order.
CHAINS = (nn.Sequential, FourBlockNet, DepthwiseSeparableConv2d, ResNet, VGG)
RESIDUAL = (Residual, BasicBlock, Bottleneck)
SPATIAL = {nn.Conv2d: "conv", nn.MaxPool2d: "maxpool", nn.AvgPool2d: "avgpool"}
ELEMENTWISE = (  # they keep every unit where it is
    nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, nn.Identity, nn.ReLU,
    nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
    nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
)  # fmt: skip
ENDS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Linear)


def _layer_spec(module: nn.Module, name: str) -> LayerSpec:
    """The LayerSpec of a Conv2d or pooling module: square, padded by a number of pixels."""
    attrs = ("kernel_size", "stride", "padding", "dilation")  # pooling has no dilation
    pairs = [getattr(module, a, 1) for a in attrs]
    pairs = [tuple(v) if isinstance(v, (tuple, list)) else (v, v) for v in pairs]
    if getattr(module, "ceil_mode", False) or any(a != b or type(a) is str for a, b in pairs):
        geometry = dict(zip(attrs, pairs, strict=True))
        raise ValueError(
            f"receptive_field: layer '{name}' ({type(module).__name__}) {geometry}: the walk "
            "follows square layers padded by a number of pixels, without ceil_mode"
        )
    return LayerSpec(SPATIAL[type(module)], *(int(a) for a, _ in pairs), name=name)


def _trace(model: nn.Module, input_size) -> tuple[list[RFRow], tuple]:
    """Walk the model: its rows, and (n, j, r, start) of its last map of more than one unit."""
    n, width = input_size[-2:]
    if n != width:
        raise ValueError(f"receptive_field: the input must be square, got {n}x{width}")
    rows: list[RFRow] = []
    maps = [(n, 1, 1, 0.5)]  # the input: one pixel per unit

    def walk(module: nn.Module, name: str, state: tuple | None) -> tuple | None:
        if state is None or isinstance(module, ELEMENTWISE):
            return state
        where = f"layer '{name or '<model>'}' ({type(module).__name__})"
        spec = _layer_spec(module, name) if type(module) in SPATIAL else None
        # a pool whose one window covers the whole map is global pooling
        whole = spec and spec.kind != "conv" and (spec.kernel, spec.padding) == (state[0], 0)
        children = [(f"{name}.{c}" if name else c, m) for c, m in module.named_children()]
        if isinstance(module, ENDS) or whole:
            return None
        if spec:
            rows.append(rf_step(spec, *state))
            state = rows[-1].n_out, rows[-1].j_out, rows[-1].r_out, rows[-1].start
        elif isinstance(module, CHAINS):
            for child_name, child in children:
                state = walk(child, child_name, state)
            return state
        elif isinstance(module, RESIDUAL):
            branch, skip = state, state
            for child_name, child in children:
                if child_name.rpartition(".")[2] == "downsample":
                    skip = walk(child, child_name, skip)
                else:
                    branch = walk(child, child_name, branch)
            if branch is None or skip is None or branch[:2] != skip[:2]:
                raise ValueError(f"receptive_field: {where} adds maps of different sizes or jumps")
            state = max(branch, skip, key=lambda s: s[2])  # the larger field
        else:
            raise ValueError(
                f"receptive_field: cannot follow {where}; it follows Sequential containers, "
                "residual blocks, Conv2d, pooling and element-wise layers"
            )
        if state[0] > 1:  # a map, not one pooled unit
            maps.append(state)
        return state

    walk(model, "", maps[0])
    return rows, maps[-1]


def receptive_field_table(model: nn.Module, input_size=(3, 32, 32)) -> list[RFRow]:
    """A row per Conv2d, MaxPool2d and AvgPool2d in forward order, named as in ``named_modules``;
    global pooling, Flatten and Linear end it."""
    return _trace(model, input_size)[0]


def receptive_field(model: nn.Module, input_size=(3, 32, 32)) -> int:
    """The receptive field of the last map of more than one unit (the one global pooling
    averages)."""
    return _trace(model, input_size)[1][2]


class _Stop(Exception):
    """Ends a forward pass once the wanted map exists."""


def feature_map(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
    """The output of ``layer`` (the forward pass stops there), or else the last map of more than
    one unit that a module outputs (a head made for smaller images may fail after it)."""
    modules, maps = dict(model.named_modules()), []
    if layer is not None and layer not in modules:
        raise ValueError(f"feature_map: the model has no layer named '{layer}'")

    def keep(module: nn.Module, args, y) -> None:
        if isinstance(y, torch.Tensor) and y.dim() == 4 and y.shape[-2:].numel() > 1:
            maps.append(y)
        if layer is not None and module is modules[layer]:
            raise _Stop(y)

    handles = [m.register_forward_hook(keep) for m in modules.values()]
    try:
        model(x)
    except _Stop as found:
        return found.args[0]
    except Exception:
        if layer is not None or not maps:
            raise
    finally:
        for handle in handles:
            handle.remove()
    if layer is not None:
        raise ValueError(f"feature_map: layer '{layer}' is not called in the forward pass")
    return maps[-1]


def positive_probe(model: nn.Module) -> nn.Module:
    """A float64 eval-mode copy whose gradients only add up (convs average their window, no
    BatchNorm, max pools average): a unit's input gradient is non-zero exactly on its field."""
    probe = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for parent in list(probe.modules()):
            for name, child in parent.named_children():
                if isinstance(child, nn.modules.conv._ConvNd):
                    child.weight.fill_(1.0 / child.weight[0].numel())
                elif isinstance(child, nn.modules.batchnorm._BatchNorm):
                    setattr(parent, name, nn.Identity())
                elif isinstance(child, nn.MaxPool2d) and child.dilation in (1, (1, 1)):
                    pool = nn.AvgPool2d(child.kernel_size, child.stride, child.padding)
                    setattr(parent, name, pool)
    return probe


@dataclass(frozen=True, eq=False)
class MeasuredRF:
    """The box (height, width) ``hw`` of a non-zero input gradient ``grad``, ``size`` its side."""

    size: int
    hw: tuple[int, int]
    grad: np.ndarray = field(repr=False)


def empirical_receptive_field(model: nn.Module, input_size=(3, 96, 96),
                              layer: str | None = None) -> MeasuredRF:
    """The box of input pixels that reach the centre unit of ``feature_map(model, x, layer)`` in
    ``positive_probe(model)`` on an all-ones input; holes (gridding) show in ``grad``."""
    probe = positive_probe(model)
    device = next(probe.parameters()).device
    x = torch.ones(1, *input_size, dtype=torch.float64, device=device, requires_grad=True)
    y = feature_map(probe, x, layer)
    (grad,) = torch.autograd.grad(y[:, :, y.shape[-2] // 2, y.shape[-1] // 2].sum(), x)
    grad = grad[0].abs().sum(0).cpu().numpy()
    rows, cols = np.nonzero(grad)
    h, w = grad.shape
    if rows.min() == 0 or cols.min() == 0 or rows.max() == h - 1 or cols.max() == w - 1:
        raise ValueError(
            f"empirical_receptive_field: the gradient reaches the border of the {h}x{w} input, "
            "so the receptive field is clipped; use a larger input_size"
        )
    hw = (int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1))
    return MeasuredRF(max(hw), hw, grad)
