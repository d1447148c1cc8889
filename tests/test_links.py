import json

import pytest

from course_lib import links


def test_every_link_is_generated_from_the_one_repository_constant(tmp_path):
    links.REPOSITORY  # noqa: B018 - the single source of truth
    assert links.colab_url("01_x.ipynb").startswith(
        f"https://colab.research.google.com/github/{links.REPOSITORY}/blob/"
    )
    assert f"git+https://github.com/{links.REPOSITORY}.git" in links.install_cell_source()


def test_sync_rewrites_a_stale_badge_install_cell_and_readme_link(tmp_path):
    nb = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": "<!-- colab-badge -->\n[old](x)"},
            {
                "cell_type": "code",
                "metadata": {"tags": ["colab-install"]},
                "source": "old",
                "outputs": [],
                "execution_count": None,
            },
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (tmp_path / "lessons").mkdir()
    path = tmp_path / "lessons" / "01_x.ipynb"
    path.write_text(json.dumps(nb))
    old = "https://colab.research.google.com/github/old/place/blob/dev/lessons/01_x.ipynb"
    (tmp_path / "README.md").write_text(f"| 01 | [![Open In Colab](badge.svg)]({old}) |\n")
    assert links.sync(tmp_path) == [path, tmp_path / "README.md"]
    cells = json.loads(path.read_text())["cells"]
    assert cells[0]["source"].endswith(f"({links.colab_url('01_x.ipynb')})")
    assert cells[1]["source"] == links.install_cell_source()
    readme = (tmp_path / "README.md").read_text()
    assert readme == f"| 01 | [![Open In Colab](badge.svg)]({links.colab_url('01_x.ipynb')}) |\n"
    assert links.sync(tmp_path) == []


def test_committed_lessons_and_readme_match_the_constant():
    """Fails after REPOSITORY is edited until `python -m course_lib.links` is run."""
    stale = []
    for nb in sorted((links.REPO_ROOT / "lessons").glob("*.ipynb")):
        text = nb.read_text()
        data = json.loads(text)
        badge = [c for c in data["cells"] if links.BADGE_MARKER in "".join(c["source"])]
        install = [c for c in data["cells"] if links.INSTALL_TAG in c["metadata"].get("tags", [])]
        if len(badge) != 1 or len(install) != 1:
            stale.append(f"{nb.name}: needs one badge cell and one install cell")
        elif (
            links.colab_url(nb.name) not in "".join(badge[0]["source"])
            or "".join(install[0]["source"]) != links.install_cell_source()
        ):
            stale.append(nb.name)
    readme = (links.REPO_ROOT / "README.md").read_text()
    if "colab.research.google.com/github/" in readme and links.colab_url("") not in readme:
        stale.append("README.md")
    assert not stale, f"run `python -m course_lib.links` to regenerate links in: {stale}"


def test_committed_files_come_from_github_or_from_the_address_in_course_files_url(
    tmp_path, monkeypatch
):
    monkeypatch.delenv(links.FILES_URL_VAR, raising=False)
    assert links.raw_url("data/x.json").startswith("https://raw.githubusercontent.com/")
    (tmp_path / "data").mkdir()
    (tmp_path / "data/x.json").write_text("{}")
    monkeypatch.setenv(links.FILES_URL_VAR, (tmp_path).as_uri())
    target = links.fetch_committed("data/x.json", tmp_path / "copy/x.json")
    assert target.read_text() == "{}"
    with pytest.raises(FileNotFoundError, match="data/missing.json"):
        links.fetch_committed("data/missing.json", tmp_path / "copy/missing.json")
    assert not (tmp_path / "copy/missing.json").exists()
