import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_lib import train as train_module
from course_lib.device import grad_scaler, prepare
from course_lib.evaluate import load_checkpoint
from course_lib.train import (
    TrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    evaluate_loss_acc,
    fit,
    make_optimizer,
    make_schedule,
    one_cycle,
    run,
    step_decay,
    train_epoch,
)

CPU = torch.device("cpu")


def tiny_model():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )


def loaders(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 3, 8, 8, generator=g) + y.view(-1, 1, 1, 1) * 2.0  # class = brightness
    data = TensorDataset(x, y)
    return DataLoader(data, batch_size=32, shuffle=True, generator=g), DataLoader(
        data, batch_size=64
    )


def cfg(**kw):
    return TrainConfig(**{"epochs": 3, "batch_size": 32, "lr": 0.2, "label_smoothing": 0.0, **kw})


def test_one_cycle_warms_up_from_1_25th_to_peak_then_anneals_to_zero():
    total = 100
    assert one_cycle(0, total, 0.2) == pytest.approx(1 / 25)
    assert one_cycle(20, total, 0.2) == pytest.approx(1.0)
    assert one_cycle(60, total, 0.2) == pytest.approx(0.5)
    assert one_cycle(100, total, 0.2) == 0.0


def test_step_decay_halves_the_rate_every_quarter_of_the_run_without_warm_up():
    assert [step_decay(s, 100) for s in (0, 24, 25, 49, 50, 75, 99)] == [
        1.0,
        1.0,
        0.5,
        0.5,
        0.25,
        0.125,
        0.125,
    ]


def test_fit_follows_the_schedule_the_config_names():
    train, test = loaders()
    for schedule, multiplier in (("one_cycle", one_cycle), ("step", step_decay)):
        torch.manual_seed(0)
        config = cfg(epochs=4, schedule=schedule)
        history = fit(tiny_model(), train, test, config, device=CPU, progress=False).history
        steps = 4 * len(train)
        expected = [config.lr * multiplier(e * len(train), steps, config.warmup) for e in (1, 2, 3)]
        assert [h["lr"] for h in history[:3]] == pytest.approx(expected)


def test_an_unknown_schedule_is_refused_before_training():
    with pytest.raises(ValueError, match="schedule='cosine'"):
        cfg(schedule="cosine")


def test_fit_learns_a_separable_task_and_records_every_epoch():
    torch.manual_seed(0)
    train, test = loaders()
    result = fit(tiny_model(), train, test, cfg(), device=CPU, progress=False)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert set(result.history[0]) == {
        "epoch",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "lr",
        "seconds",
    }
    assert result.history[-1]["test_acc"] > 0.9
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


@pytest.mark.parametrize("kw", [{}, {"batch_aug": "cutout", "schedule": "step"}])
def test_fit_computes_exactly_the_lessons_loop(kw):
    """fit is lesson 04's functions composed, plus plumbing that changes no arithmetic."""
    config = cfg(label_smoothing=0.1, **kw)
    torch.manual_seed(0)
    train, test = loaders()
    result = fit(tiny_model(), train, test, config, device=CPU, progress=False)
    torch.manual_seed(0)
    train, test = loaders()
    model = prepare(tiny_model(), CPU)
    opt = make_optimizer(model, config)
    sched = make_schedule(opt, config, len(train))
    scaler, generator = grad_scaler(CPU), torch.Generator()
    for epoch in range(config.epochs):
        train_module._seed_epoch(train, generator, config.seed, epoch)  # fit's only addition
        # fit feeds the batches through its progress bar, which opens the loader once more
        # when it is created (tqdm.auto) and so moves the shuffle generator: feed the same
        batches = train_module.tqdm(train, disable=True)
        row = train_epoch(model, batches, CPU, config, opt, sched, scaler, generator)
        row["test_loss"], row["test_acc"] = evaluate_loss_acc(model, test, CPU)
        recorded = {k: v for k, v in result.history[epoch].items() if k not in ("epoch", "seconds")}
        assert recorded == row
    assert all(torch.equal(a, b) for a, b in zip(result.model.state_dict().values(),
                                                 model.state_dict().values(), strict=True))  # fmt: skip


def test_ema_weights_are_what_is_returned_and_evaluated_when_enabled():
    torch.manual_seed(0)
    train, test = loaders()
    model = tiny_model()
    result = fit(model, train, test, cfg(ema_decay=0.9), device=CPU, progress=False)
    assert result.model is not model
    ema_weight, raw_weight = result.model[0].weight, model[0].weight
    assert not torch.equal(ema_weight, raw_weight)
    assert result.history[-1]["test_acc"] > 0.9


