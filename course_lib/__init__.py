"""course_lib: the library behind the *Advanced Convolutions on CIFAR-10* lessons (after d2l).

Its functions are of two kinds: the code of an idea, written and explained in a lesson's
``#@save`` cells and exported here for later lessons, the CLI and the benchmarks; and plumbing
that no lesson teaches (data loading and caching, checkpoints, device and precision, figures,
widgets, links, the grader).
"""

import os

# albumentations checks PyPI for updates on import and prints to stderr; the course works offline.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
