import csv
import inspect
import json
import re
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import grader
from course_lib.cli import main
from course_lib.grader import MAX_PARAMETERS, MIN_RECEPTIVE_FIELD, RULES, format_grades, grade
from course_lib.models import build_model, count_parameters


def verdicts(model: nn.Module) -> dict[str, tuple[bool, str]]:
    return {r.key: (r.passed, r.measured) for r in grade(model)}


class Small(nn.Module):
    """A tiny net that obeys every rule: 32 -> 28 -> 20 by unpadded dilated convs, RF 47."""

    def __init__(self, head: str = "mean", pool=None, extra=None):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, dilation=2, groups=16)
        self.pw = nn.Conv2d(16, 32, 1)
        self.c3 = nn.Conv2d(32, 32, 3, dilation=4)
        self.c4 = nn.Conv2d(32, 32, 3, padding=8, dilation=8)
        self.c5 = nn.Conv2d(32, 32, 3, padding=8, dilation=8)
        self.fc = nn.Linear(32, 10)
        self.head, self.pool, self.extra = head, pool, extra

    def forward(self, x):
        x = F.relu(self.c1(x))
        if self.pool is not None:
            x = self.pool(x)
        x = F.relu(self.pw(self.dw(x)))
        x = F.relu(self.c5(F.relu(self.c4(F.relu(self.c3(x))))))
        if self.extra is not None:
            x = self.extra(x)
        if self.head == "mean":
            return self.fc(x.mean((2, 3)))
        if self.head == "adaptive":
            return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))
        return self.head(x)


def test_small_net_passes_every_rule_and_the_bonus():
    rules = grade(Small())
    assert all(r.passed for r in rules), format_grades(rules)
    assert rules[-1].verdict == "yes" and "by dilation: 32->28->20" in rules[-1].measured


def test_course_models_get_their_expected_verdicts():
    dilated, strided, maxpool = (grade(build_model(n)) for n in ("dilated", "strided", "maxpool"))
    assert all(r.passed for r in dilated), format_grades(dilated)
    assert [r.key for r in strided if not r.passed] == ["bonus"]
    assert strided[-1].measured == "by stride: 32->16->8->4->2"
    assert [r.key for r in maxpool if not r.passed] == ["no maxpool", "bonus"]


@pytest.mark.parametrize(
    "pool, call",
    [
        (lambda x: F.max_pool2d(x, 2), "max_pool2d 32->16"),
        (lambda x: F.max_pool2d(x, 2, return_indices=True)[0], "max_pool2d_with_indices 32->16"),
        (nn.MaxPool2d(2), "max_pool2d 32->16"),
        (nn.AdaptiveMaxPool2d(16), "adaptive_max_pool2d 32->16"),
    ],
)
def test_functional_max_pool_fails_no_max_pooling_rule(pool, call):
    passed, measured = verdicts(Small(pool=pool))["no maxpool"]
    assert not passed and measured == f"1 max-pooling call: {call}"


def test_max_pool_shows_in_the_bonus_as_the_way_the_map_shrinks():
    bonus = grade(Small(pool=nn.MaxPool2d(2)))[-1]
    assert bonus.verdict == "no" and bonus.measured.startswith("by max-pooling + dilation")


def test_avg_pool_over_a_3x3_map_fails_gap_naming_the_positions_it_ignores():
    head = nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(32, 10))
    extra = nn.AdaptiveAvgPool2d(3)  # the last map is 3x3, as in the write-up
    passed, measured = verdicts(Small(head=head, extra=extra))["GAP"]
    assert not passed
    assert (
        measured == "not global: ignores positions (0,2), (1,2), (2,0), (2,1), (2,2) of the 3x3 map"
    )


@pytest.mark.parametrize("head", ["mean", "adaptive"])
def test_mean_over_height_and_width_and_adaptive_pool_count_as_gap(head):
    passed, measured = verdicts(Small(head=head))["GAP"]
    assert passed and measured == "logits see the last 20x20 map only through its mean"


def test_gap_without_a_linear_layer_passes():
    net = nn.Sequential(Small(head=nn.Conv2d(32, 10, 1)), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert verdicts(net)["GAP"][0]


def test_flatten_and_linear_head_fails_gap_as_unequal_weighting():
    head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 20 * 20, 10))
    passed, measured = verdicts(Small(head=head))["GAP"]
    assert not passed and measured.startswith("not an average: weights the 20x20 map's")