def test_warmed_ema_forgets_the_start_quickly_then_decays_at_the_set_rate():
    update = train_module.warmed_ema(0.999)
    avg, start = [torch.zeros(3)], torch.ones(3)
    for n in range(1, 200):  # AveragedModel passes the count of earlier updates (from 1)
        update(avg, [start], torch.tensor(n))
    # the initial zeros keep prod((1 + n) / (10 + n)) = 10! * 200! / 209!, about 2e-16
    assert torch.allclose(avg[0], start, atol=1e-6)
    avg = [torch.zeros(1)]
    update(avg, [torch.ones(1)], torch.tensor(10_000))  # the ramp is past 0.999: the set decay
    assert avg[0].item() == pytest.approx(1 - 0.999)
    counts = [torch.tensor([0])]
    update(counts, [torch.tensor([5000])], torch.tensor(1))  # an integer buffer
    assert counts[0].item() == int(5000 * (1 - 2 / 11))


class Interrupt(Exception):
    pass


class InterruptingLoader:
    """Behaves like the train loader but raises during a chosen epoch (an interrupted run)."""

    def __init__(self, loader, fail_in_epoch):
        self.loader, self.fail_in_epoch, self.epoch = loader, fail_in_epoch, 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.epoch += 1
        for i, batch in enumerate(self.loader):
            if self.epoch == self.fail_in_epoch and i == 1:
                raise Interrupt
            yield batch


def test_resume_continues_after_the_last_finished_epoch_with_history_intact(tmp_path):
    torch.manual_seed(0)
    train, test = loaders()
    ckpt = tmp_path / "run.resume.pt"
    with pytest.raises(Interrupt):
        fit(
            tiny_model(),
            InterruptingLoader(train, 3),
            test,
            cfg(),
            device=CPU,
            checkpoint=ckpt,
            progress=False,
        )
    saved = torch.load(ckpt, weights_only=True)["history"]
    assert len(saved) == 2
    result = fit(
        tiny_model(), train, test, cfg(), device=CPU, checkpoint=ckpt, resume=True, progress=False
    )
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.history[:2] == saved


def test_resume_refuses_a_checkpoint_written_with_another_config(tmp_path):
    train, test = loaders()
    ckpt = tmp_path / "run.resume.pt"
    fit(tiny_model(), train, test, cfg(epochs=1), device=CPU, checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match=r"other options \(epochs 1 -> 2\).*--no-resume"):
        fit(
            tiny_model(),
            train,
            test,
            cfg(epochs=2),
            device=CPU,
            checkpoint=ckpt,
            resume=True,
            progress=False,
        )


class NaNAfter(nn.Module):
    """Wraps a model and returns NaN logits after ``steps`` training forward passes."""

    def __init__(self, model, steps):
        super().__init__()
        self.model, self.steps = model, steps

    def forward(self, x):
        out = self.model(x)
        if self.training:
            self.steps -= 1
            if self.steps < 0:
                return out * float("nan")
        return out


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    train, test = loaders()  # 4 batches per epoch: NaN appears in epoch 2
    ckpt = tmp_path / "run.resume.pt"
    message = r"the loss became nan in epoch 2 of 3; epoch 1 is kept in .*lower lr"
    with pytest.raises(TrainingDiverged, match=message):
        fit(
            NaNAfter(tiny_model(), 5),
            train,
            test,
            cfg(),
            device=CPU,
            checkpoint=ckpt,
            progress=False,
        )
    assert len(torch.load(ckpt, weights_only=True)["history"]) == 1


def test_invalid_config_names_the_bad_fields():
    with pytest.raises(ValueError, match=r"lr=-1.*batch_aug='mixup'"):
        TrainConfig(lr=-1, batch_aug="mixup")


@pytest.mark.parametrize("batch_aug", ["cutout", "ricap"])
def test_batch_level_regularisers_train_without_error(batch_aug):
    torch.manual_seed(0)
    train, test = loaders()
    result = fit(
        tiny_model(), train, test, cfg(epochs=1, batch_aug=batch_aug), device=CPU, progress=False
    )
    assert len(result.history) == 1


