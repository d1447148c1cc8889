"""The course's one text-table formatter: every table a lesson or the CLI prints goes through it."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(header: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table aligned for a terminal: the first column left, the others right.

    Cells are turned into text with ``str``; a ``|`` inside a cell becomes ``/`` so that the
    table stays valid Markdown (the grader writes its report as a ``.md`` file).
    """
    text = [[str(c).replace("|", "/") for c in row] for row in [header, *rows]]
    if any(len(row) != len(text[0]) for row in text):
        raise ValueError(f"format_table: every row needs {len(text[0])} cells, like the header")
    widths = [max(len(c) for c in col) for col in zip(*text, strict=True)]
    aligned = [
        [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        for row in text
    ]
    rule = [":" + "-" * (widths[0] + 1)] + ["-" * (w + 1) + ":" for w in widths[1:]]
    lines = ["| " + " | ".join(row) + " |" for row in aligned]
    return "\n".join([lines[0], "|" + "|".join(rule) + "|", *lines[1:]])
