"""Grad-CAM (Selvaraju et al., 2017): where in the image a conv layer's evidence for a class lies.

The class score's gradient, averaged over a layer's map, weighs that layer's channels; the
ReLU of the weighted sum, upsampled to the input, is the heatmap.

Used in lesson 05.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def grad_cam(
    model: nn.Module, x: torch.Tensor, layer: nn.Module, target: torch.Tensor | None = None
) -> torch.Tensor:
    """Heatmaps (N, H, W) in [0, 1] for the classes ``target`` (default: the predicted ones).

    ``layer`` is the module whose output map is explained (its output must be (N, C, h, w)).

    Used in lesson 05.
    """
    if x.ndim != 4:
        raise ValueError(f"grad_cam expects a batch (N, C, H, W), got shape {tuple(x.shape)}")
    captured: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        if not (isinstance(output, torch.Tensor) and output.ndim == 4):
            raise ValueError(
                f"grad_cam: the chosen layer outputs {type(output).__name__} "
                "rather than a (N, C, h, w) map"
            )
        output.retain_grad()
        captured["map"] = output

    was_training = model.training
    model.eval()
    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            # a grad-requiring input makes the map differentiable even in a parameter-free model
            logits = model(x.detach().float().requires_grad_())
            if "map" not in captured:
                raise ValueError("grad_cam: the chosen layer never ran in the forward pass")
            target = logits.argmax(1) if target is None else target
            logits.gather(1, target.view(-1, 1)).sum().backward()
    finally:
        handle.remove()
        model.train(was_training)
    fmap, grad = captured["map"], captured["map"].grad
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * fmap).sum(1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    return cam / peak
