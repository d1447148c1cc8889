"""The assignment's albumentations pipelines, and batch CutOut and RICAP for the ablation.

``AugmentConfig()`` holds the settings the trainer uses: the one source of every augmentation
setting, read by lesson 03, by ``course_lib.train`` (lesson 04) and by the ablations (lesson 06).
Per-image pipelines (albumentations 2.0.8) expect uint8 HWC RGB images; the batch
regularisers work on normalised float tensors (N, C, H, W). Used in lessons 03, 04 and 06.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from albumentations.pytorch import ToTensorV2


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation hyperparameters, with units; the defaults are what the trainer uses.

    The assignment names the three transforms and fixes the hole (one, 16x16 px, the dataset
    mean); it fixes no probability and no shift, scale or rotation range. Those are the
    course's choices, kept here and nowhere else. Used in lessons 03, 04 and 06.
    """

    flip_p: float = 0.5  # probability of a horizontal flip
    shift: float = 0.0625  # max shift, ± fraction of the side (2 px on 32 px)
    scale: float = 0.1  # max zoom, ± fraction (0.9-1.1), drawn per axis (see keep_ratio below)
    rotate: float = 15.0  # max rotation, ± degrees
    affine_p: float = 0.5  # probability of the shift-scale-rotate
    hole: int = 16  # CoarseDropout hole side, px
    cutout_p: float = 0.25  # probability of the hole (the course's choice, as for every p here)

    def __post_init__(self) -> None:
        for name in ("flip_p", "affine_p", "cutout_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}.")
        if not 0.0 <= self.shift <= 1.0:
            raise ValueError(f"shift is a fraction of the side in [0, 1], got {self.shift}.")
        if not 0.0 <= self.scale < 1.0:
            raise ValueError(f"scale is a ± fraction in [0, 1), got {self.scale}.")
        if self.rotate < 0:
            raise ValueError(f"rotate is a ± angle in degrees, >= 0, got {self.rotate}.")
        if not (isinstance(self.hole, int) and self.hole > 0):
            raise ValueError(f"hole is a side in pixels, a positive int, got {self.hole!r}.")


