"""House rules every lesson keeps, read from the notebooks themselves (no execution)."""

import json
import re
from pathlib import Path

import pytest

LESSONS = sorted((Path(__file__).resolve().parents[1] / "lessons").glob("*.ipynb"))


def code_cells(notebook: Path) -> list[tuple[int, str, list[dict]]]:
    cells = json.loads(notebook.read_text())["cells"]
    return [
        (i, "".join(c["source"]), c.get("outputs", []))
        for i, c in enumerate(cells)
        if c["cell_type"] == "code"
    ]


@pytest.mark.parametrize("notebook", LESSONS, ids=lambda p: p.stem[:2])
def test_a_lesson_silences_only_named_warnings(notebook):
    # A blanket filter would hide the albumentations ignored-argument warning lesson 03 teaches.
    for i, source, _ in code_cells(notebook):
        for args in re.findall(r"filterwarnings\(([^)]*)\)", source):
            assert "message=" in args, f"cell {i}: a blanket filter, filterwarnings({args})"


@pytest.mark.parametrize("notebook", LESSONS, ids=lambda p: p.stem[:2])
def test_a_lesson_reads_no_repository_relative_path(notebook):
    # On Colab the working folder is not the checkout: committed files come through course_lib.
    for i, source, _ in code_cells(notebook):
        assert "../" not in source, f"cell {i}"


@pytest.mark.parametrize("notebook", LESSONS, ids=lambda p: p.stem[:2])
def test_stored_outputs_show_warnings_only_where_they_are_the_point(notebook):
    for i, source, outputs in code_cells(notebook):
        shown_on_purpose = "warn" in source.lower()  # a pitfall cell that says a warning follows
        for out in outputs:
            text = "".join(out.get("text", ""))
            stray = out.get("name") == "stderr" and "Warning" in text
            assert shown_on_purpose or not stray, f"cell {i}: {text[:200]}"
