"""Receptive fields: the analytic table, the gradient measurements and the maths behind the widgets.

The analytic table follows one forward pass, so it sees the layers in the order ``forward`` runs
them, through nested containers, residual additions and concatenations, with no hand-written layer
list. The gradient measurements check it and show the effective receptive field. Used in lessons 02
and 04.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

__all__ = [
    "RFRow",
    "LayerSpec",
    "MeasuredRF",
    "receptive_field_table",
    "receptive_field",
    "table_from_specs",
    "dilation_footprint",
    "rf_growth",
    "stack_footprint",
    "format_rf_table",
    "empirical_receptive_field",
    "effective_receptive_field",
    "erf_extent",
]

COLUMNS = (
    "name",
    "kernel",
    "stride",
    "padding",
    "dilation",
    "eff_kernel",
    "n_in",
    "n_out",
    "j_in",
    "j_out",
    "r_in",
    "r_out",
    "start",
)


@dataclass(frozen=True)
class RFRow:
    """One spatial layer of a receptive-field table.

    ``n`` is the map size, ``j`` the jump (input pixels between neighbouring units), ``r`` the
    receptive field and ``start`` the input coordinate of the first output unit's field centre
    (pixel ``i`` covers ``[i, i + 1)``, so the first pixel's centre is 0.5). For non-square layers
    the int columns describe the axis with the larger ``r_out``; ``r_out_hw`` gives both ((0, 0)
    on rows built by hand).
    """

    name: str
    kernel: int
    stride: int
    padding: int
    dilation: int
    eff_kernel: int
    n_in: int
    n_out: int
    j_in: int
    j_out: int
    r_in: int
    r_out: int
    start: float
    r_out_hw: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class LayerSpec:
    """A square layer for the lesson-02 widgets: ``kind`` is "conv", "maxpool" or "avgpool"."""

    kind: str
    kernel: int = 3
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    name: str = ""


@dataclass(frozen=True, eq=False)
class MeasuredRF:
    """A gradient measurement: ``size`` is the larger side of ``hw``, the bounding box (height,
    width) of the non-zero input gradient ``grad`` (shape (H, W))."""

    size: int
    hw: tuple[int, int]
    grad: np.ndarray = field(repr=False)


# ---------------------------------------------------------------- the recurrence, once


@dataclass(frozen=True)
class _Axis:
    n: int | None  # None where only the geometry matters (rf_growth, stack_footprint)
    j: int
    r: int
    start: float
    # Set by an explicit F.pad (padding_mode='reflect', ZeroPad2d): the next layer reports it in
    # its padding column, so a reflect-padded conv reads like its module.
    pad: tuple[int, int] = (0, 0)


def _input_axis(n: int | None) -> _Axis:
    return _Axis(n=n, j=1, r=1, start=0.5)


def _step(
    ax: _Axis,
    kernel: int,
    stride: int,
    pad: tuple[int, int],
    dilation: int,
    where: str,
    ceil_mode: bool = False,
) -> tuple[_Axis, int]:
    """Apply one layer to one axis; return the new axis state and the effective kernel."""
    for what, value in (("kernel", kernel), ("stride", stride), ("dilation", dilation)):
        if value < 1:
            raise ValueError(f"{where}: {what} must be a positive integer, got {value}")
    lo, hi = pad
    if lo < 0 or hi < 0:
        raise ValueError(f"{where}: padding must be non-negative, got {pad}")
    eff = dilation * (kernel - 1) + 1
    n_out = None
    if ax.n is not None:
        padded = ax.n + lo + hi
        if eff > padded:
            raise ValueError(
                f"{where}: effective kernel {eff} (kernel {kernel}, dilation {dilation}) is "
                f"larger than the padded input {padded} (size {ax.n} + padding {lo}+{hi})"
            )
        if ceil_mode:
            n_out = -(-(padded - eff) // stride) + 1
            # PyTorch drops a last window that would start inside the right padding.
            if (n_out - 1) * stride >= ax.n + lo:
                n_out -= 1
        else:
            n_out = (padded - eff) // stride + 1
    out = _Axis(
        n=n_out,
        j=ax.j * stride,
        r=ax.r + (eff - 1) * ax.j,
        start=ax.start + ((eff - 1) / 2 - lo) * ax.j,
    )
    return out, eff


def _make_row(
    name: str,
    ins: tuple[_Axis, _Axis],
    outs: tuple[_Axis, _Axis],
    kernels: tuple[int, int],
    strides: tuple[int, int],
    pads: tuple[tuple[int, int], tuple[int, int]],
    dilations: tuple[int, int],
    effs: tuple[int, int],
) -> RFRow:
    a = 0 if outs[0].r >= outs[1].r else 1
    pre = ins[a].pad
    return RFRow(
        name=name,
        kernel=kernels[a],
        stride=strides[a],
        padding=pads[a][0] + pre[0],
        dilation=dilations[a],
        eff_kernel=effs[a],
        n_in=ins[a].n - pre[0] - pre[1],
        n_out=outs[a].n,
        j_in=ins[a].j,
        j_out=outs[a].j,
        r_in=ins[a].r,
        r_out=outs[a].r,
        start=outs[a].start,
        r_out_hw=(outs[0].r, outs[1].r),
    )


def _merge(states: list[tuple[_Axis, _Axis]], where: str, op: str) -> tuple[_Axis, _Axis]:
    """Combine the fields of paths that meet (add, cat, ...): the union of their fields."""
    merged = []
    for a in (0, 1):
        axes = [s[a] for s in states]
        jumps = sorted({ax.j for ax in axes})
        if len(jumps) > 1:
            raise ValueError(
                f"{where}: {op} merges maps with different jumps {jumps}; "
                "their units do not sit on one grid"
            )
        # Each unit's field is centred at start + i*j; the union of centred intervals is the
        # larger one when the centres agree, as they do in ordinary residual and Inception blocks.
        lo = min(ax.start - (ax.r - 1) / 2 for ax in axes)
        hi = max(ax.start + (ax.r - 1) / 2 for ax in axes)
        merged.append(_Axis(n=axes[0].n, j=jumps[0], r=round(hi - lo + 1), start=(lo + hi) / 2))
    return merged[0], merged[1]


# ---------------------------------------------------------------- tracing a model


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def _bind(args: tuple, kwargs: dict, names: tuple[str, ...], **defaults) -> dict:
    bound = dict(defaults)
    bound.update(zip(names, args, strict=False))  # names cover only the leading args
    bound.update(kwargs)
    return bound


def _tensors(obj) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


_CONV = {"conv2d"}
_MAX_POOL = {"max_pool2d", "max_pool2d_with_indices", "_max_pool2d"}
_AVG_POOL = {"avg_pool2d"}
_LP_POOL = {"lp_pool2d"}
_ADAPTIVE = {"adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices"}
_REDUCTIONS = {
    "mean", "sum", "amax", "amin", "max", "min", "logsumexp", "std", "var", "norm", "nansum",
    "nanmean", "prod", "std_mean", "var_mean", "median", "aminmax",
}  # fmt: skip
_UNSUPPORTED = {
    "interpolate": "resamples the map",
    "upsample": "resamples the map",
    "upsample_nearest": "resamples the map",
    "upsample_bilinear": "resamples the map",
    "grid_sample": "resamples the map",
    "conv_transpose2d": "is a transposed convolution",
    "pixel_shuffle": "moves channels into space",
    "pixel_unshuffle": "moves space into channels",
    "unfold": "rearranges windows into channels",
    "fold": "rearranges channels into windows",
    "fractional_max_pool2d": "uses random window sizes",
    "max_unpool2d": "scatters values back into a larger map",
    "roll": "moves pixels",
    "rot90": "moves pixels",
    "flip": "moves pixels",
    "fliplr": "moves pixels",
    "flipud": "moves pixels",
    "permute": "moves the spatial axes",
    "transpose": "moves the spatial axes",
    "transpose_": "moves the spatial axes",
    "swapaxes": "moves the spatial axes",
    "swapdims": "moves the spatial axes",
    "movedim": "moves the spatial axes",
    "moveaxis": "moves the spatial axes",
    "linear": "mixes positions along the width axis",
    "matmul": "mixes positions along the width axis",
    "__matmul__": "mixes positions along the width axis",
    "mm": "mixes positions along the width axis",
    "bmm": "mixes positions along the width axis",
    "einsum": "may mix positions across the map",
    "tensordot": "may mix positions across the map",
}
# Outputs that do not depend on the values of their inputs.
_NO_DEPENDENCE = {
    "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like",
    "randint_like", "new_zeros", "new_ones", "new_empty", "new_full", "new_tensor",
}  # fmt: skip

_State = tuple[_Axis, _Axis]


class _Stop(Exception):
    """Raised to end a forward pass early once the wanted feature map exists."""

    def __init__(self, tensor: torch.Tensor):
        super().__init__("stop")
        self.tensor = tensor


class _Tracker(TorchFunctionMode):
    """Follows each feature map's receptive-field state through one forward pass.

    States are keyed by ``id`` of the tensor and keep the tensor alive so ids are not reused.
    Module hooks keep a stack of qualified names, so a functional call made inside a module is
    recorded under that module's name.
    """

    def __init__(
        self,
        model: nn.Module,
        caller: str,
        surrogate_maxpool: bool = False,
        stop_at_end: int | None = None,
    ):
        super().__init__()
        self.model = model
        self.caller = caller
        self.surrogate_maxpool = surrogate_maxpool
        self.stop_at_end = stop_at_end
        self.states: dict[int, tuple[torch.Tensor, _State]] = {}
        self.rows: list[RFRow] = []
        self.ends: list[_State] = []
        self.stack: list[tuple[str, nn.Module]] = []
        self.handles: list = []
        self.stopped = False

    # -- bookkeeping
    def attach_hooks(self) -> None:
        for name, module in self.model.named_modules():
            self.handles.append(module.register_forward_pre_hook(self._push(name)))
            self.handles.append(module.register_forward_hook(self._pop))

    def remove_hooks(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _push(self, name: str):
        def hook(module, args):
            self.stack.append((name, module))

        return hook

    def _pop(self, module, args, output):
        if self.stack:
            self.stack.pop()

    def set_state(self, t: torch.Tensor, state: _State) -> None:
        self.states[id(t)] = (t, state)

    def state(self, t) -> _State | None:
        entry = self.states.get(id(t)) if isinstance(t, torch.Tensor) else None
        return entry[1] if entry is not None and entry[0] is t else None

    def layer_name(self) -> str:
        if not self.stack:
            return f"<{type(self.model).__name__}>"
        name, module = self.stack[-1]
        return name or f"<{type(module).__name__}>"

    def where(self) -> str:
        module = self.stack[-1][1] if self.stack else self.model
        return f"{self.caller}: layer '{self.layer_name()}' ({type(module).__name__})"

    def unsupported(self, op: str, reason: str) -> ValueError:
        return ValueError(
            f"{self.where()} is not supported: {op} {reason}, which the receptive-field "
            "recurrence does not model"
        )

    def end(self, state: _State, spatial_input: torch.Tensor) -> None:
        if self.stop_at_end is not None and len(self.ends) == self.stop_at_end:
            raise _Stop(spatial_input)
        self.ends.append(state)

    # -- the mode
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        op = getattr(func, "__name__", str(func))
        spatial = [t for t in _tensors((args, kwargs)) if self.state(t) is not None]
        if not spatial or op in _NO_DEPENDENCE:
            return func(*args, **kwargs)
        first = self.state(args[0]) if args else None
        if first is not None:
            if op in _CONV:
                return self._conv(func, args, kwargs, first)
            if op in _MAX_POOL | _AVG_POOL | _LP_POOL:
                return self._pool(func, op, args, kwargs, first)
            if op in _ADAPTIVE:
                return self._adaptive(func, op, args, kwargs, first)
            if op == "pad":
                return self._pad(func, args, kwargs, first)
            if op == "__getitem__":
                out = self._getitem(func, args, kwargs, first)
                if out is not None:
                    return out
        if op in _UNSUPPORTED:
            raise self.unsupported(op, _UNSUPPORTED[op])
        return self._generic(func, op, args, kwargs, spatial)

    def _record(self, x_state, geometry, ceil_mode=False, kind="conv"):
        """Run the recurrence for a windowed layer; return the output state, or None if global."""
        kernels, strides, pads, dilations = geometry
        where = self.where()
        (out_h, eff_h), (out_w, eff_w) = (
            _step(x_state[a], kernels[a], strides[a], pads[a], dilations[a], where, ceil_mode)
            for a in (0, 1)
        )
        outs, effs = (out_h, out_w), (eff_h, eff_w)
        is_global = (
            kind == "pool"
            and all(o.n == 1 for o in outs)
            and all(p == (0, 0) and ax.pad == (0, 0) for p, ax in zip(pads, x_state, strict=True))
            and all(e == ax.n for e, ax in zip(effs, x_state, strict=True))
        )
        if is_global:
            return None
        self.rows.append(
            _make_row(self.layer_name(), x_state, outs, kernels, strides, pads, dilations, effs)
        )
        return outs

    def _finish(self, out, state: _State):
        first = out[0] if isinstance(out, (tuple, list)) else out
        got = tuple(first.shape[-2:])
        if got != (state[0].n, state[1].n):
            raise ValueError(
                f"{self.where()}: the recurrence predicts a {state[0].n}x{state[1].n} map but "
                f"torch produced {got[0]}x{got[1]}"
            )
        for t in _tensors(out):
            if t.is_floating_point():
                self.set_state(t, state)
        return out

    def _conv(self, func, args, kwargs, x_state):
        b = _bind(args, kwargs, ("input", "weight", "bias", "stride", "padding", "dilation"),
                  stride=1, padding=0, dilation=1)  # fmt: skip
        kernels = tuple(int(k) for k in b["weight"].shape[-2:])
        strides, dilations = _pair(b["stride"]), _pair(b["dilation"])
        padding = b["padding"]
        if padding == "valid":
            pads = ((0, 0), (0, 0))
        elif padding == "same":
            # PyTorch puts the odd pixel of an even total padding on the right/bottom.
            totals = [d * (k - 1) for k, d in zip(kernels, dilations, strict=True)]
            pads = tuple((t // 2, t - t // 2) for t in totals)
        else:
            pads = tuple((p, p) for p in _pair(padding))
        state = self._record(x_state, (kernels, strides, pads, dilations))
        return self._finish(func(*args, **kwargs), state)

    def _pool(self, func, op, args, kwargs, x_state):
        if op in _LP_POOL:
            b = _bind(args, kwargs, ("input", "norm_type", "kernel_size", "stride", "ceil_mode"),
                      stride=None, ceil_mode=False)  # fmt: skip
            b["padding"], b["dilation"] = 0, 1
        elif op in _AVG_POOL:
            b = _bind(args, kwargs, ("input", "kernel_size", "stride", "padding", "ceil_mode"),
                      stride=None, padding=0, ceil_mode=False)  # fmt: skip
            b["dilation"] = 1
        else:
            b = _bind(args, kwargs,
                      ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode"),
                      stride=None, padding=0, dilation=1, ceil_mode=False)  # fmt: skip
        kernels = _pair(b["kernel_size"])
        stride = b["stride"]
        strides = kernels if stride is None or stride == [] or stride == () else _pair(stride)
        pads = tuple((p, p) for p in _pair(b["padding"]))
        geometry = (kernels, strides, pads, _pair(b["dilation"]))
        state = self._record(x_state, geometry, bool(b["ceil_mode"]), "pool")
        if state is None:
            self.end(x_state, args[0])
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        if self.surrogate_maxpool and op in _MAX_POOL:
            # Max pooling passes gradient to one winner per window; the measurement needs every
            # input the window depends on, so it uses a window mean with the same geometry.
            mean = _window_mean(args[0], geometry, (state[0].n, state[1].n))
            out = (mean, out[1]) if isinstance(out, tuple) else mean
        return self._finish(out, state)

    def _adaptive(self, func, op, args, kwargs, x_state):
        b = _bind(args, kwargs, ("input", "output_size"))
        sizes = b["output_size"]
        sizes = sizes if isinstance(sizes, (tuple, list)) else (sizes, sizes)
        sizes = [ax.n if s is None else int(s) for s, ax in zip(sizes, x_state, strict=True)]
        if sizes == [1, 1]:
            self.end(x_state, args[0])
            return func(*args, **kwargs)
        if any(ax.n % s for s, ax in zip(sizes, x_state, strict=True)):
            raise self.unsupported(op, "uses windows of unequal sizes for this map size")
        kernels = tuple(ax.n // s for s, ax in zip(sizes, x_state, strict=True))
        out = func(*args, **kwargs)
        if kernels == (1, 1):
            return self._finish(out, _strip(x_state))
        geometry = (kernels, kernels, ((0, 0), (0, 0)), (1, 1))
        state = self._record(x_state, geometry, kind="pool")
        if self.surrogate_maxpool and "max" in op:
            mean = _window_mean(args[0], geometry, tuple(sizes))
            out = (mean, out[1]) if isinstance(out, tuple) else mean
        return self._finish(out, state)

    def _pad(self, func, args, kwargs, x_state):
        b = _bind(args, kwargs, ("input", "pad"))
        pad = list(b["pad"]) + [0] * 4
        new = []
        for ax, (lo, hi) in zip(x_state, ((pad[2], pad[3]), (pad[0], pad[1])), strict=True):
            marker = (lo, hi) if lo >= 0 and hi >= 0 else (0, 0)
            new.append(_Axis(ax.n + lo + hi, ax.j, ax.r, ax.start - lo * ax.j, marker))
        return self._finish(func(*args, **kwargs), (new[0], new[1]))

    def _getitem(self, func, args, kwargs, x_state):
        """Slices of the spatial axes (crops, ``x[:, :, ::2, ::2]``) move the grid; anything
        fancier falls through to the generic rule."""
        x, index = args[0], args[1]
        index = index if isinstance(index, tuple) else (index,)
        if x.dim() != 4 or not all(isinstance(i, slice) or i is Ellipsis for i in index):
            return None
        if index.count(Ellipsis) > 1:
            return None
        if Ellipsis in index:
            k = index.index(Ellipsis)
            fill = (slice(None),) * (4 - len(index) + 1)
            index = index[:k] + fill + index[k + 1 :]
        index = index + (slice(None),) * (4 - len(index))
        new = []
        for ax, sl in zip(x_state, index[2:4], strict=True):
            lo, hi, step = sl.indices(ax.n)
            n = len(range(lo, hi, step))
            new.append(_Axis(n, ax.j * step, ax.r, ax.start + lo * ax.j))
        return self._finish(func(*args, **kwargs), (new[0], new[1]))

    def _generic(self, func, op, args, kwargs, spatial):
        states = list({id(s): s for s in (self.state(t) for t in spatial)}.values())
        sizes = sorted({(s[0].n, s[1].n) for s in states})
        if len(sizes) > 1:
            raise self.unsupported(op, f"combines maps of different sizes {sizes}")
        merged = _merge(states, self.where(), op) if len(states) > 1 else _strip(states[0])
        out = func(*args, **kwargs)
        ended = False
        for t in _tensors(out):
            if t.dim() == 4 and tuple(t.shape[-2:]) == sizes[0]:
                self.set_state(t, merged)
            elif t.dim() == 4 and op not in _REDUCTIONS:
                h, w = sizes[0]
                raise self.unsupported(
                    op, f"changes the map size from {h}x{w} to {t.shape[-2]}x{t.shape[-1]}"
                )
            elif not ended:
                # Flattening or pooling away the grid: the spatial part of this path ends here.
                ended = True
                self.end(merged, spatial[0])
        return out


def _strip(state: _State) -> _State:
    return tuple(_Axis(ax.n, ax.j, ax.r, ax.start) for ax in state)


def _window_mean(x: torch.Tensor, geometry, out_hw: tuple[int, int]) -> torch.Tensor:
    (kh, kw), strides, ((ph, ph2), (pw, pw2)), dilations = geometry
    need = [
        (o - 1) * s + d * (k - 1) + 1
        for o, s, d, k in zip(out_hw, strides, dilations, (kh, kw), strict=True)
    ]
    have = [x.shape[-2] + ph + ph2, x.shape[-1] + pw + pw2]
    extra = [max(0, n - h) for n, h in zip(need, have, strict=True)]
    xp = F.pad(x, (pw, pw2 + extra[1], ph, ph2 + extra[0]))
    c = x.shape[1]
    weight = x.new_ones(c, 1, kh, kw) / (kh * kw)
    y = F.conv2d(xp, weight, stride=strides, dilation=dilations, groups=c)
    return y[..., : out_hw[0], : out_hw[1]]


def _check_input_size(input_size, caller: str) -> tuple[int, int, int]:
    if len(tuple(input_size)) != 3 or any(int(s) < 1 for s in input_size):
        raise ValueError(
            f"{caller}: input_size must be (channels, height, width), got {input_size}"
        )
    return tuple(int(s) for s in input_size)


def _check_modules(model: nn.Module, caller: str) -> None:
    """Check strides and dilations before the forward pass: torch fails obscurely or hangs on 0."""
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            checks = {"kernel_size": m.kernel_size, "stride": m.stride, "dilation": m.dilation}
        elif isinstance(m, (nn.AvgPool2d, nn.LPPool2d)):
            checks = {"kernel_size": m.kernel_size, "stride": m.stride}
        else:
            continue
        for what, value in checks.items():
            if value is None or value == () or value == []:
                continue  # a pool's stride defaults to its kernel
            if min(_pair(value)) < 1:
                raise ValueError(
                    f"{caller}: layer '{name}' ({type(m).__name__}): {what} must be a positive "
                    f"integer, got {value}"
                )


def _run(model: nn.Module, x: torch.Tensor, tracker: _Tracker):
    """Forward ``x`` under ``tracker``; return the output, or the stopping tensor."""
    tracker.set_state(x, (_input_axis(x.shape[-2]), _input_axis(x.shape[-1])))
    tracker.attach_hooks()
    try:
        with tracker:
            return model(x)
    except _Stop as stop:
        tracker.stopped = True
        return stop.tensor
    finally:
        tracker.remove_hooks()


def _model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    for p in list(model.parameters()) + list(model.buffers()):
        if p.is_floating_point():
            return p.dtype, p.device
    return torch.float32, torch.device("cpu")


class _EvalMode:
    """Eval mode for the duration, restoring each module's own flag afterwards."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.flags = [(m, m.training) for m in self.model.modules()]
        self.model.eval()

    def __exit__(self, *exc):
        for m, flag in self.flags:
            m.training = flag


@dataclass
class _Trace:
    rows: list[RFRow]
    final: _State | None
    final_is_output: bool
    n_ends: int


def _trace(model: nn.Module, input_size, caller: str) -> _Trace:
    size = _check_input_size(input_size, caller)
    _check_modules(model, caller)
    dtype, device = _model_dtype_device(model)
    tracker = _Tracker(model, caller)
    try:
        with _EvalMode(model), torch.no_grad():
            out = _run(model, torch.zeros(1, *size, dtype=dtype, device=device), tracker)
    except Exception as exc:
        # A head sized for another input (Linear after flatten) fails after the spatial part has
        # ended; the table is complete by then.
        ours = isinstance(exc, ValueError) and str(exc).startswith(f"{caller}:")
        if ours or not tracker.ends:
            raise
        out = None
    finals = [s for s in (tracker.state(t) for t in _tensors(out)) if s is not None]
    if finals:
        final = max(finals, key=lambda s: max(s[0].r, s[1].r))
        return _Trace(tracker.rows, final, True, len(tracker.ends))
    final = tracker.ends[-1] if tracker.ends else None
    return _Trace(tracker.rows, final, False, len(tracker.ends))


# ---------------------------------------------------------------- public: analytic


def receptive_field_table(model: nn.Module, input_size=(3, 32, 32)) -> list[RFRow]:
    """One row per spatial layer (conv, max/avg/lp pooling), in the order ``forward`` runs them.

    The model runs once, in eval mode under ``torch.no_grad()``, on zeros of shape
    ``(1, *input_size)``; its own train/eval flags are restored afterwards. Row names are qualified
    module names from ``named_modules()`` (``<ClassName>`` for calls made in the root's own
    ``forward``). Layers that keep the grid (BatchNorm, activations, dropout, element-wise ops)
    give no row. Where paths merge (``x + block(x)``, ``torch.cat``, ...) the merged map takes the
    union of the branches' fields, per axis: the maximum ``r`` when the branches are centred alike.
    Branches must share the jump, otherwise a ValueError names the layer. Global pooling
    (adaptive pooling to 1x1, a pool whose window is the whole map, ``mean`` over H and W) and
    flattening end the spatial part and give no row. Context from global statistics
    (squeeze-excitation gates, GroupNorm/LayerNorm statistics) is not counted, as is usual. An op
    that changes the map in a way the recurrence does not model (Upsample, transposed conv,
    pixel shuffle, unfold, ...) raises ValueError naming the module.

    Used in lessons 02 and 04.
    """
    return _trace(model, input_size, "receptive_field_table").rows


def receptive_field(model: nn.Module, input_size=(3, 32, 32)) -> int:
    """The receptive field (pixels, the larger axis) of the last spatial feature map.

    That is the map that enters global pooling or flattening, or the model's output if that is
    still spatial; for a plain stack it is ``r_out`` of the last row of the table.

    Used in lessons 02 and 04.
    """
    trace = _trace(model, input_size, "receptive_field")
    if not trace.rows or trace.final is None:
        raise ValueError(
            f"receptive_field: {type(model).__name__} has no spatial layer (Conv2d or pooling) "
            f"on input {tuple(input_size)}, so it has no receptive field"
        )
    return max(trace.final[0].r, trace.final[1].r)


# ---------------------------------------------------------------- public: widgets


_SPEC_KINDS = ("conv", "maxpool", "avgpool")


def _spec_steps(
    specs: Sequence[LayerSpec], n: int | None, caller: str
) -> Iterator[tuple[str, LayerSpec, _Axis, _Axis, int]]:
    ax = _input_axis(n)
    for i, spec in enumerate(specs):
        name = spec.name or f"{spec.kind}{i + 1}"
        where = f"{caller}: layer '{name}' ({spec.kind})"
        if spec.kind not in _SPEC_KINDS:
            raise ValueError(f"{where}: kind must be one of {_SPEC_KINDS}")
        if spec.kind == "avgpool" and spec.dilation != 1:
            raise ValueError(f"{where}: average pooling has no dilation, got {spec.dilation}")
        new, eff = _step(ax, spec.kernel, spec.stride, (spec.padding,) * 2, spec.dilation, where)
        yield name, spec, ax, new, eff
        ax = new


def table_from_specs(specs: Sequence[LayerSpec], input_size: int = 32) -> list[RFRow]:
    """The receptive-field table of a stack of square layers on a square input.

    Used in lesson 02.
    """
    rows = []
    for name, s, ax, new, eff in _spec_steps(specs, input_size, "table_from_specs"):
        pad = (s.padding, s.padding)
        rows.append(
            _make_row(
                name,
                (ax, ax),
                (new, new),
                (s.kernel,) * 2,
                (s.stride,) * 2,
                (pad, pad),
                (s.dilation,) * 2,
                (eff, eff),
            )
        )
    return rows


def dilation_footprint(kernel: int, dilation: int) -> np.ndarray:
    """A 0/1 int array of side ``dilation*(kernel-1)+1``; ones mark the kernel's taps.

    Used in lesson 02.
    """
    where = f"dilation_footprint: kernel {kernel}, dilation {dilation}"
    _step(_input_axis(None), kernel, 1, (0, 0), dilation, where)
    eff = dilation * (kernel - 1) + 1
    out = np.zeros((eff, eff), dtype=int)
    out[::dilation, ::dilation] = 1
    return out


def rf_growth(kernel: int, dilation: int, stride: int, n_layers: int) -> list[int]:
    """The receptive field after each of ``n_layers`` identical layers, starting with the input's 1.

    Used in lesson 02.
    """
    if n_layers < 0:
        raise ValueError(f"rf_growth: n_layers must be non-negative, got {n_layers}")
    spec = LayerSpec("conv", kernel=kernel, stride=stride, dilation=dilation)
    return [1] + [new.r for *_, new, _ in _spec_steps([spec] * n_layers, None, "rf_growth")]


def stack_footprint(specs: Sequence[LayerSpec], ndim: int = 2, counts: bool = False) -> np.ndarray:
    """Which input pixels one output unit of the stack depends on, exactly.

    Walks back from a single output unit, each layer spreading every position to its taps
    ``stride*i + dilation*t``; stacked dilated convs leave holes (gridding). The 1-D result has
    the stack's receptive field as its length; the 2-D one is its outer product, since square
    kernels act on the two axes independently. ``counts=True`` gives the number of paths to each
    pixel instead of 0/1, the pattern behind the effective receptive field.

    Used in lesson 02.
    """
    if ndim not in (1, 2):
        raise ValueError(f"stack_footprint: ndim must be 1 or 2, got {ndim}")
    steps = list(_spec_steps(specs, None, "stack_footprint"))
    v = np.ones(1, dtype=np.int64)
    for _, spec, *_, eff in reversed(steps):
        u = np.zeros((len(v) - 1) * spec.stride + eff, dtype=np.int64)
        for t in range(spec.kernel):
            off = t * spec.dilation
            u[off : off + (len(v) - 1) * spec.stride + 1 : spec.stride] += v
        v = u
    out = v if counts else (v > 0).astype(np.int64)
    return out if ndim == 1 else np.outer(out, out)


def format_rf_table(rows: Sequence[RFRow]) -> str:
    """A fixed-width text table of the rows, one line each under a header of the column names.

    An ``r_out_hw`` column is added when some layer is not square.

    Used in lessons 02 and 04.
    """
    cols = list(COLUMNS)
    show_hw = any(r.r_out_hw[0] != r.r_out_hw[1] for r in rows)
    if show_hw:
        cols.append("r_out_hw")

    def cell(row: RFRow, col: str) -> str:
        value = getattr(row, col)
        if col == "start":
            return f"{value:.1f}"
        if col == "r_out_hw":
            return f"{value[0]}x{value[1]}"
        return str(value)

    body = [[cell(r, c) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(line[i]) for line in body]) for i, c in enumerate(cols)]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [v.rjust(w) for v, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    return "\n".join([line(cols)] + [line(b) for b in body])


# ---------------------------------------------------------------- public: measurements


def _forward_to(model: nn.Module, x: torch.Tensor, layer: str | None, caller: str, **kw):
    """The feature map of ``layer``, or of the last spatial map; the forward stops there."""
    if layer is not None:
        modules = dict(model.named_modules())
        if layer not in modules:
            raise ValueError(f"{caller}: the model has no layer named '{layer}'")

        def hook(module, args, output):
            raise _Stop(output)

        handle = modules[layer].register_forward_hook(hook)
        tracker = _Tracker(model, caller, **kw)
        try:
            out = _run(model, x, tracker)
        finally:
            handle.remove()
        if not tracker.stopped:
            raise ValueError(f"{caller}: layer '{layer}' is not called in the forward pass")
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            raise ValueError(f"{caller}: layer '{layer}' does not output an (N, C, H, W) map")
        return out
    trace = _trace(model, x.shape[1:], caller)
    if not trace.rows or trace.final is None:
        raise ValueError(f"{caller}: {type(model).__name__} has no spatial layer")
    stop = None if trace.final_is_output else trace.n_ends - 1
    tracker = _Tracker(model, caller, stop_at_end=stop, **kw)
    out = _run(model, x, tracker)
    if trace.final_is_output:
        spatial = [t for t in _tensors(out) if tracker.state(t) is not None]
        out = max(spatial, key=lambda t: max(ax.r for ax in tracker.state(t)))
    return out


def _centre_grad(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d(centre unit of ``y``, summed over channels)/dx, for every image of the batch."""
    h, w = y.shape[-2:]
    (grad,) = torch.autograd.grad(y[:, :, h // 2, w // 2].sum(), x)
    return grad


def positive_probe(model: nn.Module) -> nn.Module:
    """A float64 copy in eval mode whose gradients only add up: every conv averages its window
    (positive weights, no bias) and every BatchNorm is the identity. The gradient of one unit
    with respect to the input is then non-zero exactly on its receptive field, never cancelled.

    Used by ``empirical_receptive_field`` and the grader.
    """
    m = copy.deepcopy(model).double().eval()
    _, device = _model_dtype_device(m)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.modules.conv._ConvNd):
                mod.weight.fill_(1.0 / mod.weight[0].numel())
                if mod.bias is not None:
                    mod.bias.zero_()
            elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.track_running_stats = True
                mod.running_mean = torch.zeros(mod.num_features, dtype=torch.float64, device=device)
                mod.running_var = torch.ones(mod.num_features, dtype=torch.float64, device=device)
                if mod.affine:
                    mod.weight.fill_(1.0)
                    mod.bias.zero_()
    return m


def empirical_receptive_field(
    model: nn.Module, input_size=(3, 96, 96), layer: str | None = None
) -> MeasuredRF:
    """Measure the receptive field by back-propagation from the centre unit of a feature map.

    The map is ``layer``'s output, or else the last spatial map (the one ``receptive_field``
    reports); the forward pass stops there, so a Linear head sized for 32x32 does no harm. A copy
    of the model gets every conv weight 1/fan_in, zero biases and identity BatchNorm, and runs in
    float64 on an all-ones input, so every path carries gradient (max pooling is measured as a
    window mean with the same geometry, since its gradient only reaches each window's winner).
    The result is the bounding box of the non-zero input gradient: it equals the analytic RF for
    any strides, and dilated stacks leave holes inside it (gridding), visible in ``grad``. The
    input must be larger than the field, or the box is clipped by the border; a ValueError says
    so. The default 96x96 suits fields up to about 90 pixels; deeper networks need a larger
    ``input_size``. Global context (a squeeze-excitation gate) reaches every pixel, so such
    models always measure as clipped.

    Used in lessons 02 and 04.
    """
    caller = "empirical_receptive_field"
    size = _check_input_size(input_size, caller)
    m = positive_probe(model)
    _, device = _model_dtype_device(m)
    x = torch.ones(1, *size, dtype=torch.float64, device=device, requires_grad=True)
    y = _forward_to(m, x, layer, caller, surrogate_maxpool=True)
    grad = _centre_grad(y, x)[0].abs().sum(0).cpu().numpy()
    rows, cols = np.nonzero(grad)
    if len(rows) == 0:
        raise ValueError(f"{caller}: no input pixel reaches the centre unit")
    h_in, w_in = grad.shape
    if rows.min() == 0 or cols.min() == 0 or rows.max() == h_in - 1 or cols.max() == w_in - 1:
        raise ValueError(
            f"{caller}: the gradient reaches the border of the {h_in}x{w_in} input, so the "
            "receptive field is clipped; use a larger input_size"
        )
    hw = (int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1))
    return MeasuredRF(size=max(hw), hw=hw, grad=grad)


def effective_receptive_field(
    model: nn.Module,
    images: torch.Tensor | None = None,
    input_size=(3, 32, 32),
    n: int = 32,
    layer: str | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The effective receptive field (Luo et al., 2016) of the centre unit, shape (H, W).

    With the model's own weights in eval mode: the mean over a batch of |d(centre unit, summed
    over channels)/d(input)|, summed over input channels and scaled to a maximum of 1. Without
    ``images`` the batch is ``n`` seeded standard-normal images of ``input_size``.

    Used in lessons 02 and 04.
    """
    caller = "effective_receptive_field"
    dtype, device = _model_dtype_device(model)
    if images is None:
        size = _check_input_size(input_size, caller)
        gen = torch.Generator().manual_seed(seed)
        images = torch.randn(n, *size, generator=gen)
    x = images.detach().to(dtype=dtype, device=device).requires_grad_(True)
    with _EvalMode(model):
        y = _forward_to(model, x, layer, caller)
        grad = _centre_grad(y, x)
    erf = grad.abs().sum(1).mean(0)
    top = erf.max()
    return (erf / top if top > 0 else erf).cpu().double().numpy()


def erf_extent(erf, mass: float = 0.9) -> int:
    """Side (pixels) of the smallest square that holds ``mass`` of an effective-RF map's total.

    The square is centred on the map's centre of mass (rounded to a pixel) and grows one ring at
    a time, so the side is odd; it may run past the map's border. One number for "how far the
    unit really looks", to set beside the theoretical receptive field.

    Used in lesson 02.
    """
    e = np.abs(np.asarray(erf, dtype=float))
    if e.ndim != 2:
        raise ValueError(f"erf_extent: erf must be a 2-D map (H, W), got shape {e.shape}")
    if not 0 < mass <= 1:
        raise ValueError(f"erf_extent: mass must be in (0, 1], got {mass}")
    total = e.sum()
    if not total > 0:
        raise ValueError("erf_extent: the map is all zeros, so it has no extent")
    ys, xs = np.indices(e.shape)
    cy, cx = round(float((ys * e).sum() / total)), round(float((xs * e).sum() / total))
    ring = np.maximum(np.abs(ys - cy), np.abs(xs - cx))
    inside = np.cumsum(np.bincount(ring.ravel(), weights=e.ravel()))
    # The relative tolerance keeps mass=1 from missing the last ring by a rounding error.
    radius = int(np.searchsorted(inside, mass * total * (1 - 1e-9)))
    return 2 * radius + 1
