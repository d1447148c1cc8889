"""Grad-CAM (Selvaraju et al., 2017): where in the image a conv layer's evidence for a class lies.

The class score's gradient, averaged over a layer's map, weighs that layer's channels; the
ReLU of the weighted sum is the heatmap, one value per unit of that map. A unit is not a pixel:
it sits at the centre of its receptive field, ``start + i * jump`` (the receptive-field table of
lesson 02), and in the final model, whose trimming convs are unpadded, the last map's 8x8 units
sit on the middle 8x8 pixels of the image. ``unit_grid`` says where each unit goes, so a map is
drawn there and not stretched over the whole image.

Used in lesson 05.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .receptive_field import receptive_field_table


@dataclass(frozen=True)
class UnitGrid:
    """Where the units of a square layer's map sit on the input image, in pixel coordinates.

    Pixel ``k`` of the image is centred at ``k`` (as ``imshow`` draws it). Unit ``(i, j)`` of the
    ``size`` x ``size`` map is centred at ``first + i * jump`` down and ``first + j * jump``
    across; ``rf`` is the side of each unit's receptive field and ``image`` the side of the input.

    Used in lesson 05.
    """

    layer: str
    size: int
    first: float
    jump: int
    rf: int
    image: int

    def centre(self, i: int, j: int) -> tuple[float, float]:
        """(row, column) pixel coordinates of unit (i, j)'s field centre."""
        return self.first + i * self.jump, self.first + j * self.jump

    @property
    def last(self) -> float:
        """Pixel coordinate of the last unit's centre along either axis."""
        return self.first + (self.size - 1) * self.jump

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``imshow`` extent (left, right, bottom, top) that puts every unit on its centre:
        each unit fills a cell of side ``jump`` around it."""
        half = self.jump / 2
        lo, hi = self.first - half, self.last + half
        return (lo, hi, hi, lo)


def unit_grid(model: nn.Module, layer: nn.Module, input_size=(3, 32, 32)) -> UnitGrid:
    """The ``UnitGrid`` of ``layer``'s output map, read from the receptive-field table.

    ``layer`` is a submodule of ``model`` (``model.c4``); its geometry is that of the last
    spatial layer (conv or pooling) inside it. Square layers on a square input only.

    Used in lesson 05.
    """
    names = {id(module): name for name, module in model.named_modules()}
    name = names.get(id(layer))
    if not name:
        raise ValueError("unit_grid: layer must be a submodule of model (for example model.c4)")
    table = receptive_field_table(model, input_size)
    rows = [r for r in table if r.name == name or r.name.startswith(name + ".")]
    if not rows:
        raise ValueError(f"unit_grid: layer '{name}' has no conv or pooling layer inside it")
    row = rows[-1]
    h, w = input_size[-2:]
    if h != w:
        raise ValueError(f"unit_grid: layer '{name}' is not square on input {tuple(input_size)}")
    # The table's start counts pixel k as [k, k + 1); imshow centres pixel k at k.
    return UnitGrid(name, row.n_out, row.start - 0.5, row.j_out, row.r_out, h)


def grad_cam(
    model: nn.Module, x: torch.Tensor, layer: nn.Module, target: torch.Tensor | None = None
) -> torch.Tensor:
    """Heatmaps (N, h, w) in [0, 1] at the resolution of ``layer``'s map, on the CPU, for the
    classes ``target`` (default: the predicted ones).

    ``layer`` is the module whose output map is explained (its output must be (N, C, h, w)).
    Entry (i, j) belongs to unit (i, j), which ``unit_grid`` places on the image.

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

    # predict() may have moved the model to a GPU; the images follow it there.
    param = next(model.parameters(), None)
    if param is not None:
        x = x.to(param.device)
    if target is not None:
        target = target.to(x.device)
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
    cam = torch.relu((weights * fmap).sum(1)).detach().float().cpu()
    peak = cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    return cam / peak
