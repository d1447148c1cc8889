"""The course's one text-table formatter: every table the library prints goes through it."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(
    header: Sequence[object], rows: Sequence[Sequence[object]], align: str | None = None
) -> str:
    """A Markdown table aligned for a terminal; ``align`` has one ``l`` or ``r`` per column
    (default: the first column left, the others right). A ``|`` in a cell becomes ``/``."""
    text = [[str(c).replace("|", "/") for c in row] for row in [header, *rows]]
    if any(len(row) != len(text[0]) for row in text):
        raise ValueError(f"format_table: every row needs {len(text[0])} cells, like the header")
    align = align or "l" + "r" * (len(text[0]) - 1)
    if len(align) != len(text[0]) or set(align) - {"l", "r"}:
        raise ValueError(f"format_table: align={align!r} needs one l or r per column")
    widths = [max(len(c) for c in col) for col in zip(*text, strict=True)]
    lines = ["| " + " | ".join(map(_pad, row, widths, align)) + " |" for row in text]
    rule = "|".join(
        ":" + "-" * (w + 1) if a == "l" else "-" * (w + 1) + ":"
        for w, a in zip(widths, align, strict=True)
    )
    return "\n".join([lines[0], f"|{rule}|", *lines[1:]])


def _pad(cell: str, width: int, align: str) -> str:
    return cell.ljust(width) if align == "l" else cell.rjust(width)
