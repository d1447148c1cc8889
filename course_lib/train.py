"""Lesson 04's training loop (exported below) plus the plumbing of a long run: ``TrainConfig``,
``fit`` (reseeding, resume, Ctrl-C, NaN stop) and ``run`` (``make train``). Lessons 04, 06."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import data as datasets  # by module, so that a test can swap its loader and root
from .augment import AugmentConfig, cutout_batch, ricap_batch, ricap_loss
from .data import Cifar10, channel_stats, make_loaders, subset
from .device import autocast, default_device, environment_info, grad_scaler, prepare, to_device
from .models import build_model, count_parameters

# >>> written in the lessons' #@save cells: edit the lesson, then run `make export`


# from lessons/04_training_the_final_model.ipynb


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with Nesterov momentum; weight decay on conv and linear weights only."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]  # batch norm, biases
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)


def one_cycle(step: int, total: int, warmup: float) -> float:
    """LR multiplier: linear from 1/25 to 1 over ``warmup`` of the steps, then linear to 0."""
    peak = max(1, round(warmup * total))
    if step < peak:
        return 1 / 25 + (1 - 1 / 25) * step / peak
    return max(0.0, (total - step) / max(1, total - peak))


def step_decay(step: int, total: int, warmup: float = 0.0) -> float:
    """LR multiplier of StepLR scaled to the run: halved every quarter, no warm-up."""
    return 0.5 ** min(3, 4 * step // max(1, total))


SCHEDULES = {"one_cycle": one_cycle, "step": step_decay}


def make_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Sets each step's learning rate to ``cfg.lr`` times the schedule's multiplier."""
    total = cfg.epochs * steps_per_epoch
    multiplier = SCHEDULES[cfg.schedule]
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: multiplier(step, total, cfg.warmup))


def loss_and_logits(model: nn.Module, x, y, cfg: TrainConfig, generator: torch.Generator):
    """Label-smoothed cross-entropy on a batch, after ``cfg.batch_aug`` (CutOut or RICAP)."""

    def criterion(logits, labels):
        return F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)

    if cfg.batch_aug == "cutout":
        x = cutout_batch(x, generator=generator)
    if cfg.batch_aug == "ricap":
        x, labels4, weights = ricap_batch(x, y, generator=generator)
        logits = model(x)
        return ricap_loss(logits, labels4, weights, criterion=criterion), logits
    logits = model(x)
    return criterion(logits, y), logits


def train_step(model: nn.Module, x, y, cfg: TrainConfig, opt, scaler, generator):
    """One optimizer step: forward in mixed precision, backward, update; returns loss, logits."""
    with autocast(x.device):
        loss, logits = loss_and_logits(model, x, y, cfg, generator)
    if not math.isfinite(loss.item()):
        raise TrainingDiverged(f"the loss became {loss.item()}")
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()  # scaled only under fp16, where small gradients underflow
    scaler.step(opt)
    scaler.update()
    return loss, logits


