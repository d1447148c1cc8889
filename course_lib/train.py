"""The course's one trainer: one-cycle SGD with Nesterov momentum, label smoothing, optional EMA.

Hyperparameters live in ``TrainConfig`` (units in the comments). ``fit`` trains any model on
any pair of loaders, with a progress bar per epoch, a per-epoch history, a checkpoint after
every epoch (a resumed run ends bit-identical to an unbroken one) and a clean stop on Ctrl-C
or a NaN loss. ``run`` is the whole job behind ``make train`` and lesson 04: data,
transforms, model, ``fit``, then two files (a ``state_dict`` and a JSON record) under
``runs/``; the published checkpoint is replaced only with ``publish=True``.

Measured (README.md has the table): ``build_model("dilated")``, these defaults, seed 0,
15 epochs -> 85.11% test accuracy at the final epoch (85.89% with flip TTA) on CIFAR-10
(JPEG copy): 62.7 min on a 2-core CPU in bf16 (``make train ARGS=--publish``), 61 s on one
H100. (Those runs predate per-epoch reseeding, so a rerun draws other batches: expect the
same accuracy within seed noise, about +-0.4 points, not the same digits.)

Used in lessons 04 and 06.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .augment import AugmentConfig
from .device import (
    autocast,
    autocast_dtype,
    default_device,
    depthwise_trains_faster_in_fp32,
    grad_scaler,
    prepare,
    to_device,
)

if TYPE_CHECKING:
    from .data import Cifar10


@dataclass
class TrainConfig:
    """Every knob of a training run, in one place."""

    model: str = "dilated"  # name for models.build_model
    epochs: int = 15
    batch_size: int = 256  # images per optimizer step
    lr: float = 0.2  # peak learning rate of the schedule, at batch_size
    schedule: str = "one_cycle"  # "one_cycle" | "step" (the source write-ups' StepLR, scaled)
    warmup: float = 0.2  # fraction of all steps spent rising linearly from lr/25 to lr
    momentum: float = 0.9  # Nesterov
    weight_decay: float = 5e-4  # L2 on conv and linear weights only (not BN, not biases)
    label_smoothing: float = 0.05  # probability mass spread uniformly over the 10 classes
    ema_decay: float = 0.0  # per-step EMA of the weights; 0 disables it
    batch_aug: str = "none"  # "none" | "cutout" | "ricap": extra batch-level regulariser
    cutout_p: float = AugmentConfig.cutout_p  # the hole's probability; its one source is augment
    train_size: int = 0  # 0 = all 50,000 training images; else a class-stratified subset
    test_size: int = 0  # 0 = all 10,000 test images
    seed: int = 0
    num_workers: int | None = None  # None = data.default_num_workers(device)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**values)

    def validate(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "schedule": self.schedule in SCHEDULES,
            "warmup": 0 <= self.warmup < 1,
            "momentum": 0 <= self.momentum < 1,
            "weight_decay": self.weight_decay >= 0,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "ema_decay": 0 <= self.ema_decay < 1,
            "batch_aug": self.batch_aug in ("none", "cutout", "ricap"),
            "cutout_p": 0 <= self.cutout_p <= 1,
            "train_size": self.train_size >= 0,
            "test_size": self.test_size >= 0,
            "seed": self.seed >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in bad)
            raise ValueError(f"invalid training config: {shown}")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


@dataclass
class FitResult:
    """What ``fit`` returns: the model to evaluate (EMA weights if enabled) and the history."""

    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, so a run can be repeated.

    Used in lessons 01-06.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def one_cycle(step: int, total: int, warmup: float) -> float:
    """LR multiplier: linear from 1/25 to 1 over ``warmup`` of the steps, then linear to 0.

    Used in lesson 04.
    """
    peak = max(1, round(warmup * total))
    if step < peak:
        return 1 / 25 + (1 - 1 / 25) * step / peak
    return max(0.0, (total - step) / max(1, total - peak))


def step_decay(step: int, total: int, warmup: float = 0.0) -> float:
    """LR multiplier of a StepLR that halves the rate every quarter of the run, no warm-up.

    The source write-ups use StepLR (one halves every 25 of 100 epochs); this is that schedule
    scaled to our run, so lesson 04 can measure what the one-cycle schedule buys over it.
    ``warmup`` is accepted and ignored, so both schedules share one signature.
    """
    return 0.5 ** min(3, 4 * step // max(1, total))


SCHEDULES = {"one_cycle": one_cycle, "step": step_decay}


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.SGD(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=True,
    )


def _batch_regulariser(cfg: TrainConfig, generator: torch.Generator) -> Callable:
    """Returns ``step(model, x, y) -> (loss, logits)`` with the chosen batch-level augmentation."""
    from .augment import cutout_batch, ricap_batch, ricap_loss

    def criterion(logits, y):
        return F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)

    def step(model, x, y):
        if cfg.batch_aug == "cutout":
            x = cutout_batch(x, generator=generator)
        if cfg.batch_aug == "ricap":
            x, labels4, weights = ricap_batch(x, y, generator=generator)
            logits = model(x)
            return ricap_loss(logits, labels4, weights, criterion=criterion), logits
        logits = model(x)
        return criterion(logits, y), logits

    return step


def evaluate_loss_acc(
    model: nn.Module, loader: DataLoader, device: torch.device
) -> tuple[float, float]:
    """Mean cross-entropy (no smoothing) and accuracy (a fraction) over a loader."""
    model.eval()
    total_loss, correct, n = 0.0, 0, 0
    with torch.inference_mode(), autocast(device):
        for x, y in loader:
            x, y = to_device(x, device), y.to(device)
            logits = model(x).float()
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
    return total_loss / n, correct / n


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_state(path: str | Path, what: str = "weights") -> Any:
    """``torch.load(path, weights_only=True)`` with a one-line error for a bad file.

    ``weights_only=True`` unpickles tensors and plain values only, so a planted or damaged
    file cannot run code. Used by ``fit`` (resume) and ``evaluate.load_checkpoint``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file '{path}' not found")
    if path.stat().st_size == 0:
        raise ValueError(f"cannot read {what} from '{path}': the file is empty")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch's own message advises weights_only=False: never pass that on
        raise ValueError(
            f"cannot read {what} from '{path}': not a tensor file that course_lib wrote "
            "(it is damaged, or holds objects other than tensors and plain values)"
        ) from None


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffle and augmentation, a function of (seed, epoch) alone.

    Reseeding every random stream at the start of each epoch is what makes resuming exact:
    a run resumed after epoch k draws the same batches as one that never stopped.
    """
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _seed_epoch(loader: Any, generator: torch.Generator, seed: int, epoch: int) -> None:
    s = epoch_seed(seed, epoch)
    torch.manual_seed(s)  # anything that draws from the global stream (dropout, a plain loader)
    generator.manual_seed(s)  # batch-level CutOut / RICAP
    if getattr(loader, "generator", None) is not None:
        # the shuffle order, and the base seed from which each epoch's workers reseed
        loader.generator.manual_seed(s)
    if getattr(loader, "num_workers", 1) == 0 and hasattr(loader.dataset, "reseed"):
        loader.dataset.reseed(s)  # the albumentations stream, when the main process loads


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``fit``; the message says which epoch is saved."""


