"""Counting a model's convs: each conv with its shapes, parameters and multiply-adds.

Written in lesson 01 (which counts the final model's conv kinds); lesson 02 compares the cost
of its networks with it.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import nn

from .models import summary

# >>> written in the lessons' #@save cells: edit the lesson, then run `make export`


# from lessons/01_convolution_types.ipynb


class ConvLayer(NamedTuple):
    """One conv of a model, with what torchinfo measured on one image."""

    name: str
    conv: nn.Conv2d
    input_shape: tuple[int, ...]  # (channels, height, width)
    output_shape: tuple[int, ...]
    params: int
    mult_adds: int


def conv_layers(model, input_size=(3, 32, 32)):
    """Every conv of ``model`` in the order ``forward`` runs it. Used in lessons 01 and 04."""
    names = {module: name for name, module in model.named_modules()}
    found = summary(model, input_size, depth=99).summary_list
    return [
        ConvLayer(names[layer.module], layer.module, tuple(layer.input_size[1:]),
                  tuple(layer.output_size[1:]), layer.num_params, layer.macs)
        for layer in found
        if isinstance(layer.module, nn.Conv2d | nn.ConvTranspose2d)
    ]


# <<< end of the lessons' code
