"""docs/extending.md stays true: every file its recipes name exists, and each recipe counts the files it names."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "extending.md"
PATH = re.compile(r"`((?:joulescore|tests|docs)/[^`\s]*)`")
#: a file the recipe touches: marked **new** (added) or **edit** (changed); other paths are to read
TOUCHED = re.compile(r"\*\*(?:new|edit)\*\* `([^`]+)`")


def recipes() -> dict[str, str]:
    """Each ``## N. title`` section's text, by title."""
    parts = re.split(r"^## \d+\. (.+)$", DOC.read_text(encoding="utf-8"), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_the_four_recipes_are_there() -> None:
    assert list(recipes()) == ["A new meter", "A new engine", "A new task or metric", "A new field in the run record"]


def test_every_file_a_recipe_names_exists() -> None:
    missing = []
    for title, text in recipes().items():
        for path in PATH.findall(text):
            # a file to add is named by a placeholder: the folder it goes into must exist
            target = ROOT / path.split("<")[0] if "<" in path else ROOT / path
            if not (target.parent if "<" in path else target).exists():
                missing.append(f"{title}: {path}")
    assert not missing, missing


def test_each_recipe_counts_the_files_it_touches() -> None:
    for title, text in recipes().items():
        stated = re.search(r"Touches (\d+) files", text)
        assert stated is not None, title
        touched = set(TOUCHED.findall(text))
        assert int(stated.group(1)) == len(touched), (title, sorted(touched))
