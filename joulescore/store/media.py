"""The record's ``media`` section: what decoding a run's files (audio, image) cost, and what was converted."""

from __future__ import annotations

from typing import Any

from joulescore.model.spec import RunSpec
from joulescore.store.rows import MediaFigures, ResultRow


def media_section(spec: RunSpec, results: list[ResultRow]) -> dict[str, Any] | None:
    """The record's ``media`` section: preprocessing energy, audio-seconds, what was resampled or resized."""
    inputs = spec.task.inputs
    if inputs not in ("audio", "image"):
        return None
    rows = [r.extra.media or MediaFigures() for r in results]
    ok = [r for r in results if r.ok]
    total_j = sum(r.energy_j for r in results)
    pre_j = sum(m.preprocessing_j for m in rows)
    audio_s = sum((r.extra.media.audio_s or 0.0) if r.extra.media else 0.0 for r in ok)
    ok_j = sum(r.energy_j for r in ok)
    converted = sorted({m.converted for m in rows if m.converted})
    return {
        "inputs": inputs,
        "model_input": spec.model.extra.get("input"),
        "preprocessing_j": round(pre_j, 6),
        "preprocessing_s": round(sum(m.preprocessing_s for m in rows), 6),
        "preprocessing_pct": round(100 * pre_j / total_j, 2) if total_j else None,
        "audio_s": round(audio_s, 3) if inputs == "audio" else None,
        "j_per_audio_s": round(ok_j / audio_s, 6) if inputs == "audio" and audio_s else None,
        "converted": sum(1 for m in rows if m.converted),
        "conversions": converted[:10],
        "sources": sorted({m.source for m in rows if m.source})[:10],
        "note": "preprocessing_j (reading and converting each file) is part of energy.prefill_j; "
                + ("j_per_audio_s is the energy of the answered prompts over their audio's length"
                   if inputs == "audio" else "images are resized and centre-cropped to the model's input"),
    }
