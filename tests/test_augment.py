"""Tests for course_lib.augment: the albumentations 2.0.8 pipelines, CutOut and RICAP."""

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
    affine_scales,
    apply_to_images,
    coarse_dropout_only,
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


def test_coarse_dropout_only_shows_the_same_hole_on_raw_uint8_images():
    img = image_without_mean_colour()
    out = coarse_dropout_only(MEAN, seed=0)(image=img)["image"]
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
    with pytest.raises(ValueError, match="mean looks like 0-255 units"):
        train_transforms((125.3, 123.0, 113.9), STD)
    with pytest.raises(ValueError, match="mean looks like 0-255 units"):
        coarse_dropout_only((125.3, 123.0, 113.9))


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


def test_affine_scales_are_the_draws_one_scale_with_keep_ratio_two_without():
    stretched = affine_scales(shift_scale_rotate_as_affine(), n=500, seed=0)
    single = affine_scales(shift_scale_rotate_as_affine(keep_ratio=True), n=500, seed=0)
    assert stretched.shape == single.shape == (500, 2)
    assert ((stretched >= 0.9) & (stretched <= 1.1)).all()
    assert np.array_equal(single[:, 0], single[:, 1])
    assert np.array_equal(stretched[:, 0], single[:, 0])  # same stream: only y differs
    ratio = stretched[:, 0] / stretched[:, 1]
    assert ratio.max() > 1.15 and ratio.min() < 1 / 1.15  # the limits are 1.1/0.9 and 0.9/1.1
    with pytest.raises(ValueError, match="transform must be an A.Affine, got HorizontalFlip"):
        affine_scales(A.HorizontalFlip())


def test_1x_always_apply_is_dropped_with_a_warning_and_p_stays():
    with pytest.warns(UserWarning, match="'always_apply' are not valid for transform"):
        flip = A.HorizontalFlip(always_apply=True, p=0.5)
    assert flip.p == 0.5 and flip.invalid_args == ["always_apply"]


def test_shift_scale_rotate_as_affine_refuses_a_bad_probability_with_a_message():
    with pytest.raises(ValueError, match=r"p is a probability in \[0, 1\], got 2"):
        shift_scale_rotate_as_affine(p=2)


def test_apply_to_images_repeats_with_a_seed_and_draws_per_image():
    imgs = np.stack([image_without_mean_colour(s) for s in range(6)])
    dropout = coarse_dropout_only(MEAN)
    a, b = apply_to_images(dropout, imgs, seed=0), apply_to_images(dropout, imgs, seed=0)
    assert a.shape == imgs.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    holes = [(out != img).any(axis=2) for out, img in zip(a, imgs, strict=True)]
    assert all(h.sum() == 256 for h in holes)
    assert len({h.tobytes() for h in holes}) > 1  # a new position for each image
    assert not np.array_equal(a, apply_to_images(dropout, imgs, seed=1))


def test_apply_to_images_refuses_a_non_transform_and_float_images_with_a_message():
    with pytest.raises(ValueError, match="must be an albumentations transform or Compose, got"):
        apply_to_images(lambda image: {"image": image}, np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"uint8 RGB image \(H, W, 3\).*got float64"):
        apply_to_images(A.HorizontalFlip(p=1.0), np.zeros((1, 32, 32, 3)))


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


@pytest.mark.parametrize(
    ("mean", "std", "message"),
    [
        ((0.5, 0.5), STD, r"mean needs 3 values \(R, G, B\), got 2"),
        (MEAN, (0.2, 0.2, 0.2, 0.2), r"std needs 3 values \(R, G, B\), got 4"),
        (MEAN, (0.25, 0.0, 0.26), r"std must be > 0 in every channel"),
        (MEAN, (63.0, 62.1, 66.7), r"std looks like 0-255 units"),
        ((-0.1, 0.5, 0.5), STD, r"mean must lie in \[0, 1\]"),
        ((float("nan"), 0.5, 0.5), STD, r"mean must be finite"),
    ],
)
def test_bad_mean_or_std_is_refused_with_a_message(mean, std, message):
    with pytest.raises(ValueError, match=message):
        train_transforms(mean, std)
    with pytest.raises(ValueError, match=message):
        eval_transforms(mean, std)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"flip_p": 1.5}, r"flip_p is a probability in \[0, 1\], got 1.5"),
        ({"cutout_p": -0.1}, r"cutout_p is a probability"),
        ({"hole": 16.0}, r"hole is a side in pixels, a positive int, got 16.0"),
        ({"scale": 1.0}, r"scale is a ± fraction in \[0, 1\)"),
        ({"rotate": -15}, r"rotate is a ± angle in degrees"),
        ({"shift": 2}, r"shift is a fraction of the side"),
    ],
)
def test_bad_config_is_refused_with_a_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AugmentConfig(**kwargs)


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


def test_cutout_batch_rejects_a_single_image_with_a_message():
    with pytest.raises(ValueError, match=r"batch \(N, C, H, W\), got shape \(3, 32, 32\)"):
        cutout_batch(torch.zeros(3, 32, 32))


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


def test_ricap_bad_inputs_are_refused_with_a_message():
    with pytest.raises(ValueError, match="beta must be > 0, got 0"):
        ricap_batch(torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.long), beta=0)
    with pytest.raises(ValueError, match=r"labels4 must be \(N, 4\) and weights \(4,\)"):
        ricap_loss(torch.zeros(2, 10), torch.zeros(2, dtype=torch.long), torch.ones(4))


RGB = np.full((32, 32, 3), 128, np.uint8)
BAD_IMAGES = {
    "float 0-1": (RGB / 255.0, r"got float64 \(32, 32, 3\) with values 0.502 to 0.502; scale 0-1"),
    "grayscale": (RGB[..., 0], r"got a grayscale \(32, 32\); repeat it to 3 channels"),
    "RGBA": (np.dstack([RGB, RGB[..., :1]]), r"got 4 channels \(32, 32, 4\) \(RGBA\?\)"),
    "channel-first": (
        RGB.transpose(2, 0, 1),
        r"got channel-first \(3, 32, 32\); use image.transpose",
    ),
    "8x8": (RGB[:8, :8], r"got 8x8: too small for the 16x16 hole"),
}


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_every_public_pipeline_refuses_what_is_not_uint8_rgb_32x32(name):
    image, message = BAD_IMAGES[name]
    pipelines = [
        train_transforms(MEAN, STD, seed=0),
        eval_transforms(MEAN, STD),
        coarse_dropout_only(MEAN, seed=0),
    ]
    for pipeline in pipelines:
        with pytest.raises(ValueError, match="expected a uint8 RGB image .*" + message):
            pipeline(image=image)
    if image.ndim == 3:
        with pytest.raises(ValueError, match=message):
            apply_to_images(A.HorizontalFlip(p=1.0), image[None])


def test_the_pipelines_still_take_a_cifar_sized_uint8_image():
    assert train_transforms(MEAN, STD, seed=0)(image=RGB)["image"].shape == (3, 32, 32)
