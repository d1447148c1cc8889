import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib.cli import main


def test_help_lists_the_three_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in ("train", "evaluate", "models"))


def test_models_prints_parameters_and_receptive_field_of_each_model(capsys):
    main(["models"])
    rows = [line.strip("|").split("|") for line in capsys.readouterr().out.splitlines()]
    assert [c.strip() for c in rows[0]] == ["model", "parameters", "mult-adds", "RF"]
    assert [row[0].strip() for row in rows[2:]] == ["dilated", "strided", "maxpool"]
    assert rows[2][1].strip() == "193,786" and int(rows[2][3]) > 44  # the final model


def test_train_help_describes_every_config_field_from_its_comment(capsys):
    from course_lib.cli import config_help
    from course_lib.train import TrainConfig

    helps = config_help()
    assert list(helps) == [f.name for f in dataclasses.fields(TrainConfig)]
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    for name, text in helps.items():
        assert f"--{name.replace('_', '-')}" in out and " ".join(text.split()) in out


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
    assert f"{record['final_test_acc']:.2%} after 1 epoch in" in capsys.readouterr().out
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


def _fast(tmp_path, *extra):
    """One epoch on 100 synthetic images: the cheapest training the CLI can run."""
    small = ["--epochs", "1", "--train-size", "100", "--test-size", "100", "--batch-size", "100"]
    return ["train", *small, "--num-workers", "0", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny checkpoint, trained once for the evaluate tests (each gets a copy)."""
    from .conftest import make_synthetic_cifar

    folder = tmp_path_factory.mktemp("trained")
    np.savez(folder / "synthetic.npz", **make_synthetic_cifar(200, 100))
    with pytest.MonkeyPatch.context() as m:
        m.setenv("CIFAR10_NPZ", str(folder / "synthetic.npz"))
        assert main(_fast(folder, "--out", str(folder / "m"))) == 0
    return folder


@pytest.fixture
def checkpoint(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_NPZ", str(trained / "synthetic.npz"))
    for suffix in (".pt", ".json"):
        shutil.copy(trained / f"m{suffix}", tmp_path / f"m{suffix}")
    return tmp_path / "m"


def _error_line(capsys):
    """The one line the CLI printed on stderr (after any progress bar, which ends in \\r)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err.rsplit("\r", 1)[-1]


def test_train_without_out_writes_under_runs_and_never_the_published_files(
    synthetic_npz, tmp_path, monkeypatch, capsys
):
    from course_lib import data

    monkeypatch.setattr(data, "default_data_root", lambda: tmp_path / "data")
    published = tmp_path / "data" / "checkpoints" / "final_dilated"
    published.parent.mkdir(parents=True)
    for suffix in (".pt", ".json"):
        Path(f"{published}{suffix}").write_text("published")
    assert main(_fast(tmp_path)) == 0
    assert (tmp_path / "runs" / "dilated_seed0.json").exists()
    assert "runs/dilated_seed0.pt" in capsys.readouterr().out
    assert main(_fast(tmp_path, "--out", str(published))) == 2
    assert "published result of this course" in _error_line(capsys)
    assert all(Path(f"{published}{s}").read_text() == "published" for s in (".pt", ".json"))


def test_out_with_dots_writes_exactly_out_pt_and_out_json(
    synthetic_npz_fast_size, tmp_path, capsys
):
    out = tmp_path / "model.v2"
    assert main(_fast(tmp_path, "--out", str(out))) == 0
    assert sorted(p.name for p in tmp_path.glob("model*")) == ["model.v2.json", "model.v2.pt"]
    assert f"{out}.pt, {out}.json" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "not a tensor file that course_lib wrote"), (b"not a tensor", "it is damaged")],
)
def test_evaluate_a_bad_weights_file_prints_one_line(checkpoint, capsys, content, message):
    Path(f"{checkpoint}.pt").write_bytes(content)
    assert main(["evaluate", "--checkpoint", str(checkpoint)]) == 2
    err = _error_line(capsys)
    assert message in err and "weights_only" not in err


