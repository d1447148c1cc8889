"""Tests for course_lib.augment (lesson 03's #@save cells): the albumentations 2.0.8 pipelines,
CutOut and RICAP."""

import random
import warnings

import course_lib  # noqa: F401  (sets NO_ALBUMENTATIONS_UPDATE before albumentations loads)

# isort: split
import albumentations as A
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib.augment import (
    AugmentConfig,
    coarse_dropout,
    cutout_batch,
    eval_transforms,
    hole_fill,
    ricap_batch,
    ricap_loss,
    shift_scale_rotate_as_affine,
    train_transforms,
)

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
ONLY_HOLE = AugmentConfig(flip_p=0.0, affine_p=0.0, cutout_p=1.0)


def image_without_mean_colour(seed: int = 0) -> np.ndarray:
    """A random uint8 image none of whose channel values is within 2 of the hole colour."""
    img = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    fill = np.array(hole_fill(MEAN))
    near = np.abs(img.astype(int) - fill) <= 2
    return np.where(near, (fill + 64) % 256, img).astype(np.uint8)


def unnormalise(t: torch.Tensor) -> np.ndarray:
    """CHW normalised tensor back to the uint8 HWC image it came from."""
    x = t.numpy().transpose(1, 2, 0) * np.array(STD) + np.array(MEAN)
    return np.rint(x * 255).astype(np.uint8)


def apply_to_images(transform, images: np.ndarray, seed: int = 0) -> np.ndarray:
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return np.stack([transform(image=image)["image"] for image in images])