def _check_mean_std(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    mean_arr = np.asarray(mean, dtype=np.float64).ravel()
    std_arr = np.asarray(std, dtype=np.float64).ravel()
    for name, v in (("mean", mean_arr), ("std", std_arr)):
        if v.size != 3:
            raise ValueError(f"{name} needs 3 values (R, G, B), got {v.size}: {list(v)}.")
        if not np.isfinite(v).all():
            raise ValueError(f"{name} must be finite, got {list(v)}.")
    if mean_arr.max() > 1.0:
        raise ValueError(
            f"mean looks like 0-255 units, got {list(mean_arr)}; pass 0-1 values "
            "as channel_stats returns them (CIFAR-10: about 0.49, 0.48, 0.45)."
        )
    if mean_arr.min() < 0.0:
        raise ValueError(f"mean must lie in [0, 1] (0-1 units), got {list(mean_arr)}.")
    if std_arr.min() <= 0.0:
        raise ValueError(f"std must be > 0 in every channel, got {list(std_arr)}.")
    if std_arr.max() > 1.0:
        raise ValueError(
            f"std looks like 0-255 units, got {list(std_arr)}; pass 0-1 values "
            "as channel_stats returns them (CIFAR-10: about 0.25, 0.24, 0.26)."
        )
    return mean_arr, std_arr


def check_image(image) -> None:
    """Refuse anything but a uint8 RGB image (H, W, 3) of at least 32x32, saying what was given.

    albumentations accepts much more and silently gets it wrong: a 0-1 float image comes
    out nearly black after Normalize(max_pixel_value=255), channel-first or RGBA arrays come
    out with the wrong shape, and an 8x8 image cannot hold the 16x16 hole.
    """
    expected = "a uint8 RGB image (H, W, 3) of at least 32x32"
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected {expected}, got {type(image).__name__}")
    shape = tuple(image.shape)
    if image.dtype != np.uint8:
        values = f" with values {image.min():.3g} to {image.max():.3g}" if image.size else ""
        hint = (
            "; scale 0-1 floats by 255 and cast to uint8" if image.size and image.max() <= 1 else ""
        )
        raise ValueError(f"expected {expected}, got {image.dtype} {shape}{values}{hint}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        raise ValueError(f"expected {expected}, got a grayscale {shape}; repeat it to 3 channels")
    if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[2] not in (3, 4):
        raise ValueError(
            f"expected {expected}, got channel-first {shape}; use image.transpose(1, 2, 0)"
        )
    if image.ndim == 3 and image.shape[2] == 4:
        raise ValueError(f"expected {expected}, got 4 channels {shape} (RGBA?); use image[..., :3]")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected {expected}, got shape {shape}")
    if min(shape[:2]) < 32:
        raise ValueError(
            f"expected {expected}, got {shape[0]}x{shape[1]}: too small for the 16x16 hole"
        )


class CheckedCompose(A.Compose):
    """``A.Compose`` that runs ``check_image`` on its input first: the pipelines this module
    returns reject what albumentations would silently corrupt."""

    def __call__(self, *args, force_apply: bool = False, **data):
        if "image" in data:
            check_image(data["image"])
        return super().__call__(*args, force_apply=force_apply, **data)


def hole_fill(mean: Sequence[float]) -> tuple[int, int, int]:
    """The CoarseDropout fill for uint8 images: round(mean * 255) per channel.

    albumentations casts ``fill`` to the image dtype, so a 0-1 mean on uint8 becomes 0
    (black holes) and 122.96 is truncated to 122; rounding here makes the hole the mean.
    Used in lesson 03.
    """
    mean_arr, _ = _check_mean_std(mean, (1.0, 1.0, 1.0))
    return tuple(int(v) for v in np.rint(mean_arr * 255))


def coarse_dropout_only(
    mean: Sequence[float], cfg: AugmentConfig = AugmentConfig(), seed: int | None = None
) -> A.Compose:
    """Just the pipeline's CoarseDropout, always applied, to show the hole on raw uint8 images.

    Used in lesson 03.
    """
    return CheckedCompose([_coarse_dropout(mean, cfg, p=1.0)], seed=seed)


def _coarse_dropout(mean: Sequence[float], cfg: AugmentConfig, p: float) -> A.CoarseDropout:
    # 2.x names. The 1.x ones (max_holes, max_height, fill_value, ...) only raise a warning
    # and are dropped, leaving the defaults: 1-2 holes of 10-20 % of the side, filled black.
    return A.CoarseDropout(
        num_holes_range=(1, 1),
        hole_height_range=(cfg.hole, cfg.hole),
        hole_width_range=(cfg.hole, cfg.hole),
        fill=hole_fill(mean),
        p=p,
    )


def shift_scale_rotate_as_affine(
    cfg: AugmentConfig = AugmentConfig(),
    border_mode: int = cv2.BORDER_REFLECT_101,
    p: float = 1.0,
    keep_ratio: bool = False,
) -> A.Affine:
    """The assignment's ShiftScaleRotate, written as the ``A.Affine`` it is in albumentations 2.x.

    With the same seed it gives the same output as ``A.ShiftScaleRotate(shift_limit=cfg.shift,
    scale_limit=cfg.scale, rotate_limit=cfg.rotate, border_mode=border_mode)``, without that
    class's deprecation warning. ``border_mode`` defaults to reflect-101, the 1.x default;
    2.x changed it to a constant black border. ``keep_ratio=False`` is what 2.0.8's
    ShiftScaleRotate passes: the x and y scales are drawn independently, so images stretch.
    ``keep_ratio=True`` draws one scale for both axes, as 1.x's ShiftScaleRotate did; it
    consumes the same random draws, so with one seed only the y scale differs. Used in lesson 03.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p is a probability in [0, 1], got {p}.")
    # Affine instead of ShiftScaleRotate: in albumentations 2.x the latter is a deprecated
    # special case of Affine and warns. These are the arguments ShiftScaleRotate passes.
    return A.Affine(
        scale=(1 - cfg.scale, 1 + cfg.scale),
        translate_percent={"x": (-cfg.shift, cfg.shift), "y": (-cfg.shift, cfg.shift)},
        rotate=(-cfg.rotate, cfg.rotate),
        shear=(0, 0),
        interpolation=cv2.INTER_LINEAR,
        fit_output=False,
        keep_ratio=keep_ratio,
        rotate_method="largest_box",
        border_mode=border_mode,
        p=p,
    )


def affine_scales(transform: A.Affine, n: int = 1000, seed: int = 0) -> np.ndarray:
    """``n`` scale pairs (x, y) that ``transform`` draws, as an (n, 2) array.

    The draws are the transform's own (its parameter sampler, seeded from ``seed``), so
    ``scales[:, 0] / scales[:, 1]`` is the stretch it applies to the aspect ratio. Used in
    lesson 03.
    """
    if not isinstance(transform, A.Affine):
        raise ValueError(f"transform must be an A.Affine, got {type(transform).__name__}.")
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n is the number of draws, a positive int, got {n!r}.")
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
    shape = {"shape": (32, 32, 3)}
    draws = [transform.get_params_dependent_on_data(shape, {})["scale"] for _ in range(n)]
    return np.array([(s["x"], s["y"]) for s in draws])


def train_transforms(
    mean: Sequence[float],
    std: Sequence[float],
    cfg: AugmentConfig = AugmentConfig(),
    seed: int | None = None,
) -> A.Compose:
    """HorizontalFlip, shift-scale-rotate, one mean-filled hole, Normalize, ToTensorV2.

    ``mean`` and ``std`` are 0-1 per-channel values (``channel_stats``); images are uint8.
    The hole always lies wholly inside the image (albumentations 2.0.8 draws its corner so).
    With ``seed`` two pipelines give the same sequence of outputs. In DataLoader workers,
    ``make_loaders`` reseeds each worker's copy from the loader seed; without that every
    worker would repeat the same augmentations. Used in lessons 03, 04 and 06.
    """
    mean_arr, std_arr = _check_mean_std(mean, std)
    pipeline = CheckedCompose(
        [
            A.HorizontalFlip(p=cfg.flip_p),
            # ShiftScaleRotate as the Affine it is in 2.x, with the 1.x border (reflect-101)
            shift_scale_rotate_as_affine(cfg, p=cfg.affine_p),
            _coarse_dropout(mean_arr, cfg, p=cfg.cutout_p),
            A.Normalize(mean=tuple(mean_arr), std=tuple(std_arr), max_pixel_value=255.0),
            ToTensorV2(),
        ],
        seed=seed,
    )
    if seed is not None:
        # Compose(seed=s) seeds every transform with the same s, so their first draws agree
        # (flip and hole always come together on the first image); one shared stream fixes it.
        pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return pipeline


def apply_to_images(
    transform: A.BasicTransform | A.BaseCompose, images, seed: int = 0
) -> np.ndarray:
    """Run one albumentations transform (or a Compose) over uint8 HWC images; stack the outputs.

    The transform is given a fresh random stream from ``seed`` first (one stream shared by
    every transform in a Compose, as in ``train_transforms``). So the same seed repeats the
    same draws, and two transforms that draw the same parameters, such as ShiftScaleRotate and
    its Affine, can be compared image by image. Used in lesson 03.
    """
    if not isinstance(transform, A.BasicTransform | A.BaseCompose):
        raise ValueError(
            f"transform must be an albumentations transform or Compose, got {type(transform).__name__}."
        )
    x = np.asarray(images)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"images must be a non-empty batch (N, H, W, 3), got shape {x.shape}.")
    check_image(x[0])  # one array: its first image has the dtype and shape of all
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return np.stack([np.asarray(transform(image=img)["image"]) for img in x])


def eval_transforms(mean: Sequence[float], std: Sequence[float]) -> A.Compose:
    """Normalize (0-1 mean and std) and ToTensorV2, for uint8 test images.

    Used in lessons 03 and 04.
    """
    mean_arr, std_arr = _check_mean_std(mean, std)
    return CheckedCompose(
        [
            A.Normalize(mean=tuple(mean_arr), std=tuple(std_arr), max_pixel_value=255.0),
            ToTensorV2(),
        ]
    )


# pytest collects any function named test_* that a test module imports; this is not a test.


def _check_batch(x: torch.Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"x must be a batch (N, C, H, W), got shape {tuple(x.shape)}.")


def cutout_batch(
    x: torch.Tensor,
    size: int = 16,
    generator: torch.Generator | None = None,
    fill: float = 0.0,
) -> torch.Tensor:
    """CutOut (DeVries & Taylor, 2017) on a normalised batch: one ``size`` x ``size`` square each.

    Each square's centre is uniform over the image and the square is clipped at the borders,
    as in the paper (unlike CoarseDropout, whose hole always fits inside). ``fill=0`` is the
    dataset mean after Normalize. Returns a new tensor. Used in lesson 03 and by the trainer's
    ``batch_aug="cutout"`` (lesson 06).
    """
    _check_batch(x)
    if not (isinstance(size, int) and size > 0):
        raise ValueError(f"size is the square's side in pixels, a positive int, got {size!r}.")
    n, _, h, w = x.shape
    on = generator.device if generator is not None else torch.device("cpu")
    cy = torch.randint(0, h, (n, 1), generator=generator, device=on)
    cx = torch.randint(0, w, (n, 1), generator=generator, device=on)
    rows, cols = torch.arange(h, device=on), torch.arange(w, device=on)
    in_rows = (rows >= cy - size // 2) & (rows < cy - size // 2 + size)  # (N, H)
    in_cols = (cols >= cx - size // 2) & (cols < cx - size // 2 + size)  # (N, W)
    mask = (in_rows[:, :, None] & in_cols[:, None, :])[:, None].to(x.device)
    return x.masked_fill(mask, fill)


def ricap_batch(
    x: torch.Tensor,
    y: torch.Tensor,
    beta: float = 0.3,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RICAP (Takahashi et al., 2018): tile crops of four shuffled batches into each image.

    A boundary point (w, h) ~ W*Beta(beta, beta), H*Beta(beta, beta) splits every image into
    four rectangles; rectangle k is cut, at one random position, from the batch permuted by
    the k-th permutation. Returns the mixed images, the (N, 4) labels of the four sources and
    the (4,) area weights (they sum to 1), for ``ricap_loss``. Used in lesson 03 and by the
    trainer's ``batch_aug="ricap"`` (lesson 06).
    """
    _check_batch(x)
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}.")
    n, _, height, width = x.shape
    # torch's Beta takes no generator; a numpy one seeded from it keeps one source of randomness
    on = generator.device if generator is not None else torch.device("cpu")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=on))
    rng = np.random.default_rng(seed)
    w = int(round(width * rng.beta(beta, beta)))
    h = int(round(height * rng.beta(beta, beta)))
    sizes = [(h, w), (h, width - w), (height - h, w), (height - h, width - w)]

    crops, labels, weights = [], [], []
    for ch, cw in sizes:
        perm = torch.randperm(n, generator=generator, device=on).to(x.device)
        top = int(torch.randint(0, height - ch + 1, (1,), generator=generator, device=on))
        left = int(torch.randint(0, width - cw + 1, (1,), generator=generator, device=on))
        crops.append(x[perm, :, top : top + ch, left : left + cw])
        labels.append(y[perm])
        weights.append(ch * cw / (height * width))
    mixed = torch.cat(
        [torch.cat(crops[:2], dim=3), torch.cat(crops[2:], dim=3)],
        dim=2,
    )
    return mixed, torch.stack(labels, dim=1), torch.tensor(weights, device=x.device)


def ricap_loss(
    logits: torch.Tensor,
    labels4: torch.Tensor,
    weights: torch.Tensor,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> torch.Tensor:
    """The area-weighted sum of ``criterion`` against each of the four source labels.

    Used by the trainer's ``batch_aug="ricap"`` (lesson 06); lesson 03 describes it.
    """
    if labels4.ndim != 2 or labels4.shape[1] != 4 or weights.shape != (4,):
        raise ValueError(
            f"labels4 must be (N, 4) and weights (4,), got {tuple(labels4.shape)} and "
            f"{tuple(weights.shape)}; pass what ricap_batch returns."
        )
    return sum(weights[k] * criterion(logits, labels4[:, k]) for k in range(4))
