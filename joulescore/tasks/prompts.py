"""A task's prompts, whatever they are (text rendered from JSONL rows, or one file each), and the catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from joulescore.tasks.media import catalogue_row, load_media_prompts
from joulescore.tasks.spec import Prompt, TaskSpec, data_path, load_spec, load_text_prompts, task_names


def load_prompts(spec: TaskSpec, dataset: Path | None = None,
                 for_encoder: bool = False) -> tuple[list[Prompt], Path]:
    """The task's prompts from its shipped set, or from a user's JSONL file (a media task: also a folder)."""
    if spec.inputs != "text":
        return load_media_prompts(spec, dataset)
    return load_text_prompts(spec, dataset, for_encoder)


def task_catalogue() -> list[dict[str, Any]]:
    """Every shipped task: its prompt set, how many prompts, its metric and which models fit."""
    rows = []
    for name in task_names():
        spec = load_spec(name)
        if spec.inputs != "text":
            rows.append(catalogue_row(spec))
            continue
        path = data_path(spec.dataset)
        count = sum(1 for line in path.open(encoding="utf-8") if line.strip()) if path.exists() else 0
        fits = "generative (llama.cpp)"
        if spec.encoder is not None:
            fits += ", encoder: " + ("embedding model, e.g. minilm-l6" if spec.encoder.mode == "similarity"
                                     else "sequence classifier folder (none ships offline)")
        rows.append({"task": name, "dataset": spec.dataset, "prompts": count, "metric": spec.metric,
                     "models": fits, "description": spec.description})
    return rows
