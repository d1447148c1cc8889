"""Lesson 04 keeps the house rules a reader's run depends on (warnings policy, Colab rule)."""

import json
import re
from pathlib import Path

LESSON = Path(__file__).resolve().parents[1] / "lessons" / "04_training_the_final_model.ipynb"


def _code_cells() -> list[dict]:
    return [c for c in json.loads(LESSON.read_text())["cells"] if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def test_lesson04_silences_only_named_warnings():
    for cell in _code_cells():
        for args in re.findall(r"filterwarnings\(([^)]*)\)", _source(cell)):
            assert "message=" in args, f"a blanket warnings filter: filterwarnings({args})"


def test_lesson04_reads_no_repository_relative_path():
    # On Colab the working folder is not the repository: committed files go through course_lib.
    for cell in _code_cells():
        assert "../" not in _source(cell), _source(cell)


def test_lesson04_stored_outputs_hold_no_warnings():
    for cell in _code_cells():
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", ""))
            assert not (out.get("name") == "stderr" and "Warning" in text), text