def _check_resume_config(saved: dict[str, Any], cfg: TrainConfig, ckpt: Path) -> None:
    now = dataclasses.asdict(cfg)
    changed = [
        f"{k} {saved.get(k)!r} -> {now.get(k)!r}"
        for k in sorted(set(saved) | set(now))
        if saved.get(k) != now.get(k)
    ]
    if changed:
        raise ValueError(
            f"cannot resume from '{ckpt}': it was written with other options "
            f"({', '.join(changed)}); pass the same options, or --no-resume to start afresh"
        )


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    test_loader: DataLoader,
    cfg: TrainConfig,
    *,
    device: torch.device | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> FitResult:
    """Train ``model`` for ``cfg.epochs`` and test it after every epoch.

    ``checkpoint`` is the path of the resumable state (model, optimizer, schedule, EMA,
    history: tensors and plain values only), rewritten atomically after every epoch; with
    ``resume=True`` an existing one is continued. Every random stream is reseeded from
    ``(cfg.seed, epoch)`` at the start of each epoch, so a resumed run ends bit-identical to
    an uninterrupted one (on CPU). A NaN or infinite loss stops training with
    ``TrainingDiverged``, Ctrl-C with ``TrainingInterrupted``; either way the checkpoint of
    the last finished epoch is left untouched.

    Used in lessons 04 and 06.
    """
    cfg.validate()
    device = device or default_device()
    model = prepare(model, device)
    opt = make_optimizer(model, cfg)
    total_steps = cfg.epochs * len(train_loader)
    multiplier = SCHEDULES[cfg.schedule]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: multiplier(s, total_steps, cfg.warmup))
    scaler = grad_scaler(device)
    ema = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        if cfg.ema_decay > 0
        else None
    )
    generator = torch.Generator()
    train_step = _batch_regulariser(cfg, generator)
    history: list[dict[str, float]] = []
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt and resume and ckpt.exists():
        state = read_state(ckpt, "resume state")
        if not isinstance(state, dict) or "config" not in state:
            raise ValueError(f"cannot resume from '{ckpt}': not a course_lib resume file")
        _check_resume_config(state["config"], cfg, ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        history = state["history"]
        if progress:
            tqdm.write(f"resumed after epoch {len(history)} of {cfg.epochs}")

    t_start = time.perf_counter() - sum(h["seconds"] for h in history)
    try:
        for epoch in range(len(history), cfg.epochs):
            _seed_epoch(train_loader, generator, cfg.seed, epoch)
            row = _train_epoch(
                model,
                train_loader,
                cfg,
                device,
                epoch,
                opt,
                sched,
                scaler,
                ema,
                train_step,
                progress,
            )
            eval_model = ema.module if ema is not None else model
            row["test_loss"], row["test_acc"] = evaluate_loss_acc(eval_model, test_loader, device)
            row["seconds"] = time.perf_counter() - row.pop("start")
            history.append(row)
            if progress:
                tqdm.write(
                    f"epoch {row['epoch']:>2}/{cfg.epochs}  train loss {row['train_loss']:.3f} "
                    f"acc {row['train_acc']:.2%}  |  test loss {row['test_loss']:.3f} "
                    f"acc {row['test_acc']:.2%}  |  {row['seconds']:.0f}s"
                )
            if ckpt:
                state = {
                    "config": dataclasses.asdict(cfg),
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "history": history,
                }
                _save_atomic(state, ckpt)
    except TrainingDiverged as err:
        kept = (
            f" The checkpoint of epoch {len(history)} is kept at {ckpt}."
            if ckpt and history
            else ""
        )
        raise TrainingDiverged(f"{err}{kept} Try a lower learning rate than lr={cfg.lr}.") from None
    except KeyboardInterrupt:
        done = len(history)
        saved = (
            f"{'epoch 1 is' if done == 1 else f'epochs 1-{done} are'} saved in '{ckpt}'"
            if ckpt and done
            else "no epoch had finished, so nothing was saved"
        )
        raise TrainingInterrupted(
            f"interrupted in epoch {len(history) + 1} of {cfg.epochs}; {saved}"
        ) from None
    final = ema.module if ema is not None else model
    return FitResult(model=final, history=history, seconds=time.perf_counter() - t_start)


def _train_epoch(model, loader, cfg, device, epoch, opt, sched, scaler, ema, train_step, progress):
    """One pass over ``loader``; returns the epoch's row of the history (without test columns)."""
    start = time.perf_counter()
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    bar = tqdm(
        loader,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        disable=not progress,
        leave=False,
        unit="batch",
    )
    for x, y in bar:
        x, y = to_device(x, device), y.to(device)
        with autocast(device):
            loss, logits = train_step(model, x, y)
        if not math.isfinite(loss.item()):
            bar.close()
            raise TrainingDiverged(f"loss became {loss.item()} in epoch {epoch + 1}; stopped.")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # fp16 only: scaled so small gradients do not underflow
        scaler.step(opt)
        scaler.update()
        sched.step()
        if ema is not None:
            ema.update_parameters(model)
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    return {
        "epoch": epoch + 1,
        "train_loss": loss_sum / seen,
        "train_acc": correct / seen,
        "lr": opt.param_groups[0]["lr"],
        "start": start,
    }


def environment_info(device: torch.device) -> dict[str, Any]:
    """Device, precision and library versions, for the JSON record next to every checkpoint."""
    import albumentations

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    dtype = str(autocast_dtype(device)).removeprefix("torch.")
    return {
        "device": device.type,
        "autocast": dtype,
        # device.prepare's choice: dilated depthwise convs may train in fp32 inside the autocast
        "dilated_depthwise_training": (
            "float32" if depthwise_trains_faster_in_fp32(device, dilated=True) else dtype
        ),
        "device_name": name or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "albumentations": albumentations.__version__,
        "numpy": np.__version__,
    }


def plan_record(model: nn.Module) -> dict[str, Any] | None:
    """The model's ``NetPlan`` as JSON-ready data (None for models built without one).

    Stored in the checkpoint record, so that loading weights into a different plan with the
    same parameter shapes fails loudly instead of silently (``evaluate.load_checkpoint``).
    """
    plan = getattr(model, "plan", None)
    return json.loads(json.dumps(dataclasses.asdict(plan))) if plan is not None else None


def training_loaders(
    cfg: TrainConfig, data: Cifar10, aug: AugmentConfig
) -> tuple[DataLoader, DataLoader, dict[str, list[float]]]:
    """Train and test loaders for ``cfg`` (subset, batch size, seed, workers) and ``aug``.

    Normalises with the training images' per-channel mean and std, returned as
    ``{"mean": [...], "std": [...]}`` (0-1 units), the record that goes into the JSON.
    Used by ``run`` and by lesson 06's ablations.
    """
    from .augment import eval_transforms, train_transforms
    from .data import channel_stats, make_loaders, subset

    for name, n, have in (
        ("train_size", cfg.train_size, len(data.y_train)),
        ("test_size", cfg.test_size, len(data.y_test)),
    ):
        if n > have:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} {n} is more than the {have:,} images there are (0 = all)")
    if cfg.train_size or cfg.test_size:
        data = subset(
            data, cfg.train_size or len(data.y_train), cfg.test_size or len(data.y_test), cfg.seed
        )
    stats = channel_stats(data.x_train)
    mean, std = stats["mean"].tolist(), stats["std"].tolist()
    train_loader, test_loader = make_loaders(
        data,
        train_transforms(mean, std, aug, seed=cfg.seed),
        eval_transforms(mean, std),
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        seed=cfg.seed,
    )
    return train_loader, test_loader, {"mean": mean, "std": std}


