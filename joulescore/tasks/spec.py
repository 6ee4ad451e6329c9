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
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from joulescore.errors import BadInput, DatasetError
from joulescore.textfile import MAX_DEPTH, read_text, shape_problem


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class EncoderSpec(BaseModel):
    """How an encoder model (no text generation) runs the task, where it fits one.

    ``inputs`` are templates for the texts the encoder reads, one message each:
    two for ``similarity`` (cosine of their embeddings), one for ``classification``.
    """

    model_config = ConfigDict(extra="forbid")
    mode: Literal["similarity", "classification"]
    inputs: list[str]


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
    encoder: EncoderSpec | None = None
    #: what a prompt is: text, or one audio or image file per row (joulescore/tasks/media.py)
    inputs: Literal["text", "audio", "image"] = "text"

    def templates(self, for_encoder: bool = False) -> list[str]:
        if for_encoder:
            if self.encoder is None:
                raise BadInput(f"task {self.name!r} does not fit an encoder model")
            return list(self.encoder.inputs)
        return [m.content for m in self.messages]

    def template_fields(self, for_encoder: bool = False) -> list[str]:
        """Every ``{field}`` the templates read from a row; an unsafe template is a one-line error."""
        names: list[str] = []
        for text in self.templates(for_encoder):
            for name in template_fields(text):
                if name not in names:
                    names.append(name)
        return names

    def required_fields(self, for_encoder: bool = False) -> list[str]:
        own = self.template_fields(for_encoder)
        extra = [self.reference_field] if self.reference_field else []
        return own + [f for f in extra if f not in own]

    def render(self, row: dict[str, Any], for_encoder: bool = False) -> list[dict[str, str]]:
        """One row as chat messages; for an encoder, one user message per text it reads."""
        if for_encoder:
            return [{"role": "user", "content": t.format_map(row)} for t in self.templates(True)]
        return [{"role": m.role, "content": m.content.format_map(row)} for m in self.messages]


def template_fields(template: str) -> list[str]:
    """The row fields a template reads, in order; only plain ``{name}`` fields are allowed.

    A format spec or conversion (``{text:>999999999}``, ``{text!x}``) could crash or exhaust memory
    mid-run, and attribute or index access (``{a.b}``, ``{a[0]}``) reaches into row values; all are
    refused here, before any model loads.  ``{{`` and ``}}`` stay literal braces.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise BadInput(f"template is not valid ({exc}); write fields as {{name}}, braces as {{{{ }}}}") from None
    names: list[str] = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if not name:
            raise BadInput(f"template field {shown} has no name; write {{name}}, or {{{{ }}}} for a literal brace")
        if not name.isidentifier():
            raise BadInput(f"template field {shown} is not a plain field name: write {{name}}, "
                           f"without attribute, index or position")
        if conversion:
            raise BadInput(f"template field {shown}: conversions are not allowed; write {{{name}}}")
        if spec:
            raise BadInput(f"template field {shown}: format specs are not allowed; write {{{name}}}")
        names.append(name)
    return names


def custom_spec(base: TaskSpec, template: str, dataset: Path, metric: str | None = None,
                reference_field: str | None = None) -> TaskSpec:
    """A user's own task: one user message rendered from ``template``, scored by ``metric``."""
    from joulescore.tasks.metrics import METRICS

    chosen = metric or "length"
    if chosen not in METRICS:
        raise BadInput(f"unknown metric {chosen!r}; known metrics: {', '.join(METRICS)}")
    if chosen != "length" and not reference_field:
        raise BadInput(f"metric {chosen!r} needs --reference-field (the row field holding the answer)")
    spec = TaskSpec(name=f"custom:{dataset.name}", description=f"custom prompt set {dataset}",
                    dataset=str(dataset), messages=[Message(role="user", content=template)],
                    reference_field=reference_field, natural_max_new_tokens=base.natural_max_new_tokens,
                    metric=chosen)
    spec.template_fields()  # a malformed template is a one-line error before anything loads
    return spec


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
    return Path(str(resources.files(__package__).joinpath("data").joinpath(name)))


@cache
def task_names() -> tuple[str, ...]:
    return tuple(sorted(p.name[:-5] for p in _specs_dir().iterdir() if p.name.endswith(".yaml")))


def load_spec(name: str) -> TaskSpec:
    """The shipped spec for a task name, or a one-line error listing the known tasks."""
    if name not in task_names():
        raise BadInput(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")
    text = _specs_dir().joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    try:
        spec = TaskSpec.model_validate(yaml.safe_load(text))
    except ValidationError as exc:  # a shipped spec is broken: still one line
        raise BadInput(f"task spec {name}.yaml is invalid: {exc.errors()[0]['msg']}") from None
    from joulescore.tasks.metrics import METRICS

    if spec.metric not in METRICS:
        raise BadInput(f"task spec {name}.yaml names unknown metric {spec.metric!r}")
    return spec


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All rows of a JSONL file; a bad line is reported by its number."""
    if not path.expanduser().exists():
        raise DatasetError(f"dataset not found: {path}")
    text = read_text(path, "dataset", DatasetError)
    rows: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise DatasetError(f"{path}:{lineno}: nested too deep (over {MAX_DEPTH} levels)") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path}:{lineno}: expected a JSON object, got {_json_type(row)}")
        problem = shape_problem(row)
        if problem:
            raise DatasetError(f"{path}:{lineno}: {problem}")
        rows.append(row)
    if not rows:
        raise DatasetError(f"{path}: no rows (the file is empty or blank)")
    return rows


def render_prompts(spec: TaskSpec, rows: list[dict[str, Any]], source: Path,
                   for_encoder: bool = False) -> list[Prompt]:
    """Render every row through the spec's templates; check every row first."""
    required = spec.required_fields(for_encoder)
    bad = [(i + 1, [f for f in required if f not in row]) for i, row in enumerate(rows)]
    bad = [(n, missing) for n, missing in bad if missing]
    if bad:
        lines = ", ".join(f"{n} (missing {', '.join(m)})" for n, m in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise DatasetError(f"{source}: rows do not match the template's fields: line {lines}{more}")
    prompts = []
    for i, row in enumerate(rows):
        messages = spec.render(row, for_encoder)
        ref = row.get(spec.reference_field) if spec.reference_field else None
        prompts.append(Prompt(i, str(row.get(spec.id_field, i)), messages, ref, row))
    return prompts


def load_text_prompts(spec: TaskSpec, dataset: Path | None = None,
                      for_encoder: bool = False) -> tuple[list[Prompt], Path]:
    """A text task's prompts from its shipped set, or from a user's JSONL file."""
    path = dataset if dataset is not None else data_path(spec.dataset)
    return render_prompts(spec, read_jsonl(path), path, for_encoder), path
