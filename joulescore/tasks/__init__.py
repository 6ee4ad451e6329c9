"""Declarative tasks: specs, shipped prompt sets and metrics."""

from joulescore.tasks.metrics import Quality, Response, score
from joulescore.tasks.prompts import load_prompts
from joulescore.tasks.spec import Prompt, TaskSpec, load_spec, read_jsonl, task_names

__all__ = [
    "Prompt",
    "Quality",
    "Response",
    "TaskSpec",
    "load_prompts",
    "load_spec",
    "read_jsonl",
    "score",
    "task_names",
]
