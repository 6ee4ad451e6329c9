"""Tasks whose prompts are files: ``inputs: audio`` (asr) or ``inputs: image`` (image-classification).

A row names a file (``file``, relative to its JSONL's folder) and its
``reference``.  The rows come from the task's own data (asr: clips synthesised
on first use, see :mod:`joulescore.tasks.speech`) or from the user:
``--dataset FOLDER`` holding one JSONL file beside the files, or
``--dataset FILE.jsonl``.  The prompt's one message is the file's absolute path.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from joulescore.errors import DatasetError
from joulescore.tasks.spec import Prompt, TaskSpec, load_spec, read_jsonl, render_prompts, task_names

#: the task's shipped data: clips synthesised from the chat prompts' sentences
SPEECH_DATASET = "espeak:chat.jsonl"
#: a media task's default engine and model, when ``--backend`` is not given
DEFAULTS = {"audio": ("whisper", "whisper-tiny.en"), "image": ("vision", "efficientnet-lite0")}


def needs_data(spec: TaskSpec) -> str:
    """What a media task without shipped data needs, in one line."""
    return (f"task {spec.name} ships no labelled data: give --dataset FOLDER holding your {spec.inputs} files and "
            f"one JSONL file with a line per file, {{\"file\": \"NAME\", \"reference\": ...}}"
            + (" (reference: the ImageNet-1k class index, 0-999)" if spec.inputs == "image" else ""))


def find_jsonl(folder: Path) -> Path:
    """The one JSONL file in a dataset folder; none or several is a one-line error."""
    found = sorted(p for p in folder.iterdir() if p.suffix == ".jsonl" and p.is_file())
    if not found:
        raise DatasetError(f"--dataset {folder} holds no JSONL file: add one (e.g. data.jsonl) with a line per "
                           "file, {\"file\": \"NAME\", \"reference\": ...}")
    if len(found) > 1:
        raise DatasetError(f"--dataset {folder} holds {len(found)} JSONL files ({', '.join(p.name for p in found[:3])}"
                           "...): keep one, or give the file itself")
    return found[0]


def _class_index(value: Any) -> bool:
    """An ImageNet-1k class index, 0-999 (as a number or its digits)."""
    text = str(value).strip() if not isinstance(value, bool) else ""
    return text.isdigit() and int(text) < 1000


def user_rows(dataset: Path, inputs: str = "audio") -> tuple[list[dict[str, Any]], Path]:
    """A user's rows, each file made absolute against the JSONL's folder; an image's reference is a class index."""
    if not dataset.exists():
        raise DatasetError(f"dataset not found: {dataset}")
    path = find_jsonl(dataset) if dataset.is_dir() else dataset
    rows = read_jsonl(path)
    for n, row in enumerate(rows, start=1):
        name = row.get("file")
        if not isinstance(name, str) or not name:
            raise DatasetError(f"{path}:{n}: needs \"file\": the name of a file beside {path.name}")
        if inputs == "image" and "reference" in row and not _class_index(row["reference"]):
            raise DatasetError(f"{path}:{n}: \"reference\" must be an ImageNet-1k class index, 0-999; got "
                               f"{str(row['reference'])[:40]!r}")
        row["file"] = str((path.parent / name).resolve())
        row.setdefault("id", Path(name).name)
    return rows, path


def load_media_prompts(spec: TaskSpec, dataset: Path | None) -> tuple[list[Prompt], Path]:
    """The prompts of a media task: one per file, its message the file's absolute path."""
    if dataset is not None:
        rows, path = user_rows(dataset, spec.inputs)
    elif spec.dataset == SPEECH_DATASET:
        from joulescore.tasks.speech import clip_folder, shipped_rows

        rows, path = shipped_rows(), clip_folder()
    else:
        raise DatasetError(needs_data(spec))
    return render_prompts(spec, rows, path), path


def materialise(spec: TaskSpec, prompts: list[Prompt], dataset: Path | None) -> None:
    """Synthesise the shipped clips these prompts need (only those: a ``--limit 3`` run speaks 3)."""
    if spec.dataset == SPEECH_DATASET and dataset is None:
        from joulescore.tasks.speech import ensure_clips

        ensure_clips([p.row for p in prompts])



@cache
def _inputs_of(task: str) -> str:
    """A shipped task's inputs (text, audio, image), read once: every stored run's settings are checked for it."""
    return load_spec(task).inputs


def config_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A media task's run settings: its engine and model unless given, and no fixed-length protocol."""
    task = data.get("task")
    if not isinstance(task, str) or task not in task_names():
        return data
    inputs = _inputs_of(task)
    if inputs == "text":
        return data
    backend, model = DEFAULTS[inputs]
    data.setdefault("backend", backend)
    if data["backend"] == backend:
        data.setdefault("model", model)
    if data.get("protocol") == "energy-score":
        raise ValueError(f"task {task} has no fixed-length protocol (its answer is a transcript or a label): "
                         "drop --protocol energy-score")
    data["protocol"] = "natural"
    return data


def catalogue_row(spec: TaskSpec) -> dict[str, Any]:
    """``joulescore tasks``: a media task's line, saying plainly what data it needs."""
    backend, model = DEFAULTS[spec.inputs]
    if spec.dataset == SPEECH_DATASET:
        from joulescore.tasks.speech import FULL_SET

        dataset, count = "espeak-ng clips of chat.jsonl sentences (made on first use)", FULL_SET
    else:
        dataset, count = "none ships: --dataset FOLDER", 0
    return {"task": spec.name, "dataset": dataset, "prompts": count, "metric": spec.metric,
            "models": f"{spec.inputs}: --backend {backend} (default model {model})", "description": spec.description,
            "needs": None if count else needs_data(spec)}
