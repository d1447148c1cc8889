import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from course_lib.plots import plot_saliency
from course_lib.saliency import grad_cam, unit_grid


class LeftRight(nn.Module):
    """Channel 0 holds the left half of the image, channel 1 the right; class k = mean of channel k."""

    def __init__(self):
        super().__init__()
        self.features = nn.Identity()

    def forward(self, x):
        gray = x.mean(1, keepdim=True)
        left = torch.zeros_like(gray)
        left[..., : x.shape[-1] // 2] = 1
        f = self.features(torch.cat([gray * left, gray * (1 - left)], 1))
        return f.mean((2, 3))


def test_grad_cam_highlights_the_half_that_carries_the_class_evidence():
    model = LeftRight()
    x = torch.rand(2, 3, 8, 8) + 0.1
    cam = grad_cam(model, x, model.features, target=torch.tensor([0, 1]))
    assert cam.shape == (2, 8, 8) and float(cam.max()) == pytest.approx(1.0)
    assert cam[0, :, :3].mean() > cam[0, :, 5:].mean()
    assert cam[1, :, 5:].mean() > cam[1, :, :3].mean()


def test_grad_cam_restores_training_mode_and_works_on_the_course_model():
    from course_lib.models import build_model

    model = build_model("dilated").train()
    cam = grad_cam(model, torch.randn(2, 3, 32, 32), model.c3)
    assert model.training and cam.shape == (2, 16, 16)  # one value per unit of C3's map
    assert float(cam.min()) >= 0 and float(cam.max()) <= 1


def test_grad_cam_rejects_an_unbatched_image():
    with pytest.raises(ValueError, match=r"expects a batch \(N, C, H, W\)"):
        grad_cam(LeftRight(), torch.rand(3, 8, 8), nn.Identity())


# ---------------------------------------------------------------- where a map's units sit


def _gradient_centroid(model, layer, unit, images):
    """(row, column) centroid of |d unit / d input|, summed over channels, over a batch."""
    x = images.clone().requires_grad_()
    captured = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.setdefault("map", out))
    try:
        model.eval()(x)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(captured["map"][:, :, unit[0], unit[1]].sum(), x)
    weight = grad.abs().sum(1).mean(0).double()
    rows, cols = torch.meshgrid(
        *(torch.arange(s, dtype=torch.float64) for s in weight.shape), indexing="ij"
    )
    return float((weight * rows).sum() / weight.sum()), float((weight * cols).sum() / weight.sum())


def _drawn_centre(model, layer, unit):
    """Where plot_saliency draws unit (i, j) of the layer's map: read back from the figure."""
    grid = unit_grid(model, layer)
    fig = plot_saliency(
        np.zeros((1, 32, 32, 3), np.uint8), np.zeros((1, grid.size, grid.size)), grids=grid
    )
    left, right, bottom, top = fig.axes[1].images[1].get_extent()
    cell_x, cell_y = (right - left) / grid.size, (bottom - top) / grid.size
    return top + (unit[0] + 0.5) * cell_y, left + (unit[1] + 0.5) * cell_x


@pytest.fixture(scope="module")
def final_models():
    """The final model freshly initialised and, where the checkpoint is at hand, trained."""
    from course_lib.evaluate import load_checkpoint
    from course_lib.models import build_model
    from course_lib.train import published_out

    torch.manual_seed(0)
    models = {"random init": build_model("dilated")}
    path = published_out("dilated")
    if path.with_suffix(".pt").exists():
        models["published"] = load_checkpoint(path)[0]
    return models


@pytest.mark.parametrize("block", ["c2", "c3", "c4"])
def test_drawn_units_sit_on_the_centroid_of_their_input_gradient(final_models, block):
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    # Learned and random kernels are not symmetric, so the gradient leans a pixel or two off
    # the field's centre; a map stretched over the whole image misses corner units by ~10.
    tolerance = 2.5
    for name, model in final_models.items():
        layer = getattr(model, block)
        n = unit_grid(model, layer).size
        for unit in [(0, 0), (0, n - 1), (n - 1, 0), (n // 4, 3 * n // 4)]:
            measured = _gradient_centroid(model, layer, unit, images)
            drawn = _drawn_centre(model, layer, unit)
            plt.close("all")
            assert np.allclose(drawn, measured, atol=tolerance), (name, block, unit, measured)
            if unit == (0, 0):  # the old placement, which the test must be able to catch
                stretched = (0.5 * 32 / n - 0.5,) * 2
                assert not np.allclose(stretched, measured, atol=tolerance), (name, block)


def test_final_model_c4_units_sit_on_the_middle_pixels_the_trimming_convs_leave():
    from course_lib.models import NetPlan, build_model

    model = build_model("dilated")
    trimmed = sum(NetPlan().down_dilation)  # each unpadded dilated 3x3 conv trims d per side
    grid = unit_grid(model, model.c4)
    assert grid.size == 32 - 2 * trimmed and grid.jump == 1
    assert grid.centre(0, 0) == (trimmed, trimmed)
    assert grid.last == 31 - trimmed
    assert grid.extent == (trimmed - 0.5, 31.5 - trimmed, 31.5 - trimmed, trimmed - 0.5)


def test_unit_grid_rejects_a_module_outside_the_model():
    from course_lib.models import build_model

    with pytest.raises(ValueError, match="must be a submodule of model"):
        unit_grid(build_model("dilated"), nn.Conv2d(3, 3, 3))


def test_grad_cam_follows_a_model_on_another_device_and_returns_cpu_maps():
    model = LeftRight()
    cam = grad_cam(model, torch.rand(1, 3, 8, 8), model.features)
    assert cam.device.type == "cpu" and cam.shape == (1, 8, 8)