def test_depthwise_conv_without_a_pointwise_after_it_fails():
    net = Small()
    net.pw = nn.Conv2d(16, 32, 3, padding=1)  # a 3x3 conv follows the depthwise one
    failed = (False, "1 depthwise conv, none followed by a pointwise 1x1")
    assert verdicts(net)["dw-sep"] == failed
    last = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8))  # nothing after it
    assert verdicts(last)["dw-sep"] == failed
    net.pw = nn.Conv2d(16, 32, (1, 3), padding=(0, 1))  # 1x3: not a pointwise conv
    assert verdicts(net)["dw-sep"] == failed
    grouped = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=2), nn.Conv2d(8, 8, 1))
    assert verdicts(grouped)["dw-sep"] == (False, "no depthwise conv")  # 2 groups: not depthwise


def test_parameters_receptive_field_dilation_and_output_shape_fail_when_violated():
    plain = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    rules = verdicts(plain)
    assert rules["RF"] == (False, "3 (calculator, confirmed by gradient)")
    assert rules["dilated"] == (False, "no dilated conv")
    assert rules["dw-sep"] == (False, "no depthwise conv")
    assert rules["shape"] == (False, "(2, 8) for input (2, 3, 32, 32)")
    assert rules["bonus"] == (False, "the map is never shrunk")
    unpadded = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert verdicts(unpadded)["bonus"] == (False, "by unpadded conv: 32->30")  # no dilation
    wide = MAX_PARAMETERS // 10
    big = nn.Sequential(Small(), nn.Linear(10, wide), nn.Linear(wide, 10))
    assert verdicts(big)["parameters"] == (False, f"{count_parameters(big):,} trainable")
    assert RULES["parameters"] == f"parameters < {MAX_PARAMETERS:,}"
    assert RULES["RF"] == f"receptive field > {MIN_RECEPTIVE_FIELD}"


def test_grading_leaves_each_modules_train_or_eval_mode_as_it_was():
    net = Small().train()
    net.c1.eval()
    assert grade(net) and net.training and net.c3.training and not net.c1.training


def refuse(*args):
    raise ValueError("receptive_field: layer 'extra' (Upsample) is not supported")


def test_receptive_field_is_the_gradients_where_the_calculator_refuses_or_disagrees(monkeypatch):
    monkeypatch.setattr(grader, "receptive_field", refuse)
    reason = "layer 'extra' (Upsample) is not supported"
    assert verdicts(Small())["RF"] == (True, f"47 (gradient; the calculator refused: {reason})")
    monkeypatch.setattr(grader, "receptive_field", lambda model, size: MIN_RECEPTIVE_FIELD)
    says = f"47 (gradient; the calculator says {MIN_RECEPTIVE_FIELD})"
    assert verdicts(Small())["RF"] == (True, says)


def test_receptive_field_is_the_calculators_or_none_where_the_gradient_fails(monkeypatch):
    monkeypatch.setattr(grader, "empirical_receptive_field", refuse)
    monkeypatch.setattr(grader, "receptive_field", lambda model, size: 47)
    passed, measured = verdicts(Small())["RF"]
    assert passed and measured == "47 (the calculator says 47; the gradient measurement failed)"
    monkeypatch.setattr(grader, "receptive_field", refuse)
    passed, measured = verdicts(Small())["RF"]
    assert not passed and measured.startswith("- (the calculator refused: layer 'extra'")


# ---------------------------------------------------------------- the CLI

# A student's file: the same net, standalone
GOOD = "import torch.nn.functional as F\nfrom torch import nn\n\n\n" + inspect.getsource(
    Small
).replace("class Small(", "class Net(")


