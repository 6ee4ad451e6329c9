"""The ``asr`` task's clips: sentences of the shipped chat prompts, spoken by espeak-ng into the cache.

No public speech set ships offline, so the clips are synthesised on first use
(only those a run needs) from the first 1,000 sentences of ``chat.jsonl``
(Apache-2.0) that read as plain speech: 6 to 20 words, letters and ``,'-``
only, ending in ``.``, ``?`` or ``!``.  The sentence is the reference
transcript.  Each clip's sha256 is kept in the cache's manifest and checked on
every use; a clip that does not match is made again.  Synthetic speech is far
easier than real speech (one clean voice, no noise, no accents): a WER here says
how well a model hears espeak-ng, not people.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from joulescore.errors import DatasetError
from joulescore.tasks.spec import data_path, read_jsonl

#: the shipped set the sentences come from, and how many clips the full task has
SOURCE = "chat.jsonl"
FULL_SET = 1000
#: espeak-ng's voice settings: American English, 160 words per minute, pitch 50, amplitude 100 (22,050 Hz WAV)
VOICE = ("-v", "en-us", "-s", "160", "-p", "50", "-a", "100")
_PLAIN = re.compile(r"^[A-Z][A-Za-z ,'\-]*[A-Za-z][.?!]$")
_SPLIT = re.compile(r"(?<=[.!?])\s+")


def cache_root() -> Path:
    """``$JOULESCORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/joulescore`` (as the ONNX export cache)."""
    own = os.environ.get("JOULESCORE_CACHE_DIR")
    if own:
        return Path(own).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "joulescore"


def sentences(limit: int = FULL_SET) -> list[dict[str, str]]:
    """The first ``limit`` plain sentences of the chat prompts, in file order, each once (case-insensitive)."""
    seen: set[str] = set()
    out: list[dict[str, str]] = []
    for row in read_jsonl(data_path(SOURCE)):
        for text in _SPLIT.split(" ".join(str(row.get("prompt", "")).split())):
            if 6 <= len(text.split()) <= 20 and _PLAIN.match(text) and text.lower() not in seen:
                seen.add(text.lower())
                out.append({"id": f"speech-{len(out):04d}", "text": text, "source_id": str(row.get("id"))})
                if len(out) == limit:
                    return out
    return out


def espeak() -> str:
    found = shutil.which("espeak-ng")
    if found is None:
        raise DatasetError("task asr synthesises its clips with espeak-ng, which is not installed: "
                           "apt-get install espeak-ng (or give your own clips with --dataset FOLDER)")
    return found


def clip_folder() -> Path:
    """One folder per voice setting and espeak-ng version, so a change never mixes clips."""
    version = subprocess.run([espeak(), "--version"], capture_output=True, text=True, check=False).stdout.strip()
    key = hashlib.sha256(json.dumps([VOICE, version]).encode()).hexdigest()[:16]
    return cache_root() / "speech" / f"espeak-{key}"


def shipped_rows() -> list[dict[str, Any]]:
    """The task's rows: file (in the cache, made when a run needs it), reference text, its source prompt."""
    folder = clip_folder()
    return [{"id": s["id"], "file": str(folder / f"{s['id']}.wav"), "reference": s["text"],
             "source_id": s["source_id"]} for s in sentences()]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _speak(text: str, target: Path) -> None:
    part = target.with_suffix(f".{os.getpid()}.part")  # two runs making the same clip never share a file
    done = subprocess.run([espeak(), *VOICE, "-w", str(part), text], capture_output=True, text=True, check=False)
    if done.returncode != 0 or not part.is_file():
        raise DatasetError(f"espeak-ng could not speak clip {target.name}: {done.stderr.strip()[:200] or 'no file'}")
    part.replace(target)


def ensure_clips(rows: list[dict[str, Any]]) -> int:
    """Make the clips these rows need that are missing or fail their hash; returns how many were made."""
    if not rows:
        return 0
    folder = Path(rows[0]["file"]).parent
    try:
        return _ensure(rows, folder)
    except OSError as exc:
        raise DatasetError(f"cannot write the asr clips to {folder}: {exc.strerror or exc}; "
                           "set JOULESCORE_CACHE_DIR to a folder you can write") from None


def _ensure(rows: list[dict[str, Any]], folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / "manifest.json"
    try:
        manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    clips = manifest.setdefault("clips", {})
    made = 0
    for row in rows:
        path = Path(row["file"])
        known = clips.get(path.name, {})
        if path.is_file() and known.get("text") == row["reference"] and known.get("sha256") == _sha256(path):
            continue
        _speak(row["reference"], path)
        clips[path.name] = {"text": row["reference"], "sha256": _sha256(path)}
        made += 1
    if made:
        manifest["voice"] = " ".join(VOICE)
        part = manifest_path.with_suffix(f".{os.getpid()}.part")  # replaced whole: a reader never sees half
        part.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        part.replace(manifest_path)
    return made
