"""Where the units of a layer's map sit on the image: written in lesson 05, used by plots."""

from __future__ import annotations

from torch import nn

from .receptive_field import RFRow, receptive_field_table

# >>> written in the lessons' #@save cells: edit the lesson, then run `make export`


# from lessons/05_misclassification_analysis.ipynb


def unit_grid(model: nn.Module, layer: nn.Module, input_size=(3, 32, 32)) -> RFRow:
    """The receptive-field row of layer's output map: unit i sits at start - 0.5 + i * j_out."""
    name = next((n for n, module in model.named_modules() if module is layer and n), None)
    if name is None:
        raise ValueError("unit_grid: layer must be a submodule of model (for example model.c4)")
    table = receptive_field_table(model, input_size)
    rows = [row for row in table if f"{row.name}.".startswith(f"{name}.")]  # layer or inside
    if not rows:
        raise ValueError(f"unit_grid: layer '{name}' has no conv or pooling layer inside it")
    return rows[-1]


# <<< end of the lessons' code
