from torch import nn

from course_lib.checklist import check_assignment, format_checklist
from course_lib.models import build_model


def test_final_model_passes_every_rule():
    rules = check_assignment(build_model("dilated"))
    assert len(rules) == 7
    assert all(r.passed for r in rules), format_checklist(rules)


def test_checklist_catches_pooling_stride_and_a_missing_global_average():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.MaxPool2d(2),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )
    failed = {r.rule for r in check_assignment(net) if not r.passed}
    assert failed == {
        "receptive field > 44",
        "no max-pooling",
        "no strided conv",
        "a depthwise-separable conv",
        "a dilated conv",
        "global average pooling",
    }


def test_strided_and_maxpool_variants_fail_exactly_their_own_rule():
    strided = {r.rule for r in check_assignment(build_model("strided")) if not r.passed}
    maxpool = {r.rule for r in check_assignment(build_model("maxpool")) if not r.passed}
    assert "no strided conv" in strided and "no max-pooling" not in strided
    assert "no max-pooling" in maxpool and "no strided conv" not in maxpool


def test_format_checklist_marks_each_rule():
    text = format_checklist(check_assignment(build_model("dilated")))
    assert text.count("PASS") == 7 and "receptive field > 44" in text
