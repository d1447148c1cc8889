import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from course_lib.plots import plot_saliency
from course_lib.saliency import unit_grid

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
    n = unit_grid(model, layer).n_out
    maps, grids = {"cam": np.zeros((1, n, n))}, {"cam": unit_grid(model, layer)}
    fig = plot_saliency(np.zeros((1, 32, 32, 3), np.uint8), maps, grids)
    left, right, bottom, top = fig.axes[1].images[1].get_extent()
    cell_x, cell_y = (right - left) / n, (bottom - top) / n
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
        n = unit_grid(model, layer).n_out
        for unit in [(0, 0), (0, n - 1), (n - 1, 0), (n // 4, 3 * n // 4)]:
            measured = _gradient_centroid(model, layer, unit, images)
            drawn = _drawn_centre(model, layer, unit)
            plt.close("all")
            assert np.allclose(drawn, measured, atol=tolerance), (name, block, unit, measured)
            if unit == (0, 0):  # where a resize would put it: the test must be able to tell
                stretched = (0.5 * 32 / n - 0.5,) * 2
                assert not np.allclose(stretched, measured, atol=tolerance), (name, block)


def test_final_model_c4_units_sit_on_the_middle_pixels_the_trimming_convs_leave():
    from course_lib.models import NetPlan, build_model

    model = build_model("dilated")
    trimmed = sum(NetPlan().down_dilation)  # each unpadded dilated 3x3 conv trims d per side
    grid = unit_grid(model, model.c4)
    assert grid.n_out == 32 - 2 * trimmed and grid.j_out == 1
    assert grid.start - 0.5 == trimmed  # unit 0's centre, in imshow's pixel coordinates
    n = grid.n_out
    fig = plot_saliency(
        np.zeros((1, 32, 32, 3), np.uint8), {"C4": np.zeros((1, n, n))}, {"C4": grid}
    )
    extent = tuple(fig.axes[1].images[1].get_extent())
    assert extent == (trimmed - 0.5, 31.5 - trimmed, 31.5 - trimmed, trimmed - 0.5)


def test_unit_grid_rejects_a_module_outside_the_model_or_without_a_spatial_layer():
    from course_lib.models import build_model

    model = build_model("dilated")
    with pytest.raises(ValueError, match="must be a submodule of model"):
        unit_grid(model, nn.Conv2d(3, 3, 3))
    with pytest.raises(ValueError, match="has no conv or pooling layer inside it"):
        unit_grid(model, next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d)))
