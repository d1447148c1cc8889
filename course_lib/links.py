"""The repository's public address, and every link generated from it.

The address is not decided yet. It lives in ``REPOSITORY`` below and nowhere else: the
Colab badges and install cells of the lessons and the README's lesson table are generated
from it. To move the course, edit that one line, then run ``python -m course_lib.links``
to rewrite the generated cells (``tests/test_links.py`` fails until you do).

Used in every lesson (badge and setup cell).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

REPOSITORY = "advanced-convolutions/cifar10-course"  # GitHub "owner/name"
BRANCH = "main"

BADGE_MARKER = "<!-- colab-badge -->"
INSTALL_TAG = "colab-install"
REPO_ROOT = Path(__file__).resolve().parents[1]


def github_url() -> str:
    return f"https://github.com/{REPOSITORY}"


def colab_url(notebook: str) -> str:
    """Open-in-Colab address of ``lessons/<notebook>``.

    Used in every lesson.
    """
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/lessons/{notebook}"


FILES_URL_VAR = "COURSE_FILES_URL"  # another base address, e.g. file:///path/to/checkout


def raw_url(path: str) -> str:
    """Download address of a file committed to the repository (e.g. the trained checkpoint).

    ``$COURSE_FILES_URL`` replaces the GitHub address: ``make colab-check`` points it at the
    checkout, to run the lessons as Colab does without the network.
    """
    base = (
        os.environ.get(FILES_URL_VAR) or f"https://raw.githubusercontent.com/{REPOSITORY}/{BRANCH}"
    )
    return f"{base.rstrip('/')}/{path}"


def fetch_committed(path: str, target: str | Path) -> Path:
    """``target``, downloaded from the repository's ``path`` first if it is not there yet.

    Lets a lesson on Colab, where only the library is installed, read files committed to the
    repository (the trained checkpoint, the ablation results). A failed download leaves no
    partial file and raises ``FileNotFoundError`` naming the address.
    """
    import urllib.request

    target = Path(target)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    url = raw_url(path)
    try:
        urllib.request.urlretrieve(url, tmp)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise FileNotFoundError(
            f"{target} is missing and could not be downloaded from {url} ({err})"
        ) from None
    tmp.replace(target)
    return target


def badge_markdown(notebook: str) -> str:
    """The Open-in-Colab badge as Markdown, preceded by the marker that ``sync`` looks for."""
    image = "https://colab.research.google.com/assets/colab-badge.svg"
    return f"{BADGE_MARKER}\n[![Open In Colab]({image})]({colab_url(notebook)})"


def install_cell_source() -> str:
    """The first code cell of every lesson: installs the course on Colab, does nothing elsewhere."""
    return (
        "# Colab only: install the course library. Elsewhere this cell does nothing\n"
        "# (run `make lab` from the repository instead).\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        "    subprocess.run(\n"
        "        [\n"
        "            sys.executable,\n"
        '            "-m",\n'
        '            "pip",\n'
        '            "install",\n'
        '            "-q",\n'
        f'            "git+{github_url()}.git",\n'
        "        ],\n"
        "        check=True,\n"
        "    )"
    )


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def sync_notebook(path: Path) -> bool:
    """Rewrite the badge and the install cell of one notebook; True if anything changed."""
    nb = json.loads(path.read_text())
    changed = False
    for cell in nb["cells"]:
        src = _source(cell)
        if cell["cell_type"] == "markdown" and BADGE_MARKER in src:
            head, _, _ = src.partition(BADGE_MARKER)
            new = head + badge_markdown(path.name)
        elif cell["cell_type"] == "code" and INSTALL_TAG in cell.get("metadata", {}).get(
            "tags", []
        ):
            new = install_cell_source()
        else:
            continue
        if new != src:
            cell["source"] = new
            changed = True
    if changed:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return changed


def sync_readme(path: Path) -> bool:
    """Rewrite every Colab link in the README so it points at ``REPOSITORY``."""
    text = path.read_text()
    new = re.sub(
        r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/[^/\s)]+/lessons/",
        f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/lessons/",
        text,
    )
    if new != text:
        path.write_text(new)
    return new != text


def sync(root: Path = REPO_ROOT) -> list[Path]:
    """Regenerate every link in the lessons and the README; returns the files it changed."""
    changed = [p for p in sorted((root / "lessons").glob("*.ipynb")) if sync_notebook(p)]
    readme = root / "README.md"
    if readme.exists() and sync_readme(readme):
        changed.append(readme)
    return changed


if __name__ == "__main__":
    changed = sync(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT)
    print("\n".join(f"updated {p}" for p in changed) or "all links already point at " + REPOSITORY)
