"""Convolution arithmetic: output shapes, parameters and multiply-adds, measured on real modules.

Every number comes from an ``nn.Module`` that is built and run once on a zero input, so the
tables cannot drift from the code they describe. Also here: the rank-1 algebra behind
spatial-separable convs, the matrix view behind the name "transposed convolution", and a census
of the conv kinds inside a model. Used in lesson 01.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .layers import DepthwiseSeparableConv2d, SpatialSeparableConv2d, same_padding
from .models import count_parameters

__all__ = [
    "ConvCost",
    "ConvLayer",
    "conv_output_size",
    "conv_transpose_output_size",
    "conv_cost",
    "comparison_table",
    "separable_ratio_table",
    "kernel_rank",
    "rank1_factors",
    "rank1_error",
    "conv_from_kernel",
    "spatial_separable_from_kernel",
    "equivalent_kernel",
    "conv_matrix",
    "conv_kind",
    "conv_layers",
    "census_table",
    "layers_table",
]

Shape = tuple[int, int, int]  # (channels, height, width) of one image


# ---------------------------------------------------------------------------- formulas


def _check_sizes(caller: str, **values: int) -> None:
    for name, value in values.items():
        low = 0 if name in ("padding", "output_padding") else 1
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{caller}: {name} must be an integer >= {low}, got {value!r}")


def conv_output_size(
    n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Side of a conv's output: ``floor((n + 2p - d(k-1) - 1) / s) + 1``.

    ``d(k-1) + 1`` is the span of the dilated kernel; the floor is why a stride can leave the
    last rows of the input unread. Used in lesson 01.
    """
    _check_sizes("conv_output_size", n=n, kernel=kernel, stride=stride, padding=padding)
    _check_sizes("conv_output_size", dilation=dilation)
    span = dilation * (kernel - 1) + 1
    if n + 2 * padding < span:
        raise ValueError(
            f"conv_output_size: the kernel spans {span} pixels but the padded input has only "
            f"{n + 2 * padding}"
        )
    return (n + 2 * padding - span) // stride + 1


def conv_transpose_output_size(
    n: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    output_padding: int = 0,
) -> int:
    """Side of a transposed conv's output: ``(n-1)s - 2p + d(k-1) + output_padding + 1``.

    The inverse of ``conv_output_size`` for the same arguments; ``output_padding`` picks one of
    the ``s`` input sizes that a stride-``s`` conv maps to the same output size. Used in lesson 01.
    """
    _check_sizes("conv_transpose_output_size", n=n, kernel=kernel, stride=stride, dilation=dilation)
    _check_sizes("conv_transpose_output_size", padding=padding, output_padding=output_padding)
    if output_padding >= max(stride, dilation):
        raise ValueError(
            "conv_transpose_output_size: output_padding must be smaller than stride or "
            f"dilation, got output_padding={output_padding} with stride={stride}, "
            f"dilation={dilation}"
        )
    size = (n - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
    if size < 1:
        raise ValueError(f"conv_transpose_output_size: padding {padding} leaves no output")
    return size


# ---------------------------------------------------------------------------- measured costs


@dataclass(frozen=True)
class ConvCost:
    """What one module costs on one image: its shapes, parameters and multiply-adds."""

    name: str
    input_shape: Shape
    output_shape: Shape
    params: int
    mult_adds: int

    def __str__(self) -> str:
        return (
            f"{self.name}: {_shape(self.input_shape)} -> {_shape(self.output_shape)}, "
            f"{self.params:,} parameters, {self.mult_adds:,} multiply-adds"
        )


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape)


