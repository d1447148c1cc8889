"""Copy the lessons' ``#@save`` cells into the library: each function has one source, its lesson.

After d2l: a lesson writes and explains the code of its idea in its own cells; a cell whose
first line is ``#@save <path>`` (``course_lib/train.py``, ``benchmarks/experiments.py``) is
also needed elsewhere (a later lesson, the CLI, a benchmark), so this script copies it, in
lesson order, between the two marker lines of that file. The rest of the file (imports,
plumbing) is written by hand. ``--check`` changes nothing and fails if a file differs from
what its lessons say, which is the drift test (``tests/test_export.py``, ``make test``).

    python tools/export_lessons.py          # rewrite the marked blocks (make export)
    python tools/export_lessons.py --check  # exit 1 and name each file that has drifted
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAVE = re.compile(r"^#@save (\S+)\s*$")
BEGIN = "# >>> written in the lessons' #@save cells: edit the lesson, then run `make export`"
END = "# <<< end of the lessons' code"
SEARCHED = ("course_lib/*.py", "benchmarks/*.py")


def saved_cells(lessons: list[Path]) -> dict[str, list[tuple[str, str]]]:
    """target path -> [(lesson name, cell source without its #@save line)], in lesson order."""
    found: dict[str, list[tuple[str, str]]] = {}
    for lesson in lessons:
        for cell in json.loads(lesson.read_text())["cells"]:
            source = "".join(cell["source"]) if cell["cell_type"] == "code" else ""
            first, _, body = source.partition("\n")
            if match := SAVE.match(first):
                found.setdefault(match.group(1), []).append((lesson.name, body.strip()))
    return found


def render_block(cells: list[tuple[str, str]]) -> str:
    parts, last = [], None
    for lesson, body in cells:
        if lesson != last:
            parts.append(f"# from lessons/{lesson}")
            last = lesson
        parts.append(body)
    return "\n\n\n".join([BEGIN, *parts, END])


def exported(text: str, block: str, path: str) -> str:
    """``text`` with its marked block replaced by ``block``; a file needs exactly one."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise SystemExit(f"{path}: needs the two marker lines once each:\n{BEGIN}\n{END}")
    head, rest = text.split(BEGIN)
    return head + block + rest.split(END)[1]


def export(root: Path = ROOT, check: bool = False) -> list[str]:
    """Rewrite (or with ``check``, only compare) every marked file; return those that differ."""
    cells = saved_cells(sorted((root / "lessons").glob("*.ipynb")))
    marked = {p.relative_to(root).as_posix() for g in SEARCHED for p in root.glob(g)
              if BEGIN in p.read_text()}
    if orphans := sorted(marked - set(cells)):
        path = orphans[0]
        raise SystemExit(f"{path}: has a lessons' block but no lesson cell says #@save {path}")
    drifted = []
    for path, path_cells in sorted(cells.items()):
        file = root / path
        if not file.exists():
            raise SystemExit(f"#@save {path}: no such file; create it with the two marker lines")
        text = file.read_text()
        new = exported(text, render_block(path_cells), path)
        if new != text:
            drifted.append(path)
            if not check:
                file.write_text(new)
    return drifted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on drift")
    args = parser.parse_args(argv)
    drifted = export(check=args.check)
    verb = "differs from its lessons" if args.check else "rewritten from its lessons"
    for path in drifted:
        print(f"{path}: {verb}")
    if args.check and drifted:
        print("run `make export` (python tools/export_lessons.py) after editing a #@save cell")
    return 1 if args.check and drifted else 0


if __name__ == "__main__":
    sys.exit(main())
