"""Engines whose prompt is a file (audio, image): decoding the file is a step the runner meters on its own.

A media prompt's one message holds the file's path.  The runner calls
:meth:`MediaBackend.decode` (read the file and convert it to what the model
takes: resample, resize) and then :meth:`MediaBackend.infer`, reading the meter
between the two, so the decoding's energy is stored apart ("preprocessing")
while the engine itself still never sees a meter.  A file that cannot be read
fails its prompt with the reason; the run goes on.
"""

from __future__ import annotations

import wave
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joulescore.backends.base import Backend, FirstTokenHook, Generation, GenerationConfig
from joulescore.errors import BadInput


class MediaError(Exception):
    """A file that cannot be used as a prompt: its prompt fails with this message, the run goes on."""


@dataclass
class Decoded:
    """A file decoded into what the model takes, and what was done to it on the way."""

    data: Any
    #: what the file held: "22050 Hz, 1 channel(s)" or "640x480 RGB"
    source: str
    #: what was changed so the model can take it ("resampled 22050 Hz -> 16000 Hz mono"); None: taken as it was
    converted: str | None = None
    #: the clip's length, for audio (energy per audio-second)
    audio_s: float | None = None


def failed(error: str) -> Generation:
    return Generation("", 0, 0, 0.0, 0.0, "error", error=error)


def prompt_path(messages: list[dict[str, str]]) -> Path:
    """The file a media prompt names: its last message's content."""
    return Path(messages[-1]["content"])


class MediaBackend(Backend):
    """An engine that reads one file per prompt.  ``inputs`` says which kind: "audio" or "image"."""

    kind = "media"
    inputs = "audio"

    @abstractmethod
    def decode(self, path: Path) -> Decoded:
        """Read the file into what the model takes; raise MediaError when it cannot be used."""

    @abstractmethod
    def infer(self, decoded: Decoded, config: GenerationConfig,
              on_first_token: FirstTokenHook | None = None) -> Generation:
        """Run the model on a decoded file."""

    def generate(self, messages: list[dict[str, str]], config: GenerationConfig,
                 on_first_token: FirstTokenHook | None = None) -> Generation:
        """Decode and infer in one call (warm-up); the runner calls the two steps itself to meter them apart."""
        try:
            decoded = self.decode(prompt_path(messages))
        except MediaError as exc:
            return failed(str(exc))
        return self.infer(decoded, config, on_first_token)

    def check_task(self, spec: Any) -> None:
        if getattr(spec, "inputs", "text") != self.inputs:
            raise BadInput(f"the {self.name} backend reads {self.inputs} files; task {spec.name!r} gives "
                           f"{getattr(spec, 'inputs', 'text')} prompts")


def check_wav(path: Path) -> None:
    """A WAV file whose data is shorter than its header says is truncated: decoders would pass it silently."""
    try:
        with wave.open(str(path), "rb") as w:
            frames, frame_bytes, rate = w.getnframes(), w.getsampwidth() * w.getnchannels(), w.getframerate()
            data = w.readframes(frames)
    except (wave.Error, EOFError) as exc:
        raise MediaError(f"{path.name}: not a readable WAV file ({str(exc) or 'it ends early'})") from None
    except OSError as exc:
        raise MediaError(f"{path.name}: cannot be read ({exc.strerror})") from None
    if frame_bytes and len(data) < frames * frame_bytes:
        held = len(data) / frame_bytes / rate if rate else 0.0
        raise MediaError(f"{path.name}: truncated: the header says {frames / rate:.2f} s of audio, the file holds "
                         f"{held:.2f} s")


def read_audio(path: Path, rate_hz: int) -> Decoded:
    """Decode any audio file PyAV (FFmpeg) reads, to mono float32 at ``rate_hz``; WAV is checked for truncation."""
    import av
    from faster_whisper.audio import decode_audio

    if not path.is_file():
        raise MediaError(f"{path.name}: file not found ({path})")
    if path.suffix.lower() == ".wav":
        check_wav(path)
    try:
        with av.open(str(path)) as container:
            stream = next(s for s in container.streams if s.type == "audio")
            source_hz, channels = int(stream.rate or 0), int(stream.channels or 0)
        samples = decode_audio(str(path), sampling_rate=rate_hz)
    except StopIteration:
        raise MediaError(f"{path.name}: holds no audio stream") from None
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"{path.name}: cannot be decoded as audio ({str(exc).splitlines()[0][:200]})") from None
    if len(samples) == 0:
        raise MediaError(f"{path.name}: holds no audio samples")
    converted = None
    if source_hz != rate_hz or channels != 1:
        converted = f"resampled {source_hz} Hz, {channels} channel(s) -> {rate_hz} Hz mono"
    return Decoded(samples, f"{source_hz} Hz, {channels} channel(s)", converted, len(samples) / rate_hz)