def _mult_adds(module: nn.Module, x: Tensor, y: Tensor) -> int:
    # Per image, weights only: bias, BN and ReLU are one add or compare per output, not a MAC.
    if isinstance(module, nn.ConvTranspose2d):
        # The scatter form: every input pixel times every weight of its group. The zero-insertion
        # picture computes more products, but the extra ones multiply inserted zeros.
        kh, kw = module.kernel_size
        return x[0].numel() * (module.out_channels // module.groups) * kh * kw
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return y[0].numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return y[0].numel() * module.in_features
    return 0


def _check_shape(input_shape: Sequence[int], caller: str) -> Shape:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(
            f"{caller}: input_shape must be (channels, height, width) of positive ints, "
            f"got {input_shape!r}"
        )
    return shape  # type: ignore[return-value]


def _run_hooked(
    module: nn.Module, shape: Shape, on_layer: Callable[[str, nn.Module, Tensor, Tensor], None]
) -> Tensor:
    """One forward pass on a zero image, calling ``on_layer`` for every leaf module."""
    handles = []
    for name, m in module.named_modules():
        if not list(m.children()):

            def hook(m: nn.Module, args: tuple, y: Tensor, name: str = name) -> None:
                on_layer(name, m, args[0], y)

            handles.append(m.register_forward_hook(hook))
    was_training = module.training
    module.eval()  # leave BN's running statistics untouched
    try:
        with torch.no_grad():
            param = next(module.parameters(), None)
            dtype = param.dtype if param is not None else torch.float32
            device = param.device if param is not None else "cpu"
            return module(torch.zeros(1, *shape, dtype=dtype, device=device))
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()


def conv_cost(module: nn.Module, input_shape: Sequence[int], name: str = "") -> ConvCost:
    """Run ``module`` once on a zero image of ``input_shape`` and count what it costs.

    Parameters are the trainable ones; multiply-adds are those of the conv and linear weights
    (a transposed conv counts each input pixel times its kernel). Used in lesson 01.
    """
    shape = _check_shape(input_shape, "conv_cost")
    total = 0

    def add(_: str, m: nn.Module, x: Tensor, y: Tensor) -> None:
        nonlocal total
        total += _mult_adds(m, x, y)

    y = _run_hooked(module, shape, add)
    if y.dim() != 4:
        raise ValueError(f"conv_cost: expected a (1, C, H, W) output, got shape {tuple(y.shape)}")
    out: Shape = tuple(y.shape[1:])  # type: ignore[assignment]
    return ConvCost(name or type(module).__name__, shape, out, count_parameters(module), total)


def _format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """First column left-aligned, the rest right-aligned, two spaces apart."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([cells[0].ljust(widths[0]), *rest]).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def comparison_table(
    layers: Mapping[str, nn.Module], input_shape: Sequence[int], baseline: str | None = None
) -> str:
    """A fixed-width table: output shape, parameters and multiply-adds of each named layer.

    The two ratio columns divide by the ``baseline`` layer (default: the first). Used in lesson 01.
    """
    if not layers:
        raise ValueError("comparison_table: layers is empty")
    baseline = next(iter(layers)) if baseline is None else baseline
    if baseline not in layers:
        raise ValueError(f"comparison_table: baseline {baseline!r} is not one of {list(layers)}")
    costs = {name: conv_cost(m, input_shape, name) for name, m in layers.items()}
    base = costs[baseline]
    rows = [
        [
            c.name,
            _shape(c.output_shape),
            f"{c.params:,}",
            f"{c.mult_adds:,}",
            f"{c.params / base.params:.3f}" if base.params else "-",
            f"{c.mult_adds / base.mult_adds:.3f}" if base.mult_adds else "-",
        ]
        for c in costs.values()
    ]
    header = ["layer", "output", "params", "mult-adds", "params ratio", "MACs ratio"]
    note = f"input {_shape(base.input_shape)}; ratios are relative to {baseline!r}"
    return _format_table(header, rows) + "\n" + note


def separable_ratio_table(c_in: int, c_outs: Sequence[int], kernel: int = 3) -> str:
    """Parameters of a standard and a depthwise-separable conv, split into the formula's two terms.

    Both layers are built (without bias) and their parameters counted. The columns divide each
    half of the separable pair by the standard conv: the depthwise half is the ``1/c_out`` term,
    the pointwise half the ``1/k^2`` term; their sum is the measured ratio, printed beside
    ``1/c_out + 1/k^2``. Used in lesson 01.
    """
    _check_sizes("separable_ratio_table", c_in=c_in, kernel=kernel)
    if not c_outs:
        raise ValueError("separable_ratio_table: c_outs is empty")
    rows = []
    for c_out in c_outs:
        _check_sizes("separable_ratio_table", c_out=c_out)
        standard = count_parameters(nn.Conv2d(c_in, c_out, kernel, bias=False))
        pair = DepthwiseSeparableConv2d(c_in, c_out, kernel)
        depthwise, pointwise = count_parameters(pair.depthwise), count_parameters(pair.pointwise)
        rows.append(
            [
                str(c_out),
                f"{standard:,}",
                f"{depthwise:,}",
                f"{pointwise:,}",
                f"{depthwise / standard:.4f}",
                f"{pointwise / standard:.4f}",
                f"{(depthwise + pointwise) / standard:.4f}",
                f"{1 / c_out + 1 / kernel**2:.4f}",
            ]
        )
    header = [
        "c_out",
        "standard",
        "depthwise",
        "pointwise",
        "dw/std",
        "pw/std",
        "sum",
        "1/c_out + 1/k^2",
    ]
    note = f"c_in = {c_in}, k = {kernel}, 1/k^2 = {1 / kernel**2:.4f}"
    return _format_table(header, rows) + "\n" + note


# ---------------------------------------------------------------------------- rank 1


def _check_kernel(kernel: Tensor, caller: str) -> Tensor:
    if not isinstance(kernel, Tensor) or kernel.dim() != 2:
        shape = tuple(kernel.shape) if isinstance(kernel, Tensor) else type(kernel).__name__
        raise ValueError(f"{caller}: kernel must be a 2-D tensor (k_h, k_w), got {shape}")
    return kernel


def kernel_rank(kernel: Tensor) -> int:
    """Matrix rank of a 2-D kernel: 1 exactly when it is an outer product of a column and a row.

    Used in lesson 01.
    """
    kernel = _check_kernel(kernel, "kernel_rank")
    # In the kernel's own precision: the default tolerance scales with its dtype's epsilon.
    return int(torch.linalg.matrix_rank(kernel if kernel.is_floating_point() else kernel.double()))


def rank1_factors(kernel: Tensor) -> tuple[Tensor, Tensor]:
    """The column ``u`` and row ``v`` whose outer product is the best rank-1 fit of ``kernel``.

    From the SVD, ``u = sqrt(s1) u1`` and ``v = sqrt(s1) v1``: by the Eckart-Young theorem no
    other rank-1 kernel is closer in the Frobenius norm. Used in lesson 01.
    """
    u, s, vh = torch.linalg.svd(_check_kernel(kernel, "rank1_factors"))
    root = s[0].sqrt()
    return u[:, 0] * root, vh[0] * root


def rank1_error(kernel: Tensor) -> float:
    """Relative Frobenius error of the best rank-1 fit: ``sqrt(s2^2 + s3^2 + ...) / ||s||``.

    Zero exactly for a rank-1 kernel. Used in lesson 01.
    """
    s = torch.linalg.svdvals(_check_kernel(kernel, "rank1_error").double())
    return float(s[1:].norm() / s.norm()) if s.norm() > 0 else 0.0


def conv_from_kernel(kernel: Tensor) -> nn.Conv2d:
    """A one-channel, size-keeping ``nn.Conv2d`` whose only filter is ``kernel`` (odd sides).

    Used in lesson 01.
    """
    kernel = _check_square_odd(kernel, "conv_from_kernel")
    k = kernel.shape[0]
    conv = nn.Conv2d(1, 1, k, padding=same_padding(k), bias=False)
    with torch.no_grad():
        conv.weight.copy_(kernel.view(1, 1, k, k))
    return conv


def _check_square_odd(kernel: Tensor, caller: str) -> Tensor:
    kernel = _check_kernel(kernel, caller)
    kh, kw = kernel.shape
    if kh != kw or kh % 2 == 0:
        raise ValueError(f"{caller}: kernel must be square with an odd side, got {kh}x{kw}")
    return kernel


def spatial_separable_from_kernel(kernel: Tensor) -> SpatialSeparableConv2d:
    """A one-channel ``SpatialSeparableConv2d`` loaded with the best rank-1 fit of ``kernel``.

    Equal to ``conv_from_kernel(kernel)`` when the kernel has rank 1; otherwise it computes
    the convolution with the rank-1 fit instead. Used in lesson 01.
    """
    kernel = _check_square_odd(kernel, "spatial_separable_from_kernel")
    k = kernel.shape[0]
    col, row = rank1_factors(kernel)
    sep = SpatialSeparableConv2d(1, 1, k)
    with torch.no_grad():
        sep.vertical.weight.copy_(col.view(1, 1, k, 1))
        sep.horizontal.weight.copy_(row.view(1, 1, 1, k))
    return sep


def equivalent_kernel(module: SpatialSeparableConv2d) -> Tensor:
    """The full ``(c_out, c_in, k, k)`` kernel that a ``SpatialSeparableConv2d`` applies.

    Filter ``(o, i)`` is the outer product of the vertical column ``(o, i)`` and the
    horizontal row ``o``, so every filter has rank 1 whatever the weights. Used in lesson 01.
    """
    if not isinstance(module, SpatialSeparableConv2d):
        raise ValueError(
            f"equivalent_kernel: expected a SpatialSeparableConv2d, got {type(module).__name__}"
        )
    col = module.vertical.weight[..., 0]  # (c_out, c_in, k)
    row = module.horizontal.weight[:, 0, 0]  # (c_out, k)
    return torch.einsum("oia,ob->oiab", col, row).detach()


def conv_matrix(layer: Callable[[Tensor], Tensor], input_shape: Sequence[int]) -> Tensor:
    """The matrix of a linear layer: column ``j`` is its output for the ``j``-th basis image.

    A conv on a flattened image is a (sparse) matrix product; the transposed conv with the
    same weights multiplies by the transpose of that matrix, hence its name. Feed it small
    inputs only: it runs the layer once per input pixel. Used in lesson 01.
    """
    shape = _check_shape(input_shape, "conv_matrix")
    n = math.prod(shape)
    basis = torch.eye(n).view(n, *shape)
    with torch.no_grad():
        return layer(basis).reshape(n, -1).T.contiguous()


# ---------------------------------------------------------------------------- census


@dataclass(frozen=True)
class ConvLayer:
    """One conv inside a model, as ``conv_layers`` found it during a forward pass."""

    name: str
    kind: str
    kernel: tuple[int, int]
    stride: int
    padding: int
    dilation: int
    groups: int
    input_shape: Shape
    output_shape: Shape
    params: int
    mult_adds: int


def conv_kind(conv: nn.Module) -> str:
    """ "standard", "pointwise", "depthwise", "grouped", "asymmetric" (k x 1 or 1 x k) or
    "transposed".

    Dilation is not a kind: a depthwise conv can be dilated too. Used in lesson 01.
    """
    if isinstance(conv, nn.ConvTranspose2d):
        return "transposed"
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(
            f"conv_kind: expected nn.Conv2d or nn.ConvTranspose2d, got {type(conv).__name__}"
        )
    if conv.groups > 1:
        return "depthwise" if conv.groups == conv.in_channels else "grouped"
    kh, kw = conv.kernel_size
    if (kh, kw) == (1, 1):
        return "pointwise"
    return "asymmetric" if kh != kw else "standard"


def conv_layers(model: nn.Module, input_shape: Sequence[int] = (3, 32, 32)) -> list[ConvLayer]:
    """Every conv of ``model`` in the order ``forward`` runs it, with its kind and costs.

    Used in lessons 01 and 02.
    """
    shape = _check_shape(input_shape, "conv_layers")
    rows: list[ConvLayer] = []

    def record(name: str, m: nn.Module, x: Tensor, y: Tensor) -> None:
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            rows.append(
                ConvLayer(
                    name,
                    conv_kind(m),
                    tuple(m.kernel_size),  # type: ignore[arg-type]
                    max(m.stride),
                    _padding(m),
                    max(m.dilation),
                    m.groups,
                    tuple(x.shape[1:]),  # type: ignore[arg-type]
                    tuple(y.shape[1:]),  # type: ignore[arg-type]
                    count_parameters(m),
                    _mult_adds(m, x, y),
                )
            )

    _run_hooked(model, shape, record)
    return rows


def _padding(m: nn.Conv2d | nn.ConvTranspose2d) -> int:
    if isinstance(m.padding, str):  # "valid" or "same"
        return (
            0
            if m.padding == "valid"
            else max(same_padding(k, d) for k, d in zip(m.kernel_size, m.dilation, strict=True))
        )
    return max(m.padding)


def census_table(rows: Sequence[ConvLayer]) -> str:
    """Convs per kind: how many, how many of them dilated, their parameters and multiply-adds.

    Shares are of the convs' total. Used in lesson 01.
    """
    if not rows:
        raise ValueError("census_table: no conv layers given")
    kinds = list(dict.fromkeys(r.kind for r in rows))
    total_p = sum(r.params for r in rows)
    total_m = sum(r.mult_adds for r in rows)

    def line(label: str, group: Sequence[ConvLayer]) -> list[str]:
        p, m = sum(r.params for r in group), sum(r.mult_adds for r in group)
        return [
            label,
            str(len(group)),
            str(sum(r.dilation > 1 for r in group)),
            f"{p:,}",
            f"{100 * p / total_p:.1f}%" if total_p else "-",
            f"{m:,}",
            f"{100 * m / total_m:.1f}%" if total_m else "-",
        ]

    body = [line(k, [r for r in rows if r.kind == k]) for k in kinds]
    body.append(line("all convs", rows))
    header = ["kind", "convs", "dilated", "params", "share", "mult-adds", "share"]
    return _format_table(header, body)


def layers_table(rows: Sequence[ConvLayer]) -> str:
    """One line per conv: kind, kernel, dilation, padding, map size in and out, parameters.

    Used in lesson 01.
    """
    if not rows:
        raise ValueError("layers_table: no conv layers given")
    body = [
        [
            r.name,
            r.kind,
            f"{r.kernel[0]}x{r.kernel[1]}",
            str(r.stride),
            str(r.dilation),
            str(r.padding),
            f"{r.input_shape[1]}->{r.output_shape[1]}",
            f"{r.input_shape[0]}->{r.output_shape[0]}",
            f"{r.params:,}",
        ]
        for r in rows
    ]
    header = [
        "layer",
        "kind",
        "kernel",
        "stride",
        "dilation",
        "padding",
        "size",
        "channels",
        "params",
    ]
    return _format_table(header, body)