def train_epoch(model, batches, device, cfg: TrainConfig, opt, sched, scaler, generator, ema=None):
    """One pass over the training batches; returns mean loss, accuracy and the last lr."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in batches:
        x, y = to_device(x, device), y.to(device)  # channels-last, like the model
        loss, logits = train_step(model, x, y, cfg, opt, scaler, generator)
        sched.step()
        if ema is not None:
            ema.update_parameters(model)
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    lr = sched.get_last_lr()[0]
    return {"train_loss": loss_sum / seen, "train_acc": correct / seen, "lr": lr}


def evaluate_loss_acc(model: nn.Module, loader, device: torch.device) -> tuple[float, float]:
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


# <<< end of the lessons' code


@dataclass
class TrainConfig:
    """Every knob of a training run. The comments are also the command line's help."""

    model: str = "dilated"  # architecture, a name for models.build_model
    epochs: int = 15  # passes over the training set
    batch_size: int = 256  # images per optimizer step
    lr: float = 0.2  # peak learning rate of the schedule
    schedule: str = "one_cycle"  # one_cycle, or step (halved every quarter of the run)
    warmup: float = 0.2  # one_cycle: fraction of the steps rising linearly from lr/25 to lr
    momentum: float = 0.9  # Nesterov momentum
    weight_decay: float = 5e-4  # L2 penalty on conv and linear weights (not BN, not biases)
    label_smoothing: float = 0.05  # probability mass spread uniformly over the 10 classes
    ema_decay: float = 0.0  # per-step EMA decay of the weights, reached after a warm-up (0: off)
    batch_aug: str = "none"  # extra batch-level regulariser: none, cutout or ricap
    cutout_p: float = AugmentConfig.cutout_p  # probability of the assignment's 16x16 hole
    train_size: int = 0  # a class-stratified subset of this many training images (0 = all)
    test_size: int = 0  # a class-stratified subset of this many test images (0 = all)
    seed: int = 0  # random seed: initialisation, data order, augmentation
    num_workers: int | None = None  # DataLoader worker processes (None: the best for the device)

    def __post_init__(self) -> None:
        """Raise one ``ValueError`` that names every field outside its range."""
        ok = dict(
            epochs=self.epochs >= 1, batch_size=self.batch_size >= 1, lr=self.lr > 0,
            schedule=self.schedule in SCHEDULES, warmup=0 <= self.warmup < 1,
            momentum=0 <= self.momentum < 1, weight_decay=self.weight_decay >= 0,
            label_smoothing=0 <= self.label_smoothing < 1, ema_decay=0 <= self.ema_decay < 1,
            batch_aug=self.batch_aug in ("none", "cutout", "ricap"),
            cutout_p=0 <= self.cutout_p <= 1, train_size=self.train_size >= 0,
            test_size=self.test_size >= 0, seed=self.seed >= 0,
        )  # fmt: skip
        if bad := [f"{name}={getattr(self, name)!r}" for name, good in ok.items() if not good]:
            raise ValueError(f"invalid training config: {', '.join(bad)}")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``fit``; the message says which epoch is saved."""


class FitResult(NamedTuple):
    """What ``fit`` returns: the model to evaluate (the EMA if enabled), history, seconds."""

    model: nn.Module
    history: list[dict[str, float]]
    seconds: float


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, so a run can be repeated. Used in lessons 04 and 06."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _seed_epoch(loader: Any, generator: torch.Generator, seed: int, epoch: int) -> None:
    """Reseed every random stream from ``(seed, epoch)`` alone: what makes resuming exact."""
    s = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    torch.manual_seed(s)  # the global stream: a plain loader's shuffle, dropout
    generator.manual_seed(s)  # batch-level CutOut / RICAP
    if getattr(loader, "generator", None) is not None:
        loader.generator.manual_seed(s)  # the shuffle, and the seed of each epoch's workers
    if getattr(loader, "num_workers", 1) == 0 and hasattr(loader.dataset, "reseed"):
        loader.dataset.reseed(s)  # albumentations, when the main process loads


def _save_atomic(obj: Any, path: Path) -> None:
    """Write text, or else ``torch.save`` ``obj``, so that no half-written file is left."""
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(obj, str):
        tmp.write_text(obj)
    else:
        torch.save(obj, tmp)
    os.replace(tmp, path)


def read_state(path: str | Path, what: str = "weights") -> Any:
    """``torch.load(path, weights_only=True)`` (it unpickles no code), with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file '{path}' not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch's own message advises weights_only=False: never pass that on
        raise ValueError(f"cannot read {what} from '{path}': not a tensor file that course_lib "
                         "wrote (it is damaged, or holds objects other than tensors)") from None


def _resume(ckpt: Path, cfg: TrainConfig, parts: dict[str, Any]) -> list[dict[str, float]]:
    """Load the saved state into ``parts`` (model, optimizer...); return the saved history."""
    state = read_state(ckpt, "resume state")
    if not isinstance(state, dict) or "config" not in state:
        raise ValueError(f"cannot resume from '{ckpt}': not a course_lib resume file")
    saved = state["config"]
    if changed := [f"{k} {saved.get(k)!r} -> {v!r}" for k, v in dataclasses.asdict(cfg).items()
                   if saved.get(k) != v]:  # fmt: skip
        raise ValueError(f"cannot resume from '{ckpt}': it was written with other options "
                         f"({', '.join(changed)}); pass the same ones, or --no-resume")
    for name, part in parts.items():
        part.load_state_dict(state[name])
    return state["history"]


