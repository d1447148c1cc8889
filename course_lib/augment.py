"""Lesson 03's #@save cells: the assignment's albumentations 2.0.8 pipeline (uint8 HWC RGB
images) and batch CutOut and RICAP, which the trainer runs (lessons 04 and 06).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from albumentations.pytorch import ToTensorV2

# >>> written in the lessons' #@save cells: edit the lesson, then run `make export`


# from lessons/03_augmentation_gallery.ipynb


@dataclass(frozen=True)
class AugmentConfig:
    """The pipeline's settings, with units; the defaults are the trainer's (lessons 04, 06)."""

    flip_p: float = 0.5  # probability of a horizontal flip
    shift: float = 0.0625  # max shift, ± fraction of the side (2 px on 32 px)
    scale: float = 0.1  # max zoom, ± fraction (0.9-1.1), drawn per axis (pitfall 3)
    rotate: float = 15.0  # max rotation, ± degrees
    affine_p: float = 0.5  # probability of the shift-scale-rotate
    hole: int = 16  # CoarseDropout hole side, px (fixed by the assignment)
    cutout_p: float = 0.25  # probability of the hole


def shift_scale_rotate_as_affine(
    cfg: AugmentConfig = AugmentConfig(), border_mode: int = cv2.BORDER_REFLECT_101,
    p: float = 1.0, keep_ratio: bool = False,
) -> A.Affine:
    """ShiftScaleRotate as the ``A.Affine`` it is in albumentations 2.x, with 1.x's border."""
    return A.Affine(
        scale=(1 - cfg.scale, 1 + cfg.scale),
        translate_percent={"x": (-cfg.shift, cfg.shift), "y": (-cfg.shift, cfg.shift)},
        rotate=(-cfg.rotate, cfg.rotate),
        keep_ratio=keep_ratio,
        border_mode=border_mode,
        p=p,
    )


def hole_fill(mean: Sequence[float]) -> tuple[int, ...]:
    """CoarseDropout's fill on uint8 images: the 0-1 channel mean times 255, rounded."""
    if max(mean) > 1:
        raise ValueError(f"mean is in 0-1 units (channel_stats), got {np.round(mean, 3)}")
    return tuple(int(v) for v in np.rint(np.asarray(mean) * 255))


def coarse_dropout(mean: Sequence[float], cfg: AugmentConfig = AugmentConfig(), p: float = 1.0):
    """Exactly one ``cfg.hole`` x ``cfg.hole`` hole, filled with the mean (2.x argument names)."""
    hole = (cfg.hole, cfg.hole)
    return A.CoarseDropout(
        num_holes_range=(1, 1), hole_height_range=hole, hole_width_range=hole,
        fill=hole_fill(mean), p=p,
    )


def train_transforms(
    mean: Sequence[float], std: Sequence[float], cfg: AugmentConfig = AugmentConfig(),
    seed: int | None = None,
) -> A.Compose:
    """Flip, shift-scale-rotate, one mean-filled hole, Normalize (0-1 mean, std), ToTensorV2."""
    normalize = A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0)
    flip, hole = A.HorizontalFlip(p=cfg.flip_p), coarse_dropout(mean, cfg, p=cfg.cutout_p)
    affine = shift_scale_rotate_as_affine(cfg, p=cfg.affine_p)
    pipeline = A.Compose([flip, affine, hole, normalize, ToTensorV2()], seed=seed)
    if seed is not None:  # one stream for all, so the transforms' draws are independent
        pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return pipeline


def eval_transforms(mean: Sequence[float], std: Sequence[float]) -> A.Compose:
    """Normalize (0-1 mean, std) and ToTensorV2 only: test images are not augmented."""
    normalize = A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0)
    return A.Compose([normalize, ToTensorV2()])


def cutout_batch(
    x: torch.Tensor, size: int = 16, generator: torch.Generator | None = None, fill: float = 0.0
) -> torch.Tensor:
    """CutOut on a normalised batch (N, C, H, W): one ``size`` square per image, clipped."""
    n, _, h, w = x.shape
    on = generator.device if generator is not None else torch.device("cpu")
    cy = torch.randint(0, h, (n, 1), generator=generator, device=on)
    cx = torch.randint(0, w, (n, 1), generator=generator, device=on)
    rows, cols = torch.arange(h, device=on), torch.arange(w, device=on)
    in_rows = (rows >= cy - size // 2) & (rows < cy - size // 2 + size)  # (N, H)
    in_cols = (cols >= cx - size // 2) & (cols < cx - size // 2 + size)  # (N, W)
    mask = (in_rows[:, :, None] & in_cols[:, None, :])[:, None].to(x.device)
    return x.masked_fill(mask, fill)


def ricap_batch(x: torch.Tensor, y: torch.Tensor, beta: float = 0.3, generator=None):
    """RICAP: returns the mixed batch, the (N, 4) tile labels and the (4,) area weights."""
    n, _, height, width = x.shape
    on = generator.device if generator is not None else torch.device("cpu")
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator, device=on)))
    w, h = round(width * rng.beta(beta, beta)), round(height * rng.beta(beta, beta))
    crops, labels, weights = [], [], []
    for ch, cw in [(h, w), (h, width - w), (height - h, w), (height - h, width - w)]:
        perm = torch.randperm(n, generator=generator, device=on).to(x.device)
        top, left = (int(torch.randint(0, s + 1, (1,), generator=generator, device=on))
                     for s in (height - ch, width - cw))
        crops.append(x[perm, :, top : top + ch, left : left + cw])
        labels.append(y[perm])
        weights.append(ch * cw / (height * width))
    mixed = torch.cat([torch.cat(crops[:2], dim=3), torch.cat(crops[2:], dim=3)], dim=2)
    return mixed, torch.stack(labels, dim=1), torch.tensor(weights, device=x.device)


def ricap_loss(logits, labels4, weights, criterion=F.cross_entropy) -> torch.Tensor:
    """The area-weighted sum of ``criterion`` against each tile's labels."""
    return sum(weights[k] * criterion(logits, labels4[:, k]) for k in range(4))


# <<< end of the lessons' code
