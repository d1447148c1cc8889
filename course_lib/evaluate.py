"""Evaluation plumbing for lessons 02, 04 and 05, the CLI and the grader: the published
checkpoint, loading a checkpoint, and predictions with optional flip test-time augmentation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .device import autocast, default_device, prepare, to_device


@dataclass
class Evaluation:
    """Softmax outputs on a dataset and what follows from them. Used in lessons 04 and 05."""

    probs: np.ndarray  # (N, classes) softmax, float32
    labels: np.ndarray  # (N,) true class

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(1)

    @property
    def confidence(self) -> np.ndarray:  # the probability of the predicted class
        return self.probs.max(1)

    @property
    def accuracy(self) -> float:
        return float((self.preds == self.labels).mean())


def predict(model: nn.Module, loader: DataLoader, *, tta=False, device=None, progress=False):
    """Softmax outputs of ``model`` on every batch of ``loader``; with ``tta``, averaged with
    those of the mirror images. Used in lessons 04 and 05, the CLI and the grader."""
    device = device or default_device()
    model = prepare(model, device).eval()
    probs, labels = [], []
    batches = tqdm(loader, desc="flip TTA" if tta else "test images", disable=not progress)
    with torch.inference_mode(), autocast(device):
        for x, y in batches:
            x = to_device(x, device)
            p = model(x).float().softmax(1)
            if tta:
                p = (p + model(x.flip(3)).float().softmax(1)) / 2
            probs.append(p.cpu())
            labels.append(y)
    return Evaluation(torch.cat(probs).numpy(), torch.cat(labels).numpy())


def published_checkpoint(root: str | Path | None = None) -> Path:
    """Path (without suffix) of the committed final model, fetched from the repository where
    the files are absent (on Colab). Used in lessons 02, 04, 05 and 06."""
    from .links import fetch_committed
    from .train import PUBLISHED_FOLDER, published_out

    path = published_out("dilated", root)
    for suffix in (".json", ".pt"):
        try:
            fetch_committed(f"data/{PUBLISHED_FOLDER}/{path.name}{suffix}", Path(f"{path}{suffix}"))
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{err}; train it with `make train ARGS=--publish`") from None
    return path


def eval_loader(images: np.ndarray, labels: np.ndarray, normalize, batch_size=1000) -> DataLoader:
    """Test images through the eval transform with the normalisation a checkpoint recorded.
    Used in lessons 04 and 05, the CLI and the grader."""
    from .augment import eval_transforms
    from .data import AugmentedDataset

    transform = eval_transforms(normalize["mean"], normalize["std"])
    return DataLoader(AugmentedDataset(images, labels, transform), batch_size=batch_size)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model and record of ``<path>.pt`` (read with ``weights_only=True``) and
    ``<path>.json``; each way a checkpoint can be wrong raises one line naming the file.
    Used in lessons 02, 04 and 05 and the CLI."""
    from .models import build_model
    from .train import output_files, plan_record, read_state

    path = str(path)
    if path.endswith((".pt", ".json")) and Path(path).is_file():
        path = path.rsplit(".", 1)[0]  # one of the two files named instead of their stem
    files = output_files(path)
    weights, meta = files["weights"], files["record"]
    missing = [p.name for p in (weights, meta) if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not found in '{weights.parent}'; "
                                "train a checkpoint with `make train`")
    try:
        record = json.loads(meta.read_text())
        name, normalize = record["config"]["model"], record["normalize"]
        if len(normalize["mean"]) != 3 or len(normalize["std"]) != 3:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise ValueError(
            f"'{meta}' is not a training record of course_lib (it needs config.model and "
            "normalize.mean/std with 3 values each); use the .json that `train` wrote"
        ) from None
    model = build_model(name)
    if record.get("plan") not in (None, plan_record(model)):
        raise ValueError(
            f"{meta.name} was trained with a different plan of {name!r} "
            "than the one course_lib builds; retrain it with `make train`"
        )
    try:
        model.load_state_dict(read_state(weights))
    except (RuntimeError, TypeError, AttributeError):
        raise ValueError(
            f"'{weights}' does not hold weights of build_model({name!r}); "
            "use the .pt written together with its .json"
        ) from None
    return model.eval(), record
