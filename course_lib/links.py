"""The repository's address and every link made from it: each lesson's Colab badge and install
cell, the README's Colab links, and the download of committed files (lessons 02 and 04-06). After
editing ``REPOSITORY``, run ``python -m course_lib.links`` to rewrite the lessons and the README.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.request
from pathlib import Path

REPOSITORY, BRANCH = "advanced-convolutions/cifar10-course", "main"  # GitHub owner/name
REPO_ROOT = Path(__file__).resolve().parents[1]
FILES_URL_VAR = "COURSE_FILES_URL"  # replaces GitHub's address, e.g. file:///path/to/checkout
BADGE_MARKER, INSTALL_TAG = "<!-- colab-badge -->", "colab-install"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
COLAB_LESSONS = re.compile(r"https://colab\.research\.google\.com/github/[^\s)]+?/lessons/")


def colab_url(notebook: str) -> str:
    """Open-in-Colab address of ``lessons/<notebook>``."""
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/lessons/{notebook}"


def raw_url(path: str) -> str:
    """Download address of a file committed to the repository, from ``$COURSE_FILES_URL`` if
    set (``make colab-check`` points it at the checkout), else from GitHub."""
    github = f"https://raw.githubusercontent.com/{REPOSITORY}/{BRANCH}"
    return f"{(os.environ.get(FILES_URL_VAR) or github).rstrip('/')}/{path}"


def fetch_committed(path: str, target: str | Path) -> Path:
    """``target``, downloaded first from the repository's ``path`` if it is missing (on Colab
    only the library is installed). A failed download leaves no partial file."""
    target, url = Path(target), raw_url(path)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        try:
            urllib.request.urlretrieve(url, part)
        except OSError as err:
            part.unlink(missing_ok=True)
            message = f"{target} is missing and could not be downloaded from {url} ({err})"
            raise FileNotFoundError(message) from None
        part.replace(target)
    return target


def install_cell_source() -> str:
    """The install cell of every lesson: pip-installs the course on Colab, nothing elsewhere."""
    pip = ["sys.executable", '"-m"', '"pip"', '"install"', '"-q"']
    pip.append(f'"git+https://github.com/{REPOSITORY}.git"')
    return (
        "# Colab only: install the course library. Elsewhere this cell does nothing\n"
        "# (run `make lab` from the repository instead).\n"
        'import subprocess\nimport sys\n\nif "google.colab" in sys.modules:\n'
        "    subprocess.run(\n        [\n"
        + "".join(f"            {arg},\n" for arg in pip)
        + "        ],\n        check=True,\n    )"
    )


def _sync_notebook(path: Path) -> bool:
    nb, changed = json.loads(path.read_text()), False
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and BADGE_MARKER in src:
            badge = f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(path.name)})"
            new = f"{src.partition(BADGE_MARKER)[0]}{BADGE_MARKER}\n{badge}"
        else:
            new = install_cell_source() if INSTALL_TAG in cell["metadata"].get("tags", []) else src
        if new != src:
            cell["source"], changed = new, True
    if changed:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return changed


def sync(root: Path = REPO_ROOT) -> list[Path]:
    """Rewrite the badge and install cell of every lesson and the README's Colab links so that
    they point at ``REPOSITORY``; returns the files changed."""
    changed = [p for p in sorted((root / "lessons").glob("*.ipynb")) if _sync_notebook(p)]
    readme = root / "README.md"
    text = readme.read_text() if readme.exists() else ""
    if (new := COLAB_LESSONS.sub(colab_url(""), text)) != text:
        readme.write_text(new)
        changed.append(readme)
    return changed


if __name__ == "__main__":
    changed = sync(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT)
    print("\n".join(f"updated {p}" for p in changed) or "all links already point at " + REPOSITORY)