def default_out(cfg: TrainConfig) -> Path:
    """Where a run writes when no ``out`` is given: ``runs/<model>_seed<seed>`` (git-ignored).

    Used in lesson 04 and by the CLI.
    """
    from .data import default_data_root

    return default_data_root().parent / "runs" / f"{cfg.model}_seed{cfg.seed}"


PUBLISHED_FOLDER = "checkpoints"  # under the data root: the tracked results lessons read
OUTPUT_SUFFIXES = {"weights": ".pt", "record": ".json", "resume": ".resume.pt"}


def published_out(model: str, root: str | Path | None = None) -> Path:
    """The course's published checkpoint of ``model`` (tracked in git), without suffix."""
    from .data import default_data_root

    return Path(root or default_data_root()) / PUBLISHED_FOLDER / f"final_{model}"


def output_files(out: str | Path) -> dict[str, Path]:
    """``<out>.pt``, ``<out>.json`` and ``<out>.resume.pt``: the names exactly, dots and all."""
    return {kind: Path(f"{out}{suffix}") for kind, suffix in OUTPUT_SUFFIXES.items()}


def check_output(out: str | Path, publish: bool = False) -> dict[str, Path]:
    """Make sure a run can write ``out`` before it trains; returns ``output_files(out)``.

    Refuses, with one line each: an ``out`` that is a folder or lies under a file, a folder
    that cannot be written, and, unless ``publish``, replacing the files of the published
    checkpoints folder (``data/checkpoints``), which lessons and tests read.
    """
    out = Path(out)
    if out.is_dir() or str(out).endswith(("/", "\\")):
        raise ValueError(
            f"--out '{out}' is a folder; give a file name without suffix, e.g. {out / 'run'}"
        )
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ValueError(f"cannot write '{out}.pt': '{blocker}' is a file, not a folder")
    files = output_files(out)
    published = published_out(TrainConfig.model).parent.resolve()
    taken = [f for f in (files["weights"], files["record"]) if f.exists()]
    if taken and not publish and out.parent.resolve() == published:
        raise ValueError(
            f"'{taken[0]}' is a published result of this course; choose another --out, "
            "or pass --publish to replace it"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = Path(f"{out}.write-test.tmp")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write '{out}.pt': {err.strerror or err}") from None
    return files


def run(
    cfg: TrainConfig,
    out: str | Path | None = None,
    *,
    model: nn.Module | None = None,
    publish: bool = False,
    data_root: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """The whole training job: returns the JSON record it writes next to the weights.

    Writes ``<out>.pt`` (the final ``state_dict``, loadable with ``weights_only=True``),
    ``<out>.json`` (history, config, seed, normalisation, device, versions, wall seconds)
    and, while training, ``<out>.resume.pt``. ``out`` defaults to ``default_out(cfg)``;
    the published checkpoints are replaced only with ``publish=True``. ``model`` defaults
    to ``build_model(cfg.model)``, built right after seeding (``check --train`` passes a
    student's model).

    Used in lesson 04.
    """
    from .data import load_cifar10
    from .models import build_model, count_parameters

    cfg.validate()
    files = check_output(out if out is not None else default_out(cfg), publish)
    device = device or default_device()
    seed_everything(cfg.seed)
    model = model if model is not None else build_model(cfg.model)  # before the slow data load
    aug = AugmentConfig(cutout_p=cfg.cutout_p)
    data = load_cifar10(data_root)
    train_loader, test_loader, normalize = training_loaders(cfg, data, aug)
    result = fit(
        model,
        train_loader,
        test_loader,
        cfg,
        device=device,
        checkpoint=files["resume"],
        resume=resume,
        progress=progress,
    )
    record = {
        "config": dataclasses.asdict(cfg),
        "seed": cfg.seed,
        "parameters": count_parameters(result.model),
        "plan": plan_record(result.model),
        "normalize": normalize,
        "augment": dataclasses.asdict(aug),
        "history": result.history,
        "final_test_acc": result.history[-1]["test_acc"],
        "wall_seconds": result.seconds,
        "environment": environment_info(device),
        "dataset": data.label,
    }
    state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
    _save_atomic(state, files["weights"])
    tmp = Path(f"{files['record']}.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, files["record"])
    files["resume"].unlink(missing_ok=True)
    return record


def history_table(history: Sequence[dict[str, float]]) -> str:
    """The per-epoch history as a fixed-width text table.

    Used in lesson 04.
    """
    lines = ["epoch  train loss  train acc  test loss  test acc      lr  seconds"]
    for h in history:
        lines.append(
            f"{h['epoch']:>5}  {h['train_loss']:>10.3f}  {h['train_acc']:>9.2%}  "
            f"{h['test_loss']:>9.3f}  {h['test_acc']:>8.2%}  {h['lr']:>6.3f}  {h['seconds']:>7.1f}"
        )
    return "\n".join(lines)
