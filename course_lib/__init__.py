"""course_lib: the small library behind the *Advanced Convolutions on CIFAR-10* lessons.

Every lesson imports it and keeps its own cells short (after d2l). One concept per module:

- ``data``            CIFAR-10 loading (offline copy, cache, torchvision download), statistics, loaders
- ``augment``         the assignment's albumentations pipelines, batch CutOut and RICAP
- ``layers``          conv building blocks (depthwise- and spatial-separable, dilated, 1x1)
- ``models``          ``build_model("dilated" | "strided" | "maxpool")``
- ``receptive_field`` analytic and gradient-measured receptive fields
- ``train``           the one-cycle trainer: checkpoints, exact resume, runs/ by default
- ``grader``          every rule of the assignment measured on a model (``python -m course_lib check``)
- ``evaluate``        accuracy, confusion matrix, misclassified examples, flip TTA
- ``plots``           image grids, curves, confusion heatmaps
"""

import os

# albumentations checks PyPI for updates on import and prints to stderr; the course works offline.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