def hole_box(changed: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


# --- CoarseDropout: the assignment's one 16x16 hole -------------------------------------------


def test_coarse_dropout_hole_is_one_16x16_square_of_the_mean():
    pipeline = train_transforms(MEAN, STD, ONLY_HOLE, seed=0)
    img = image_without_mean_colour()
    tops, lefts = set(), set()
    for _ in range(100):
        out = unnormalise(pipeline(image=img)["image"])
        changed = (out != img).any(axis=2)
        top, bottom, left, right = hole_box(changed)
        # one solid square: its bounding box is 16x16 and every pixel in it changed
        assert (bottom - top, right - left) == (16, 16)
        assert changed.sum() == 16 * 16
        assert (out[changed] == hole_fill(MEAN)).all()
        tops.add(top)
        lefts.add(left)
    # albumentations 2.0.8 puts the hole wholly inside: its corner runs over 0..16, never clipped
    assert tops <= set(range(17)) and lefts <= set(range(17))
    assert {0, 16} <= tops | lefts


def test_hole_fill_is_the_rounded_mean_in_uint8_units():
    assert hole_fill(MEAN) == (125, 123, 114)  # 0.4914*255 = 125.3, 0.4822*255 = 122.96, ...


def test_coarse_dropout_alone_makes_the_same_hole_on_raw_uint8_images():
    img = image_without_mean_colour()
    out = coarse_dropout(MEAN)(image=img)["image"]
    changed = (out != img).any(axis=2)
    assert out.dtype == np.uint8 and changed.sum() == 256
    assert (out[changed] == (125, 123, 114)).all()


def test_pipeline_coarse_dropout_uses_2x_arguments_not_the_ignored_1x_ones():
    (dropout,) = [t for t in train_transforms(MEAN, STD) if isinstance(t, A.CoarseDropout)]
    assert dropout.num_holes_range == (1, 1)
    assert dropout.hole_height_range == (16, 16)
    assert dropout.hole_width_range == (16, 16)
    assert dropout.fill == (125, 123, 114)
    assert dropout.invalid_args == []

    # The classic silent bug: 2.0.8 drops 1.x names with only a warning and keeps its defaults.
    with pytest.warns(UserWarning, match="are not valid for transform CoarseDropout"):
        old = A.CoarseDropout(max_holes=1, max_height=16, max_width=16, fill_value=(125, 123, 114))
    assert old.invalid_args == ["max_holes", "max_height", "max_width", "fill_value"]
    assert (old.num_holes_range, old.hole_height_range, old.fill) == ((1, 2), (0.1, 0.2), 0.0)


def test_zero_to_one_mean_as_uint8_fill_gives_black_holes_so_we_reject_0_255_means():
    img = image_without_mean_colour()
    raw = A.Compose(
        [
            A.CoarseDropout(
                num_holes_range=(1, 1),
                hole_height_range=(16, 16),
                hole_width_range=(16, 16),
                fill=MEAN,
                p=1.0,
            )
        ],
        seed=0,
    )
    out = raw(image=img)["image"]
    assert out[(out != img).any(axis=2)].max() == 0  # 0.49 cast to uint8 is 0: a black hole

    # Our fill is derived from the 0-1 mean, so the only way to get it wrong is the wrong
    # units for mean, and those are refused.
    with pytest.raises(ValueError, match=r"mean is in 0-1 units \(channel_stats\), got \[125.3"):
        train_transforms((125.3, 123.0, 113.9), STD)


# --- the rest of the pipelines ----------------------------------------------------------------


def test_train_pipeline_gives_float32_chw_tensor():
    out = train_transforms(MEAN, STD, seed=0)(image=image_without_mean_colour())["image"]
    assert isinstance(out, torch.Tensor)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32


def test_test_pipeline_maps_a_mean_coloured_image_to_zero():
    img = np.full((32, 32, 3), hole_fill(MEAN), dtype=np.uint8)
    out = eval_transforms(MEAN, STD)(image=img)["image"]
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert out.abs().max() < 0.5 / 255 / min(STD)  # only the rounding to uint8 is left


def test_test_pipeline_divides_by_std():
    img = np.full((32, 32, 3), 255, dtype=np.uint8)
    out = eval_transforms(MEAN, STD)(image=img)["image"]
    expected = (1 - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(out[:, 0, 0].numpy(), expected, rtol=1e-5)


def test_affine_matches_shift_scale_rotate_with_reflect_101_exactly():
    ours = train_transforms(MEAN, STD, AugmentConfig(affine_p=1.0))[1]
    with pytest.warns(UserWarning, match="ShiftScaleRotate is a special case of Affine"):
        ssr = A.ShiftScaleRotate(
            shift_limit=0.0625,
            scale_limit=0.1,
            rotate_limit=15,
            border_mode=cv2.BORDER_REFLECT_101,
            p=1.0,
        )
    img = image_without_mean_colour()
    for seed in range(10):
        ours.set_random_seed(seed)
        ssr.set_random_seed(seed)
        assert np.array_equal(ours(image=img)["image"], ssr(image=img)["image"])
    assert ours.border_mode == cv2.BORDER_REFLECT_101


@pytest.mark.parametrize("border", [cv2.BORDER_CONSTANT, cv2.BORDER_REFLECT_101])
def test_shift_scale_rotate_as_affine_matches_shift_scale_rotate_for_either_border(border):
    cfg = AugmentConfig(shift=0.1, scale=0.2, rotate=30.0)
    ours = shift_scale_rotate_as_affine(cfg, border_mode=border)
    with pytest.warns(UserWarning, match="ShiftScaleRotate is a special case of Affine"):
        ssr = A.ShiftScaleRotate(
            shift_limit=0.1, scale_limit=0.2, rotate_limit=30, border_mode=border, p=1.0
        )
    img = image_without_mean_colour()
    for seed in range(5):
        ours.set_random_seed(seed)
        ssr.set_random_seed(seed)
        assert np.array_equal(ours(image=img)["image"], ssr(image=img)["image"])


def test_constant_border_fills_black_where_reflect_101_mirrors_the_image():
    img = np.full((32, 32, 3), 200, dtype=np.uint8)
    cfg = AugmentConfig(shift=0.0, scale=0.0, rotate=30.0)
    outs = {}
    for border in (cv2.BORDER_CONSTANT, cv2.BORDER_REFLECT_101):
        t = shift_scale_rotate_as_affine(cfg, border_mode=border)
        t.set_random_seed(1)
        outs[border] = t(image=img)["image"]
    assert outs[cv2.BORDER_CONSTANT][0, 0].tolist() == [0, 0, 0]  # a rotated corner is empty
    assert (outs[cv2.BORDER_REFLECT_101] == 200).all()


def test_pipeline_affine_is_shift_scale_rotate_as_affine_with_reflect_101():
    cfg = AugmentConfig(affine_p=0.3)
    ours = train_transforms(MEAN, STD, cfg)[1]
    helper = shift_scale_rotate_as_affine(cfg, p=0.3)
    assert repr(ours) == repr(helper)
    assert helper.border_mode == cv2.BORDER_REFLECT_101


def test_the_trainer_uses_augment_configs_defaults():
    # One source: what train.run builds from TrainConfig is AugmentConfig() itself, the
    # settings lesson 03 prints as the trainer's (lesson 06's final variant: test_ablations).
    from course_lib.train import TrainConfig

    assert AugmentConfig(cutout_p=TrainConfig().cutout_p) == AugmentConfig()


def disc_box_sides(images: np.ndarray) -> np.ndarray:
    """Height and width of the dark disc's bounding box in each image, (N, 2)."""
    sides = []
    for img in images:
        dark = img[..., 0] < 128
        rows, cols = np.flatnonzero(dark.any(1)), np.flatnonzero(dark.any(0))
        sides.append((rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))
    return np.array(sides)


def test_shift_scale_rotate_stretches_images_and_keep_ratio_keeps_a_disc_round():
    # 2.0.8's ShiftScaleRotate passes keep_ratio=False: x and y scales are drawn separately
    with pytest.warns(UserWarning, match="ShiftScaleRotate is a special case of Affine"):
        assert A.ShiftScaleRotate(scale_limit=0.3).keep_ratio is False
    disc = np.full((64, 64, 3), 255, np.uint8)
    cv2.circle(disc, (32, 32), 20, (0, 0, 0), -1)
    only_scale = AugmentConfig(shift=0.0, scale=0.3, rotate=0.0)
    discs = np.repeat(disc[None], 40, axis=0)
    for keep_ratio, lo, hi in ((False, 6, 99), (True, 0, 1)):
        out = apply_to_images(
            shift_scale_rotate_as_affine(only_scale, keep_ratio=keep_ratio), discs
        )
        h, w = disc_box_sides(out).T
        assert lo <= np.abs(h - w).max() <= hi, keep_ratio


def test_1x_always_apply_is_dropped_with_a_warning_and_p_stays():
    with pytest.warns(UserWarning, match="'always_apply' are not valid for transform"):
        flip = A.HorizontalFlip(always_apply=True, p=0.5)
    assert flip.p == 0.5 and flip.invalid_args == ["always_apply"]


def test_train_pipeline_builds_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_transforms(MEAN, STD, seed=0)


def test_same_seed_gives_the_same_sequence_of_outputs():
    img = image_without_mean_colour()
    a, b = train_transforms(MEAN, STD, seed=7), train_transforms(MEAN, STD, seed=7)
    outs_a = [a(image=img)["image"] for _ in range(12)]
    outs_b = [b(image=img)["image"] for _ in range(12)]
    assert all(torch.equal(x, y) for x, y in zip(outs_a, outs_b, strict=True))
    assert not all(torch.equal(outs_a[0], x) for x in outs_a[1:])  # still random call to call
    c = train_transforms(MEAN, STD, seed=8)
    assert not all(torch.equal(x, c(image=img)["image"]) for x in outs_a)


def applied(pipeline: A.Compose, img: np.ndarray) -> set[str]:
    pipeline.save_applied_params = True
    return {name for name, _ in pipeline(image=img)["applied_transforms"]}


def test_seeded_pipeline_does_not_tie_flip_and_hole_together():
    img = image_without_mean_colour()
    cfg = AugmentConfig(affine_p=0.0)

    def tied(names: set[str]) -> bool:
        return ("HorizontalFlip" in names) == ("CoarseDropout" in names)

    # albumentations 2.0.8: Compose(seed=s) seeds each transform with the same s, so on the
    # first image the flip and the hole are applied together or not at all, for every seed
    plain = [A.Compose([A.HorizontalFlip(), A.CoarseDropout()], seed=s) for s in range(40)]
    assert all(tied(applied(p, img)) for p in plain)
    ours = [train_transforms(MEAN, STD, cfg, seed=s) for s in range(40)]
    assert 8 <= sum(tied(applied(p, img)) for p in ours) <= 32


def test_probability_zero_disables_a_transform():
    off = AugmentConfig(flip_p=0.0, affine_p=0.0, cutout_p=0.0)
    img = image_without_mean_colour()
    out = train_transforms(MEAN, STD, off, seed=0)(image=img)["image"]
    assert np.array_equal(unnormalise(out), img)


# --- batch CutOut ----------------------------------------------------------------------------


def test_cutout_batch_cuts_one_square_per_image_clipped_only_at_borders():
    x = torch.ones(256, 3, 32, 32)
    out = cutout_batch(x, size=16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, torch.ones_like(x))  # input untouched
    holes = out == 0
    assert torch.equal(holes, holes[:, :1].expand_as(holes))  # same square in every channel
    clipped = 0
    for hole in holes[:, 0].numpy():
        top, bottom, left, right = hole_box(hole)
        assert hole.sum() == (bottom - top) * (right - left)  # one solid rectangle
        for lo, hi in ((top, bottom), (left, right)):
            assert hi - lo == 16 or lo == 0 or hi == 32  # shorter only where it meets a border
        clipped += (bottom - top, right - left) != (16, 16)
    assert clipped > 0  # the centre is uniform over the image, so some squares overhang


def test_cutout_batch_fills_with_the_given_value_and_repeats_with_a_seeded_generator():
    x = torch.randn(8, 3, 32, 32)
    a = cutout_batch(x, 8, torch.Generator().manual_seed(3), fill=-5.0)
    b = cutout_batch(x, 8, torch.Generator().manual_seed(3), fill=-5.0)
    assert torch.equal(a, b)
    assert ((a == -5.0).sum(dim=(1, 2, 3)) > 0).all()


# --- RICAP -----------------------------------------------------------------------------------


def test_ricap_tiles_four_crops_whose_areas_are_the_weights():
    n = 64
    x = torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(n, 3, 32, 32)
    y = torch.arange(n)  # image i is the constant i, and its label is i
    for seed in range(5):
        mixed, labels4, weights = ricap_batch(x, y, 0.3, torch.Generator().manual_seed(seed))
        assert mixed.shape == x.shape and labels4.shape == (n, 4) and weights.shape == (4,)
        assert torch.isclose(weights.sum(), torch.tensor(1.0))
        for img, labels in zip(mixed[:, 0], labels4, strict=True):
            if len(set(labels.tolist())) < 4:
                continue  # two quarters from the same image: areas merge
            area = torch.stack([(img == lab).float().mean() for lab in labels])
            assert torch.allclose(area, weights)


def test_ricap_loss_is_the_weighted_sum_of_cross_entropies():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)
    _, labels4, weights = ricap_batch(x, y, generator=g)
    logits = torch.randn(16, 10, generator=g)
    expected = sum(w * F.cross_entropy(logits, labels4[:, k]) for k, w in enumerate(weights))
    torch.testing.assert_close(ricap_loss(logits, labels4, weights), expected)


def test_ricap_repeats_with_a_seeded_generator():
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8)
    a = ricap_batch(x, y, generator=torch.Generator().manual_seed(1))
    b = ricap_batch(x, y, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_coarse_dropout_repeats_from_a_reseeded_stream_and_moves_the_hole_per_image():
    # lesson 03 compares transforms image by image after reseeding them this way
    imgs = np.stack([image_without_mean_colour(s) for s in range(6)])
    a, b = apply_to_images(coarse_dropout(MEAN), imgs), apply_to_images(coarse_dropout(MEAN), imgs)
    assert np.array_equal(a, b)
    holes = [(out != img).any(axis=2) for out, img in zip(a, imgs, strict=True)]
    assert all(h.sum() == 256 for h in holes) and len({h.tobytes() for h in holes}) > 1