def warmed_ema(decay: float):
    """``multi_avg_fn`` for ``AveragedModel``: an EMA whose decay after n updates is
    min(decay, (1 + n) / (10 + n)), the warm-up of TensorFlow's ExponentialMovingAverage. Without
    it, the random initial weights keep decay**steps of the average: 5% after the 2,940 steps of
    a 15-epoch run at 0.999 (that run scored 75%, benchmarks/architecture_probes.py)."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor):
        ramp = (1 + n.item()) / (10 + n.item())
        get_ema_multi_avg_fn(min(decay, ramp))(averaged, current, n)  # torch's EMA step

    return update


def fit(model: nn.Module, train_loader: DataLoader, test_loader: DataLoader, cfg: TrainConfig, *,
        device: torch.device | None = None, checkpoint: str | Path | None = None,
        resume: bool = False, progress: bool = True) -> FitResult:  # fmt: skip
    """Lesson 04's loop, plus a ``checkpoint`` after every epoch that ``resume=True`` continues
    bit-identically (each epoch reseeds from ``(cfg.seed, epoch)``). Used in lesson 06 and by run."""
    device = device or default_device()
    model = prepare(model, device)
    opt = make_optimizer(model, cfg)
    sched = make_schedule(opt, cfg, len(train_loader))
    scaler, generator = grad_scaler(device), torch.Generator()
    parts = {"model": model, "optimizer": opt, "scheduler": sched, "scaler": scaler}
    ema = None
    if cfg.ema_decay > 0:
        avg = warmed_ema(cfg.ema_decay)
        parts["ema"] = ema = AveragedModel(model, multi_avg_fn=avg, use_buffers=True)
    final = model if ema is None else ema.module
    ckpt = Path(checkpoint) if checkpoint else None
    history = _resume(ckpt, cfg, parts) if ckpt and resume and ckpt.exists() else []
    if history and progress:
        tqdm.write(f"resumed after epoch {len(history)} of {cfg.epochs}")
    t_start = time.perf_counter() - sum(h["seconds"] for h in history)
    try:
        for epoch in range(len(history), cfg.epochs):
            start, title = time.perf_counter(), f"epoch {epoch + 1}/{cfg.epochs}"
            _seed_epoch(train_loader, generator, cfg.seed, epoch)
            with tqdm(train_loader, title, disable=not progress, leave=False, unit="batch") as bar:
                row = train_epoch(model, bar, device, cfg, opt, sched, scaler, generator, ema)
            tested = evaluate_loss_acc(final, test_loader, device)
            row = {"epoch": epoch + 1, **row, "test_loss": tested[0], "test_acc": tested[1]}
            history.append({**row, "seconds": time.perf_counter() - start})
            if progress:
                train = f"train loss {row['train_loss']:.3f} acc {row['train_acc']:.2%}"
                test = f"test loss {row['test_loss']:.3f} acc {row['test_acc']:.2%}"
                tqdm.write(f"{title}  {train}  |  {test}")
            if ckpt:
                state = {name: part.state_dict() for name, part in parts.items()}
                _save_atomic({"config": dataclasses.asdict(cfg), **state, "history": history}, ckpt)
    except (TrainingDiverged, KeyboardInterrupt) as err:
        done = len(history)
        where = f"in epoch {done + 1} of {cfg.epochs}"
        kept = f"epoch {done} is kept in '{ckpt}'" if ckpt and done else "nothing was saved"
        if isinstance(err, KeyboardInterrupt):
            raise TrainingInterrupted(f"interrupted {where}; {kept}") from None
        raise TrainingDiverged(f"{err} {where}; {kept}; try a lower lr than {cfg.lr}") from None
    return FitResult(final, history, time.perf_counter() - t_start)


def plan_record(model: nn.Module) -> dict[str, Any] | None:
    """The model's ``NetPlan`` as JSON data (None without one): ``load_checkpoint`` checks it."""
    plan = getattr(model, "plan", None)
    return json.loads(json.dumps(dataclasses.asdict(plan))) if plan is not None else None


