"""Rules the code keeps: every silenced checker says why, and no module or function grows past a readable size."""

from __future__ import annotations

import ast
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


#: the most lines a module, and a function (its ``def`` to its last line, docstring included), may hold
MODULE_MAX_LINES = 400
FUNCTION_MAX_LINES = 60


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MODULE_MAX_LINES}
    assert not long, long


def long_functions(source: str, limit: int = FUNCTION_MAX_LINES) -> dict[str, int]:
    """Every function (nested ones and methods too) longer than ``limit`` lines, by name."""
    return {node.name: n for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and (n := (node.end_lineno or node.lineno) - node.lineno + 1) > limit}


def test_no_function_is_over_60_lines() -> None:
    long = {f"{p.relative_to(PACKAGE.parent)}:{name}": n for p in PACKAGE.rglob("*.py")
            for name, n in long_functions(p.read_text(encoding="utf-8")).items()}
    assert not long, long


def test_a_long_function_is_seen_inside_a_class() -> None:
    body = "\n".join(f"        x{i} = {i}" for i in range(FUNCTION_MAX_LINES))
    assert long_functions(f"class A:\n    def f(self) -> None:\n{body}\n") == {"f": FUNCTION_MAX_LINES + 1}
    assert long_functions("def g() -> None:\n    pass\n") == {}