def test_run_writes_a_weights_only_state_dict_and_a_json_record(synthetic_npz, tmp_path):
    config = TrainConfig(epochs=1, batch_size=64, num_workers=0)
    record = run(
        config, tmp_path / "model", data_root=tmp_path / "cache", progress=False, device=CPU
    )
    saved = json.loads((tmp_path / "model.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["config"] == dataclasses.asdict(config) and saved["seed"] == 0
    assert 0 <= saved["history"][-1]["test_acc"] <= 1
    assert len(saved["normalize"]["mean"]) == 3 and len(saved["normalize"]["std"]) == 3
    assert {"torch", "albumentations", "device"} <= set(saved["environment"])
    assert saved["environment"]["autocast"] == "bfloat16"  # on the CPU
    assert saved["environment"]["dilated_depthwise_training"] == "float32"
    assert not (tmp_path / "model.resume.pt").exists()
    torch.load(tmp_path / "model.pt", weights_only=True)
    model, meta = load_checkpoint(tmp_path / "model")
    assert meta["final_test_acc"] == saved["history"][-1]["test_acc"]
    assert saved["plan"]["down_dilation"] == [2, 2, 4, 4]


def test_load_checkpoint_refuses_weights_of_another_plan_with_the_same_shapes(
    synthetic_npz, tmp_path
):
    run(
        TrainConfig(epochs=1, batch_size=64, num_workers=0),
        tmp_path / "model",
        data_root=tmp_path / "cache",
        progress=False,
        device=CPU,
    )
    meta = tmp_path / "model.json"
    record = json.loads(meta.read_text())
    record["plan"]["down_dilation"] = [8, 4, 2, 2]
    meta.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="different plan of 'dilated'.*make train"):
        load_checkpoint(tmp_path / "model")


class StopInEpoch:
    """Makes ``evaluate_loss_acc`` raise Ctrl-C (KeyboardInterrupt) when epoch ``n`` is tested."""

    def __init__(self, n):
        self.n, self.calls = n, 0
        self.real = train_module.evaluate_loss_acc

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


def _run_tiny(out, **kw):
    """Three epochs on the synthetic CIFAR-10 through the real pipeline, with a small net."""
    config = TrainConfig(epochs=3, batch_size=64, num_workers=0, batch_aug="cutout")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )
    return run(
        config, out, model=model, data_root=out.parent / "cache", progress=False, device=CPU, **kw
    )


def test_a_run_resumed_after_any_epoch_ends_bit_identical_to_an_unbroken_run(
    synthetic_npz, tmp_path, monkeypatch
):
    unbroken = _run_tiny(tmp_path / "unbroken")
    for stop_in in (2, 3):  # interrupted after epoch 1, and after epoch 2
        out = tmp_path / f"stopped_in_{stop_in}"
        with monkeypatch.context() as m:
            m.setattr(train_module, "evaluate_loss_acc", StopInEpoch(stop_in))
            with pytest.raises(TrainingInterrupted):
                _run_tiny(out)
        resumed = _run_tiny(out)

        def strip(history):
            return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

        assert strip(resumed["history"]) == strip(unbroken["history"])
        assert resumed["final_test_acc"] == unbroken["final_test_acc"]
        ours = torch.load(f"{out}.pt", weights_only=True)
        theirs = torch.load(tmp_path / "unbroken.pt", weights_only=True)
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_ctrl_c_says_which_epoch_is_saved(tmp_path, monkeypatch):
    train, test = loaders()
    ckpt = tmp_path / "run.resume.pt"
    monkeypatch.setattr(train_module, "evaluate_loss_acc", StopInEpoch(2))
    with pytest.raises(
        TrainingInterrupted, match=r"interrupted in epoch 2 of 3; epoch 1 is kept in"
    ):
        fit(tiny_model(), train, test, cfg(), device=CPU, checkpoint=ckpt, progress=False)
    assert len(torch.load(ckpt, weights_only=True)["history"]) == 1


class Planted:
    """A pickle that runs code when unpickled: what a planted resume file could hold."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_planted_resume_file_runs_no_code_and_gets_a_one_line_refusal(tmp_path):
    train, test = loaders()
    ckpt, marker = tmp_path / "run.resume.pt", tmp_path / "code_ran"
    torch.save({"config": {}, "payload": Planted(marker)}, ckpt)
    with pytest.raises(
        ValueError, match="cannot read resume state from .*not a tensor file"
    ) as err:
        fit(
            tiny_model(),
            train,
            test,
            cfg(),
            device=CPU,
            checkpoint=ckpt,
            resume=True,
            progress=False,
        )
    assert not marker.exists()
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)


def test_output_files_keep_every_dot_of_out():
    files = train_module.output_files("runs/model.v2")
    assert [str(f) for f in files.values()] == [
        "runs/model.v2.pt",
        "runs/model.v2.json",
        "runs/model.v2.resume.pt",
    ]


def test_the_published_checkpoint_is_replaced_only_with_publish(tmp_path, monkeypatch):
    from course_lib import data

    monkeypatch.setattr(data, "default_data_root", lambda: tmp_path / "data")
    published = tmp_path / "data" / "checkpoints" / "final_dilated"
    published.parent.mkdir(parents=True)
    Path(f"{published}.pt").write_bytes(b"weights")
    with pytest.raises(ValueError, match="published result of this course.*--publish"):
        train_module.check_output(published)
    assert train_module.check_output(published, publish=True)["weights"] == Path(f"{published}.pt")
    assert train_module.default_out(TrainConfig(seed=3)) == tmp_path / "runs" / "dilated_seed3"


def test_out_under_a_file_is_refused_before_training(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match=r"afile/model.pt': a part of its path is a file"):
        train_module.check_output(tmp_path / "afile" / "model")
