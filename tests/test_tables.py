import pytest

from course_lib.tables import format_table


def test_first_column_is_left_aligned_and_the_others_right_aligned_by_default():
    table = format_table(("layer", "RF"), [("conv1", 3), ("dilated conv", 13)])
    assert table.splitlines() == [
        "| layer        | RF |",
        "|:-------------|---:|",
        "| conv1        |  3 |",
        "| dilated conv | 13 |",
    ]


def test_align_chooses_each_column_and_rejects_a_wrong_spec():
    table = format_table(("a", "b"), [("x", "long")], align="rl")
    assert table.splitlines() == ["| a | b    |", "|--:|:-----|", "| x | long |"]
    with pytest.raises(ValueError, match=r"format_table: align='lc' needs one l or r per column"):
        format_table(("a", "b"), [], align="lc")
    with pytest.raises(ValueError, match="align='l' needs one l or r per column"):
        format_table(("a", "b"), [], align="l")


def test_a_pipe_in_a_cell_becomes_a_slash_so_the_markdown_keeps_its_columns():
    table = format_table(("rule", "m"), [("shape", "a|b")])
    assert table.splitlines()[-1] == "| shape | a/b |"
    assert all(line.count("|") == 3 for line in table.splitlines())


def test_a_row_of_the_wrong_length_is_refused_with_the_expected_count():
    with pytest.raises(ValueError, match="format_table: every row needs 2 cells, like the header"):
        format_table(("a", "b"), [("1", "2"), ("3",)])