def training_loaders(cfg: TrainConfig, data: Cifar10, aug: AugmentConfig):
    """Train and test loaders for ``cfg`` and ``aug``, and their normalisation ``{"mean": [...],
    "std": [...]}`` (the training images' own, 0-1 units). Used in lessons 04 and 06."""
    from .augment import eval_transforms, train_transforms
    n_train, n_test = cfg.train_size or len(data.y_train), cfg.test_size or len(data.y_test)
    for flag, n, have in (("train", n_train, data.y_train), ("test", n_test, data.y_test)):
        if n > len(have):
            raise ValueError(f"--{flag}-size {n} is more than the {len(have):,} images there are")
    if cfg.train_size or cfg.test_size:
        data = subset(data, n_train, n_test, cfg.seed)
    stats = channel_stats(data.x_train)
    mean, std = stats["mean"].tolist(), stats["std"].tolist()
    train, test = train_transforms(mean, std, aug, seed=cfg.seed), eval_transforms(mean, std)
    loaders = make_loaders(data, train, test, cfg.batch_size, cfg.num_workers, cfg.seed)
    return *loaders, {"mean": mean, "std": std}


PUBLISHED_FOLDER = "checkpoints"  # under the data root: the tracked results lessons read


def default_out(cfg: TrainConfig) -> Path:
    """Where a run writes without ``out``: ``runs/<model>_seed<seed>`` (git-ignored)."""
    return datasets.default_data_root().parent / "runs" / f"{cfg.model}_seed{cfg.seed}"


def published_out(model: str, root: str | Path | None = None) -> Path:
    """The course's published checkpoint of ``model`` (tracked in git), without suffix."""
    return Path(root or datasets.default_data_root()) / PUBLISHED_FOLDER / f"final_{model}"


def output_files(out: str | Path) -> dict[str, Path]:
    """``<out>.pt``, ``<out>.json`` and ``<out>.resume.pt``: the names exactly, dots and all."""
    suffixes = {"weights": ".pt", "record": ".json", "resume": ".resume.pt"}
    return {kind: Path(f"{out}{suffix}") for kind, suffix in suffixes.items()}


def check_output(out: str | Path, publish: bool = False) -> dict[str, Path]:
    """``output_files(out)``, refusing a folder, an unwritable path and, unless ``publish``,
    the published checkpoints lessons read."""
    out, files = Path(out), output_files(out)
    if out.is_dir() or str(out).endswith(("/", "\\")):
        raise ValueError(f"--out '{out}' is a folder; give a file name, e.g. {out / 'run'}")
    published = out.parent.resolve() == published_out(TrainConfig.model).parent.resolve()
    if published and not publish and (files["weights"].exists() or files["record"].exists()):
        raise ValueError(f"'{out}' is a published result of this course; choose another --out, "
                         "or pass --publish to replace it")  # fmt: skip
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"cannot write '{out}.pt': a part of its path is a file") from None
    if not os.access(out.parent, os.W_OK):  # fail now, not after the training
        raise ValueError(f"cannot write '{out}.pt': '{out.parent}' is read-only")
    return files


def run(cfg: TrainConfig, out: str | Path | None = None, *, model: nn.Module | None = None,
        publish: bool = False, data_root: str | Path | None = None, resume: bool = True,
        progress: bool = True, device: torch.device | None = None,
        aug: AugmentConfig | None = None) -> dict[str, Any]:  # fmt: skip
    """Data, model (``check --train`` passes a student's), ``fit``, then ``<out>.pt`` (the
    weights) and ``<out>.json`` (history, config, normalisation, environment), which it returns.
    ``aug`` (the benchmarks' probes) replaces the assignment pipeline's default settings."""
    files = check_output(out if out is not None else default_out(cfg), publish)
    device = device or default_device()
    seed_everything(cfg.seed)
    model = model if model is not None else build_model(cfg.model)  # before the slow data load
    aug = aug or AugmentConfig(cutout_p=cfg.cutout_p)
    data = datasets.load_cifar10(data_root)
    train_loader, test_loader, normalize = training_loaders(cfg, data, aug)
    result = fit(model, train_loader, test_loader, cfg, device=device,
                 checkpoint=files["resume"], resume=resume, progress=progress)  # fmt: skip
    record = dict(
        config=dataclasses.asdict(cfg), seed=cfg.seed, parameters=count_parameters(result.model),
        plan=plan_record(result.model), normalize=normalize, augment=dataclasses.asdict(aug),
        history=result.history, final_test_acc=result.history[-1]["test_acc"],
        wall_seconds=result.seconds, environment=environment_info(device), dataset=data.label,
    )  # fmt: skip
    state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
    _save_atomic(state, files["weights"])
    _save_atomic(json.dumps(record, indent=1), files["record"])
    files["resume"].unlink(missing_ok=True)
    return record
