"""The #@save export: the library's copy of a lesson's code never drifts from the lesson."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("export_lessons", ROOT / "tools/export_lessons.py")
export_lessons = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(export_lessons)


def _notebook(path: Path, *sources: str) -> None:
    cells = [{"cell_type": "code", "source": s, "metadata": {}, "outputs": []} for s in sources]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4}))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "lessons").mkdir()
    (tmp_path / "course_lib").mkdir()
    _notebook(
        tmp_path / "lessons/01_a.ipynb",
        "#@save course_lib/mod.py\ndef f():\n    return 1\n",
        "f()  # not saved",
    )
    _notebook(tmp_path / "lessons/02_b.ipynb", "#@save course_lib/mod.py\ndef g():\n    return 2")
    marks = f"{export_lessons.BEGIN}\n{export_lessons.END}"
    (tmp_path / "course_lib/mod.py").write_text(f'"""doc"""\n\n{marks}\n\n\ndef plumbing():\n    pass\n')
    return tmp_path


def test_export_copies_saved_cells_in_lesson_order_and_keeps_the_plumbing(tree: Path) -> None:
    assert export_lessons.export(tree) == ["course_lib/mod.py"]
    text = (tree / "course_lib/mod.py").read_text()
    assert text.index("def f()") < text.index("def g()") < text.index("def plumbing()")
    assert "f()  # not saved" not in text and "#@save course_lib" not in text
    namespace: dict = {}
    exec(text, namespace)
    assert (namespace["f"](), namespace["g"]()) == (1, 2)
    assert export_lessons.export(tree, check=True) == []


def test_check_reports_a_lesson_edit_without_writing(tree: Path) -> None:
    export_lessons.export(tree)
    before = (tree / "course_lib/mod.py").read_text()
    _notebook(tree / "lessons/02_b.ipynb", "#@save course_lib/mod.py\ndef g():\n    return 3")
    assert export_lessons.export(tree, check=True) == ["course_lib/mod.py"]
    assert (tree / "course_lib/mod.py").read_text() == before


def test_a_target_without_markers_is_refused_by_name(tree: Path) -> None:
    (tree / "course_lib/mod.py").write_text("def plumbing():\n    pass\n")
    with pytest.raises(SystemExit, match="course_lib/mod.py: needs the two marker lines"):
        export_lessons.export(tree)


def test_a_marked_file_that_no_lesson_feeds_is_refused(tree: Path) -> None:
    marks = f"{export_lessons.BEGIN}\n{export_lessons.END}\n"
    (tree / "course_lib/orphan.py").write_text(marks)
    with pytest.raises(SystemExit, match="course_lib/orphan.py: has a lessons' block"):
        export_lessons.export(tree, check=True)


def test_the_library_matches_the_lessons() -> None:
    assert export_lessons.export(ROOT, check=True) == [], "run `make export` after editing a lesson"