def write(tmp_path, name: str, code: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return str(path)


def test_check_prints_one_table_and_exits_zero_for_a_passing_file(tmp_path, capsys):
    assert main(["check", write(tmp_path, "good.py", GOOD)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("good.py:Net: passes every rule\n| rule ")
    assert "| bonus: downsampling by dilation | by dilation: 32->28->20" in out


def test_a_file_with_two_modules_and_no_name_is_an_error_row_naming_both(tmp_path, capsys):
    two = write(tmp_path, "two.py", GOOD + "\n\nclass Other(nn.Module):\n    pass\n")
    assert main(["check", two]) == 1
    out = capsys.readouterr().out
    assert f"error: ValueError: {two} defines 2 models (Net, Other); give its class" in out
    empty = write(tmp_path, "empty.py", "import torch\n")
    assert main(["check", empty]) == 1
    assert f"error: ValueError: {empty} defines no model; give its class" in capsys.readouterr().out
    assert main(["check", f"{two}:Net"]) == 0


def test_a_factory_and_a_notebook_with_magics_are_graded(tmp_path, capsys):
    factory = write(tmp_path, "factory.py", "from course_lib.models import build_model\n\n"
                    "def final():\n    return build_model('dilated')\n")  # fmt: skip
    cells = ["%matplotlib inline\n!pip list", GOOD, "print('ran')"]
    notebook = tmp_path / "student.ipynb"
    notebook.write_text(json.dumps({"cells": [{"cell_type": "code", "source": c} for c in cells]
                                    + [{"cell_type": "markdown", "source": "# notes"}]}))  # fmt: skip
    assert main(["check", f"{factory}:final", str(notebook)]) == 0
    out = capsys.readouterr().out
    assert "factory.py:final: passes every rule" in out and "student.ipynb:Net: passes" in out


def test_a_submission_that_raises_gets_an_error_row_and_the_run_continues(tmp_path, capsys):
    crash = write(tmp_path, "crash.py", "import torch\n\n1 / 0\n")
    bad_forward = write(tmp_path, "fwd.py", GOOD.replace("x.mean((2, 3))", "x.mean((2, 3)) @ x"))
    good = write(tmp_path, "good.py", GOOD)
    assert main(["check", crash, bad_forward, good]) == 1
    out = capsys.readouterr().out
    assert "error: ZeroDivisionError: division by zero (crash.py line 3)" in out
    line = 1 + GOOD[: GOOD.index("x.mean((2, 3))")].count("\n")
    assert "fwd.py:Net: FAILS\nerror: RuntimeError:" in out and f"(fwd.py line {line})" in out
    summary = out.split("\n\n")[-1].splitlines()
    assert summary[0].split("|")[1].strip() == "submission"
    assert [line.split("|")[1].strip() for line in summary[2:]] == [
        "crash.py",
        "fwd.py:Net",
        "good.py:Net",
    ]


def test_report_is_written_as_csv_and_as_markdown(tmp_path, capsys):
    good, crash = (
        write(tmp_path, "good.py", GOOD),
        write(tmp_path, "crash.py", "raise SystemExit(3)"),
    )
    main(["check", good, crash, "--report", str(tmp_path / "grades.csv")])
    rows = list(csv.reader((tmp_path / "grades.csv").read_text().splitlines()))
    keys = ["parameters", "RF", "no maxpool", "dw-sep", "dilated", "GAP", "shape", "bonus"]
    assert rows[0] == ["submission", *keys, "error"]
    assert rows[1] == ["good.py:Net", *["PASS"] * 7, "yes", ""]
    assert rows[2][0] == "crash.py" and rows[2][-1] == "SystemExit: 3 (crash.py line 1)"
    main(["check", good, crash, "--report", str(tmp_path / "grades.md")])
    text = (tmp_path / "grades.md").read_text()
    assert text.startswith("# Grades\n\n| submission  | parameters | RF ")
    assert "| good.py:Net | PASS " in text and "SystemExit: 3" in text


def test_a_bad_report_suffix_or_weights_count_is_a_one_line_error(tmp_path, capsys):
    good = write(tmp_path, "good.py", GOOD)
    assert main(["check", good, "--report", "grades.txt"]) == 2
    assert (
        capsys.readouterr().err == "error: --report grades.txt: the file must end in .csv or .md\n"
    )
    assert main(["check", good, "--weights", "a.pt", "--weights", "b.pt"]) == 2
    err = "error: give --weights once per submission, in order, and not with --train\n"
    assert capsys.readouterr().err == err


def test_weights_are_loaded_safely_and_evaluated_on_the_test_set(synthetic_npz, tmp_path, capsys):
    good = write(tmp_path, "good.py", GOOD)
    torch.manual_seed(0)
    from course_lib.grader import _load

    _, model = _load(good)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    assert (
        main(["check", good, "--weights", str(tmp_path / "w.pt")]) == 1
    )  # untrained: below MIN_ACCURACY
    out = capsys.readouterr().out
    assert (
        f"| {RULES['accuracy']}" in out
        and "% (w.pt, 100 test images, CIFAR-10 (unverified copy " in out  # synthetic data
        and re.search(r"\) +\| FAIL", out)  # the column is as wide as its widest cell
    )
    torch.save({"model": nn.Linear(1, 1)}, tmp_path / "code.pt")  # a pickled module, not weights
    main(["check", good, "--weights", str(tmp_path / "code.pt")])
    out = capsys.readouterr().out
    assert "not a tensor file that course_lib wrote" in out and "weights_only=False" not in out


def test_train_reports_the_final_epoch_accuracy(synthetic_npz, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    good = write(tmp_path, "good.py", GOOD)
    main(["check", good, "--train", "--epochs", "1"])
    out = capsys.readouterr().out  # the synthetic data is named as the unknown copy it is
    assert "% (final epoch of 1, trained with the course's recipe, CIFAR-10 (unverified copy" in out
    assert (tmp_path / "runs/check/good_py_Net.json").exists()
