"""Rules the code keeps: every silenced checker says why, and no module grows past a readable size."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "joulescore"
SILENCER = re.compile(r"#\s*(type:\s*ignore(\[[^\]]*\])?|noqa(:\s*[A-Z0-9, ]+)?)(?P<rest>.*)$")


def test_every_type_ignore_and_noqa_gives_its_reason() -> None:
    bare = []
    for path in PACKAGE.rglob("*.py"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = SILENCER.search(line)
            if match and not re.search(r"[a-z]{3,}", match.group("rest")):
                bare.append(f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}")
    assert not bare, "a silenced check needs its reason beside it:\n" + "\n".join(bare)


def test_no_module_is_over_about_400_lines() -> None:
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert not long, long
