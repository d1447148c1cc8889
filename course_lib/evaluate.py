"""Evaluation: accuracy, per-class accuracy, confusion matrix, mistakes, flip TTA, checkpoints.

Flip test-time augmentation averages the softmax of each image and its mirror image; it is
reported next to, never instead of, the plain accuracy.

Used in lessons 04 and 05.
"""

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
    """Predictions on a dataset and what follows from them."""

    probs: np.ndarray  # (N, classes) softmax, float32
    labels: np.ndarray  # (N,) true class
    tta: bool = False

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(1)

    @property
    def confidence(self) -> np.ndarray:
        """Softmax probability of the predicted class."""
        return self.probs.max(1)

    @property
    def accuracy(self) -> float:
        return float((self.preds == self.labels).mean())

    @property
    def confusion(self) -> np.ndarray:
        return confusion_matrix(self.labels, self.preds, self.probs.shape[1])

    @property
    def per_class_accuracy(self) -> np.ndarray:
        cm = self.confusion
        return np.diag(cm) / np.maximum(cm.sum(1), 1)

    def misclassified(self, k: int | None = None) -> np.ndarray:
        """Indices of wrong predictions, most confident mistakes first."""
        wrong = np.flatnonzero(self.preds != self.labels)
        order = np.argsort(-self.confidence[wrong], kind="stable")
        return wrong[order][:k]


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``cm[true, predicted]``.

    Used in lesson 05.
    """
    labels, preds = np.asarray(labels), np.asarray(preds)
    if labels.shape != preds.shape:
        raise ValueError(f"labels {labels.shape} and preds {preds.shape} differ in shape")
    return np.bincount(labels * n_classes + preds, minlength=n_classes**2).reshape(
        n_classes, n_classes
    )


def most_confused_pairs(
    cm: np.ndarray, classes: tuple[str, ...] | list[str], k: int = 5
) -> list[tuple[str, str, int]]:
    """The ``k`` largest off-diagonal cells as (true, predicted, count).

    Used in lesson 05.
    """
    off = cm.astype(np.int64).copy()
    np.fill_diagonal(off, -1)
    flat = np.argsort(-off, axis=None, kind="stable")[:k]
    rows, cols = np.unravel_index(flat, cm.shape)
    return [(classes[r], classes[c], int(cm[r, c])) for r, c in zip(rows, cols, strict=True)]


def predict(
    model: nn.Module,
    loader: DataLoader,
    *,
    tta: bool = False,
    device: torch.device | None = None,
    progress: bool = False,
) -> Evaluation:
    """Softmax outputs of ``model`` on every batch of ``loader`` (flip TTA if ``tta``).

    ``progress`` shows a bar per batch (the CLI's ``evaluate`` takes minutes on a CPU).
    Used in lessons 04 and 05.
    """
    device = device or default_device()
    model = prepare(model, device).eval()
    probs, labels = [], []
    desc = "flip TTA" if tta else "test images"
    batches = tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False)
    with torch.inference_mode(), autocast(device):
        for x, y in batches:
            x = to_device(x, device)
            p = model(x).float().softmax(1)
            if tta:
                p = (p + model(x.flip(3)).float().softmax(1)) / 2
            probs.append(p.cpu())
            labels.append(y)
    return Evaluation(torch.cat(probs).numpy(), torch.cat(labels).numpy(), tta)


def published_checkpoint(root: str | Path | None = None) -> Path:
    """Path (without suffix) of the committed final model, downloading it if it is absent.

    In a checkout the files are in ``data/checkpoints``; on Colab, where only the library is
    installed, they are fetched once from the repository (see ``links.raw_url``).

    Used in lessons 02, 04 and 05.
    """
    from .links import fetch_committed
    from .train import PUBLISHED_FOLDER, published_out

    path = published_out("dilated", root)
    for suffix in (".json", ".pt"):
        try:
            fetch_committed(f"data/{PUBLISHED_FOLDER}/{path.name}{suffix}", Path(f"{path}{suffix}"))
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{err}; train it with `make train ARGS=--publish`") from None
    return path


def eval_loader(
    images: np.ndarray,
    labels: np.ndarray,
    normalize: dict[str, list[float]],
    batch_size: int = 1000,
) -> DataLoader:
    """Test images through the test transform with the normalisation a checkpoint recorded.

    Used in lessons 04 and 05.
    """
    from .augment import eval_transforms
    from .data import AugmentedDataset

    transform = eval_transforms(normalize["mean"], normalize["std"])
    return DataLoader(AugmentedDataset(images, labels, transform), batch_size=batch_size)




def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load ``<path>.pt`` (a state_dict, read with ``weights_only=True``) and ``<path>.json``.

    ``path`` is the trainer's ``--out`` (or the path of one of the two files).
    Returns the model, built by ``build_model`` from the recorded config, and the record.
    Every way a checkpoint can be wrong raises one line that names the file.

    Used in lessons 02, 04 and 05.
    """
    from .models import build_model
    from .train import output_files, plan_record, read_state

    path = str(path)
    if path.endswith((".pt", ".json")) and Path(path).is_file():
        path = path.rsplit(".", 1)[0]  # named one of the two files instead of their stem
    files = output_files(path)
    weights, meta = files["weights"], files["record"]
    missing = [p.name for p in (weights, meta) if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"checkpoint incomplete: {', '.join(missing)} not found in '{weights.parent}'; "
            "train one with `make train` (or `python -m course_lib train`)"
        )
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
    recorded = record.get("plan")
    if recorded is not None and recorded != plan_record(model):
        raise ValueError(
            f"{meta.name} was trained with a different plan of {name!r} "
            "than the one course_lib builds now; retrain it with `make train`"
        )
    state = read_state(weights)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError):
        raise ValueError(
            f"'{weights}' does not hold weights of build_model({name!r}); "
            "use the .pt written together with its .json"
        ) from None
    return model.eval(), record
