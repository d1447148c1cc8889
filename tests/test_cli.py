import json

import pytest

from course_lib.cli import main


def test_help_lists_the_three_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in ("train", "evaluate", "models"))


def test_models_prints_parameters_and_receptive_field_of_each_model(capsys):
    main(["models"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "parameters", "mult-adds", "RF"]
    assert [line.split()[0] for line in lines[1:]] == ["dilated", "strided", "maxpool"]


def test_fast_train_then_evaluate_reproduces_the_recorded_accuracy(
    synthetic_npz_fast_size, tmp_path, capsys
):
    out = tmp_path / "fast"
    main(
        [
            "train",
            "--fast",
            "--num-workers",
            "0",
            "--batch-size",
            "64",
            "--out",
            str(out),
            "--data-root",
            str(tmp_path),
        ]
    )
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["config"]["epochs"] == 1
    main(["evaluate", "--checkpoint", str(out), "--data-root", str(tmp_path)])
    text = capsys.readouterr().out
    assert f"re-measured test accuracy:          {record['final_test_acc']:.2%}" in text


def test_unknown_option_is_rejected_with_usage(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--learning-rate", "1"])
    assert "unrecognized arguments" in capsys.readouterr().err


def test_missing_dataset_prints_the_fix_without_a_traceback(tmp_path, monkeypatch, capsys):
    from course_lib import data

    def no_download(root):
        raise data.DatasetNotFoundError(
            "CIFAR-10 not found ... set CIFAR10_NPZ=/path/to/cifar10.npz"
        )

    monkeypatch.delenv("CIFAR10_NPZ", raising=False)
    monkeypatch.setattr(data, "_from_torchvision", no_download)
    assert (
        main(["train", "--fast", "--data-root", str(tmp_path), "--out", str(tmp_path / "m")]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: CIFAR-10 not found") and "Traceback" not in err