def test_evaluate_a_record_without_normalize_prints_one_line(checkpoint, capsys):
    record = json.loads(Path(f"{checkpoint}.json").read_text())
    del record["normalize"]
    Path(f"{checkpoint}.json").write_text(json.dumps(record))
    assert main(["evaluate", "--checkpoint", str(checkpoint)]) == 2
    assert "is not a training record of course_lib" in _error_line(capsys)


def test_evaluate_on_a_test_subset_accepts_the_pt_path(checkpoint, capsys):
    assert main(["evaluate", "--checkpoint", f"{checkpoint}.pt", "--test-size", "50"]) == 0
    assert "(50 images)" in capsys.readouterr().out


def _no_data(*args, **kwargs):
    raise AssertionError("the dataset was loaded before the inputs were checked")


def test_out_under_a_file_fails_before_the_data_loads(tmp_path, monkeypatch, capsys):
    from course_lib import data

    monkeypatch.setattr(data, "load_cifar10", _no_data)
    (tmp_path / "afile").write_text("x")
    assert main(_fast(tmp_path, "--out", str(tmp_path / "afile" / "m"))) == 2
    assert "a part of its path is a file" in _error_line(capsys)


def test_unwritable_out_fails_before_the_data_loads(tmp_path, monkeypatch, capsys):
    from course_lib import data

    monkeypatch.setattr(data, "load_cifar10", _no_data)

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert main(_fast(tmp_path, "--out", str(tmp_path / "m"))) == 2
    assert "cannot write" in _error_line(capsys)


def test_unknown_model_fails_before_the_data_loads(tmp_path, monkeypatch, capsys):
    from course_lib import data

    monkeypatch.setattr(data, "load_cifar10", _no_data)
    with pytest.raises(SystemExit):
        main(_fast(tmp_path, "--model", "dilatd"))
    assert "invalid choice: 'dilatd'" in capsys.readouterr().err


def test_data_root_that_is_a_file_prints_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CIFAR10_NPZ", raising=False)
    (tmp_path / "afile").write_text("x")
    assert (
        main(_fast(tmp_path, "--data-root", str(tmp_path / "afile"), "--out", str(tmp_path / "m")))
        == 2
    )
    assert "is a file; pass a folder" in _error_line(capsys)


def test_train_size_beyond_the_data_names_the_flag(synthetic_npz, tmp_path, capsys):
    args = _fast(tmp_path, "--out", str(tmp_path / "m"), "--train-size", "99999")
    assert main(args) == 2
    assert "--train-size 99999 is more than the 200 images" in _error_line(capsys)


def test_text_file_as_cifar10_npz_prints_one_line(tmp_path, monkeypatch, capsys):
    text = tmp_path / "cifar10.npz"
    text.write_text("not an archive")
    monkeypatch.setenv("CIFAR10_NPZ", str(text))
    assert main(_fast(tmp_path, "--out", str(tmp_path / "m"))) == 2
    err = _error_line(capsys)
    assert "not an .npz archive" in err and "pickled" not in err


def test_resume_with_a_changed_option_names_it_and_no_resume(synthetic_npz, tmp_path, capsys):
    from course_lib.train import TrainConfig

    out = tmp_path / "m"
    args = _fast(tmp_path, "--out", str(out))
    saved = {
        **dataclasses.asdict(
            TrainConfig(epochs=1, batch_size=100, train_size=100, test_size=100, num_workers=0)
        ),
        "lr": 0.1,
    }
    torch.save({"config": saved}, f"{out}.resume.pt")
    assert main(args) == 2
    err = _error_line(capsys)
    assert "lr 0.1 -> 0.2" in err and "--no-resume" in err
    assert main([*args, "--no-resume"]) == 0


def test_ctrl_c_prints_the_saved_epoch_and_the_command_that_resumes(
    synthetic_npz, tmp_path, monkeypatch, capsys
):
    from course_lib import train

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "evaluate_loss_acc", interrupt)
    args = _fast(tmp_path, "--out", str(tmp_path / "m"), "--no-resume")
    assert main(args) == 130
    err = _error_line(capsys)
    assert err.startswith("stopped: interrupted in epoch 1 of 1; nothing was saved")
    assert "resume with: python -m course_lib train --epochs 1" in err and "--no-resume" not in err
