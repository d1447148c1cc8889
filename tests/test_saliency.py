import pytest
import torch
from torch import nn

from course_lib.saliency import grad_cam


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
    assert model.training and cam.shape == (2, 32, 32)
    assert float(cam.min()) >= 0 and float(cam.max()) <= 1


def test_grad_cam_rejects_an_unbatched_image():
    with pytest.raises(ValueError, match=r"expects a batch \(N, C, H, W\)"):
        grad_cam(LeftRight(), torch.rand(3, 8, 8), nn.Identity())
