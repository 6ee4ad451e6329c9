"""Metering a media prompt (one audio or image file): the file's decoding counted apart, then the model call.

The meter is read at the start, when the file is decoded, and at the end.
``prefill_j`` holds the whole call (the engines here have no first-token
moment, so ``decode_j`` is 0), and ``extra.media.preprocessing_j`` the part
of it spent reading, resampling or resizing the file.  Per-prompt figures still
add up to the run's total exactly.
"""

from __future__ import annotations

from joulescore.backends.base import Generation, GenerationConfig
from joulescore.backends.media import MediaBackend, MediaError, failed, prompt_path
from joulescore.bench.row_parts import common_extra, energy_sums, keep_watched
from joulescore.meters.base import Meter
from joulescore.meters.interference import InterferenceWatch
from joulescore.store.rows import MediaFigures, RowExtra
from joulescore.store.sqlite import ResultRow
from joulescore.tasks.spec import Prompt


def run_media_prompt(backend: MediaBackend, meter: Meter, prompt: Prompt, config: GenerationConfig,
                     watch: InterferenceWatch | None = None) -> ResultRow:
    """Decode the prompt's file and run the model on it under the meter; a bad file fails only this prompt."""
    if watch is not None:
        watch.begin()
    begin = meter.read()
    media = MediaFigures(file=prompt_path(prompt.messages).name)
    try:
        decoded = backend.decode(prompt_path(prompt.messages))
    except MediaError as exc:
        decoded, gen = None, failed(str(exc))
    decoded_r = meter.read()
    if decoded is not None:
        gen = backend.infer(decoded, config)
        media.source, media.converted, media.audio_s = decoded.source, decoded.converted, decoded.audio_s
    end = meter.read()
    figures = watch.end() if watch is not None else {}
    window = meter.measurement(begin, end)
    e0, l0, h0 = energy_sums(begin)
    e2, l2, h2 = energy_sums(end)
    media.preprocessing_j = energy_sums(decoded_r)[0] - e0
    media.preprocessing_s = decoded_r.timestamp_s - begin.timestamp_s
    extra = common_extra(prompt, gen, media=media)
    keep_watched(extra, window, figures)
    return _row(prompt, gen, extra, end.timestamp_s - begin.timestamp_s, e2 - e0, (l2 - l0, h2 - h0),
                {d.value: v for d, v in window.energy_j.items()})


def _row(prompt: Prompt, gen: Generation, extra: RowExtra, window_s: float, window_j: float,
         band_j: tuple[float, float], domains: dict[str, float]) -> ResultRow:
    return ResultRow(prompt_index=prompt.index, prompt_id=prompt.id, ok=gen.ok, error=gen.error,
                     finish_reason=gen.finish_reason, input_tokens=gen.input_tokens, output_tokens=gen.output_tokens,
                     prefill_s=window_s, decode_s=0.0, prefill_j=window_j, decode_j=0.0, low_j=band_j[0],
                     high_j=band_j[1], domains=domains, text=gen.text, extra=extra)
