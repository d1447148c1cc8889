"""A network from a public write-up of this assignment, rebuilt to check its receptive-field table.

The write-up is "Applying Dilated and Depth-wise Separable Convolutions on CIFAR 10 Dataset using
PyTorch" (``Session 9/README.md`` and ``model.py`` of github.com/mkthoma/era_v1). Its model has
173,856 parameters and a comment after every block giving the output size and receptive field
worked out by hand. Both hand-worked numbers are wrong at the 2x2 conv, and the wrong output size
led to a pooling layer that is not the global average it is called. Lesson 02 rebuilds the
network layer for layer and lets the calculator recompute the comments.

Used in lesson 02.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .receptive_field import receptive_field_table

# What the write-up's model summary states: "Total params: 173,856".
STATED_PARAMETERS = 173_856

# What the write-up's comments state after each block: (output size, receptive field).
CLAIMED: dict[str, tuple[int, int]] = {
    "convblock1": (32, 3),
    "convblock2": (32, 5),
    "convblock3": (28, 9),
    "transblock1": (28, 9),
    "convblock4": (28, 11),
    "convblock5": (28, 13),
    "convblock6": (20, 21),
    "transblock2": (20, 21),
    "convblock7": (20, 23),
    "convblock8": (20, 25),
    "convblock9": (4, 41),
    "transblock3": (4, 41),
    "convblock10": (4, 43),
    "convblock11": (4, 45),
    "convblock12": (2, 47),
}


def _unit(
    c_in: int,
    c_out: int,
    kernel: int = 3,
    padding: int = 1,
    dilation: int = 1,
    dropout: float = 0.0,
) -> nn.Sequential:
    # The write-up's order: conv, ReLU, then BatchNorm (ours elsewhere is conv-BN-ReLU).
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=padding, dilation=dilation, bias=False),
        nn.ReLU(),
        nn.BatchNorm2d(c_out),
        nn.Dropout(dropout),
    )


class PublishedDilatedNet(nn.Module):
    """The write-up's network, layer for layer, with its block names.

    Three blocks end in an unpadded dilated conv (dilation 2, 4, 8) and a 1x1 transition; the
    fourth has a depthwise-separable conv and ends in an unpadded 2x2 conv on the 4x4 map. The
    head is ``AvgPool2d(kernel_size=2)`` (the write-up's "GAP") and a bias-free linear layer.
    ``forward`` returns logits (the original ends in ``log_softmax``). The default dropout is the
    original's 0.1; it changes no parameter count or receptive field.

    Used in lesson 02.
    """

    def __init__(self, dropout: float = 0.1) -> None:
        super().__init__()
        d = dropout
        self.convblock1 = _unit(3, 16, dropout=d)
        self.convblock2 = _unit(16, 32, dropout=d)
        self.convblock3 = _unit(32, 32, padding=0, dilation=2, dropout=d)
        self.transblock1 = nn.Sequential(nn.Conv2d(32, 16, 1, bias=False))
        self.convblock4 = _unit(16, 32, dropout=d)
        self.convblock5 = _unit(32, 64, dropout=d)
        self.convblock6 = _unit(64, 64, padding=0, dilation=4, dropout=d)
        self.transblock2 = nn.Sequential(nn.Conv2d(64, 16, 1, bias=False))
        self.convblock7 = _unit(16, 32, dropout=d)
        self.convblock8 = _unit(32, 64, dropout=d)
        self.convblock9 = _unit(64, 64, padding=0, dilation=8, dropout=d)
        self.transblock3 = nn.Sequential(nn.Conv2d(64, 16, 1, bias=False))
        # depthwise 3x3, then pointwise 1x1, with one ReLU-BN after both
        self.convblock10 = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False),
            nn.Conv2d(16, 32, 1, bias=False),
            nn.ReLU(),
            nn.BatchNorm2d(32),
            nn.Dropout(d),
        )
        self.convblock11 = _unit(32, 64, dropout=d)
        self.convblock12 = _unit(64, 64, kernel=2, padding=0, dropout=d)
        self.gap = nn.AvgPool2d(kernel_size=2)
        self.fc = nn.Linear(64, 10, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        for name in CLAIMED:
            x = getattr(self, name)(x)
        return self.fc(self.gap(x).flatten(1))


def published_dilated_net(dropout: float = 0.1) -> PublishedDilatedNet:
    """A fresh ``PublishedDilatedNet``: the write-up's model, ``STATED_PARAMETERS`` parameters.

    Used in lesson 02.
    """
    return PublishedDilatedNet(dropout)


@dataclass(frozen=True)
class Claim:
    """One block of the write-up: what its comment states and what the recurrence computes."""

    block: str
    claimed_n: int | None
    n: int
    claimed_rf: int | None
    rf: int

    @property
    def agrees(self) -> bool | None:
        """Whether the stated values are right; None where the write-up states nothing."""
        if self.claimed_n is None and self.claimed_rf is None:
            return None
        return (self.claimed_n, self.claimed_rf) == (self.n, self.rf)


def check_claims(model: nn.Module | None = None, input_size=(3, 32, 32)) -> list[Claim]:
    """Each block's stated output size and RF next to the values computed from ``model``.

    The computed values are those of the block's last spatial row in ``receptive_field_table``;
    layers with no comment in the write-up (its "GAP") get ``None`` as their claims.

    Used in lesson 02.
    """
    model = published_dilated_net() if model is None else model
    last: dict[str, tuple[int, int]] = {}
    for row in receptive_field_table(model, input_size):
        last[row.name.split(".")[0]] = (row.n_out, row.r_out)  # later rows overwrite earlier
    claims = []
    for block, (n, rf) in last.items():
        stated_n, stated_rf = CLAIMED.get(block, (None, None))
        claims.append(Claim(block, stated_n, n, stated_rf, rf))
    return claims


def format_claims(claims: list[Claim]) -> str:
    """A text table of ``check_claims``; rows where the write-up is wrong are marked.

    Used in lesson 02.
    """

    def show(v: int | None) -> str:
        return "-" if v is None else str(v)

    head = ("block", "n stated", "n computed", "RF stated", "RF computed", "")
    mark = {True: "", None: "", False: "<- differs"}
    body = [
        (c.block, show(c.claimed_n), str(c.n), show(c.claimed_rf), str(c.rf), mark[c.agrees])
        for c in claims
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

    def line(cells) -> str:
        parts = [cells[0].ljust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(cells[1:-1], widths[1:-1], strict=True)]
        return "  ".join([*parts, cells[-1]]).rstrip()

    return "\n".join(line(r) for r in [head, *body])
