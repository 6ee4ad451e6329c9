"""Tasks are data: a YAML spec names the prompt set, the prompt template and the metric.

A spec is validated with pydantic; the prompt set is JSONL, shipped in
``data/`` (see ``data/SOURCES.md`` for each set's licence and citation) or
given by the user.  Every row is checked against the template's fields before
any measurement starts, so a malformed set never produces a half run.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from joulescore.errors import BadInput, DatasetError


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class TaskSpec(BaseModel):
    """One task, as declared in ``specs/NAME.yaml``."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    dataset: str
    id_field: str = "id"
    messages: list[Message]
    reference_field: str | None = None
    natural_max_new_tokens: int = 512
    metric: str = "length"

    def template_fields(self) -> list[str]:
        """Every ``{field}`` the message templates read from a row."""
        names: list[str] = []
        for msg in self.messages:
            for _, name, _, _ in string.Formatter().parse(msg.content):
                if name and name not in names:
                    names.append(name)
        return names

    def required_fields(self) -> list[str]:
        extra = [self.reference_field] if self.reference_field else []
        return self.template_fields() + [f for f in extra if f not in self.template_fields()]


@dataclass(frozen=True)
class Prompt:
    """One row of a prompt set, rendered into chat messages."""

    index: int
    id: str
    messages: list[dict[str, str]]
    reference: Any = None
    row: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _specs_dir() -> Any:
    return resources.files(__package__).joinpath("specs")


def data_path(name: str) -> Path:
    """A shipped prompt set's path inside the package."""
    return Path(str(resources.files(__package__).joinpath("data", name)))


@lru_cache(maxsize=None)
def task_names() -> tuple[str, ...]:
    return tuple(sorted(p.name[:-5] for p in _specs_dir().iterdir() if p.name.endswith(".yaml")))


def load_spec(name: str) -> TaskSpec:
    """The shipped spec for a task name, or a one-line error listing the known tasks."""
    if name not in task_names():
        raise BadInput(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")
    text = _specs_dir().joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    try:
        return TaskSpec.model_validate(yaml.safe_load(text))
    except ValidationError as exc:  # a shipped spec is broken: still one line
        raise BadInput(f"task spec {name}.yaml is invalid: {exc.errors()[0]['msg']}") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All rows of a JSONL file; a bad line is reported by its number."""
    if not path.is_file():
        raise DatasetError(f"dataset not found: {path}")
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return rows


def render_prompts(spec: TaskSpec, rows: list[dict[str, Any]], source: Path) -> list[Prompt]:
    """Render every row through the spec's templates; check every row first."""
    required = spec.required_fields()
    bad = [(i + 1, [f for f in required if f not in row]) for i, row in enumerate(rows)]
    bad = [(n, missing) for n, missing in bad if missing]
    if bad:
        lines = ", ".join(f"{n} (missing {', '.join(m)})" for n, m in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise DatasetError(f"{source}: rows do not match the template's fields: line {lines}{more}")
    prompts = []
    for i, row in enumerate(rows):
        messages = [{"role": m.role, "content": m.content.format_map(row)} for m in spec.messages]
        ref = row.get(spec.reference_field) if spec.reference_field else None
        prompts.append(Prompt(i, str(row.get(spec.id_field, i)), messages, ref, row))
    return prompts


def load_prompts(spec: TaskSpec, dataset: Path | None = None) -> tuple[list[Prompt], Path]:
    """The task's prompts from its shipped set, or from a user's JSONL file."""
    path = dataset if dataset is not None else data_path(spec.dataset)
    return render_prompts(spec, read_jsonl(path), path), path
