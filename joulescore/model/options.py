"""Each engine's own settings, declared once: the run settings select one by ``backend``.

These models are light (no engine is imported), so the command line can list
every engine's options as flags and a sweep plan can validate them before
anything loads.  A setting an engine does not take is refused by its model.
"""

from __future__ import annotations

import shlex
from typing import Annotated, ClassVar, Literal, Optional, Union
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

Dtype = Literal["fp32", "bf16", "fp16"]
Quantization = Literal["none", "int8"]
#: one description for the flag every transformers-based engine takes
REMOTE_CODE_HELP = ("transformers/onnxruntime/encoder: run the model's own code (auto_map in its config); off, "
                    "such a model is refused")


class EngineOptions(BaseModel):
    """Options an engine takes beyond the common ones (threads, context, seed)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    #: a word on what the engine cannot take, added to the "does not take" error
    refusal_hint: ClassVar[str] = ""


class LlamaCppOptions(EngineOptions):
    backend: Literal["llama.cpp"] = "llama.cpp"
    refusal_hint: ClassVar[str] = " (llama.cpp's quantization is the GGUF file's)"
    prompt_cache: bool = Field(True, description="llama.cpp: reuse the KV cache of the prefix shared with the "
                               "previous prompt (the engine's default); --no-prompt-cache prefills every prompt in full")
    n_batch: int = Field(512, ge=1, description="llama.cpp: prompt tokens evaluated per prefill step (its n_batch)")
    gpu_layers: Optional[int] = Field(None, ge=-1, description="llama.cpp: layers offloaded to the GPU (-1: all; "
                                      "default: all on a GPU build, none on a CPU build)")


class TransformersOptions(EngineOptions):
    backend: Literal["transformers"] = "transformers"
    dtype: Optional[Dtype] = Field(None, description="transformers/vllm: fp32, bf16 or fp16 (vllm also auto: "
                                   "the checkpoint's)")
    quantization: Optional[Quantization] = Field(
        None, description="transformers/onnxruntime: none or int8 (dynamic)")
    device: Optional[str] = Field(None, description="transformers/onnxruntime/whisper/vision: cpu or cuda (default: the best here)")
    trust_remote_code: bool = Field(False, description=REMOTE_CODE_HELP)


class OnnxOptions(EngineOptions):
    backend: Literal["onnxruntime"] = "onnxruntime"
    dtype: Optional[Literal["fp32"]] = Field(None, description="onnxruntime: the export is fp32")
    quantization: Optional[Quantization] = None
    device: Optional[str] = None
    trust_remote_code: bool = Field(False, description=REMOTE_CODE_HELP)


class EncoderOptions(EngineOptions):
    backend: Literal["encoder"] = "encoder"
    trust_remote_code: bool = Field(False, description=REMOTE_CODE_HELP)


class OpenAIOptions(EngineOptions):
    backend: Literal["openai"] = "openai"
    endpoint: Optional[str] = Field(None, description="openai: the server's base URL")
    serve: Optional[str] = Field(None, description="openai: a command that starts the server; measured, then stopped")
    request_timeout_s: float = Field(60.0, gt=0, description="openai: seconds without a byte before a request fails",
                                     json_schema_extra={"flag": "--request-timeout"})
    retries: int = Field(2, ge=0, description="openai: times a request is retried when no byte of it arrived")

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_url(cls, endpoint: Optional[str]) -> Optional[str]:
        """An http(s) URL with a host: anything else would fail later, deep inside the HTTP client."""
        if endpoint is None:
            return None
        hint = f"--endpoint must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8000; got {endpoint!r}"
        if any(c.isspace() or not c.isprintable() for c in endpoint):
            raise ValueError(hint)
        try:
            parts = urlsplit(endpoint)
            port = parts.port
        except ValueError:  # a port that is not a number or out of range, a malformed [IPv6] host
            raise ValueError(hint) from None
        if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
            raise ValueError(hint)
        return endpoint

    @field_validator("serve")
    @classmethod
    def _serve_is_a_command(cls, serve: Optional[str]) -> Optional[str]:
        """A command line that splits into words (the server is started without a shell)."""
        if serve is None:
            return None
        try:
            words = shlex.split(serve)
        except ValueError as exc:  # an unbalanced quote, a trailing backslash
            raise ValueError(f"--serve {serve!r} is not a command line: {str(exc).lower()}") from None
        if not words:
            raise ValueError("--serve needs a command that starts the server, e.g. \"python -m llama_cpp.server ...\"")
        return serve


class VllmOptions(EngineOptions):
    backend: Literal["vllm"] = "vllm"
    refusal_hint: ClassVar[str] = " (vLLM takes the checkpoint's own quantization)"
    dtype: Optional[Literal["auto", "fp32", "bf16", "fp16"]] = Field(
        None, description="vllm: auto (the checkpoint's), fp32, bf16 or fp16")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs the model is split across (tensor parallel)")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vllm: share of each GPU's memory vLLM "
                                          "may take for weights and KV cache")
    max_num_seqs: Optional[int] = Field(None, ge=1, description="vllm: most sequences decoded together (the "
                                        "engine's batch; default: vLLM's); keep it >= --batch-size")
    enforce_eager: bool = Field(False, description="vllm: run eagerly, without CUDA graphs")


#: CTranslate2's compute types (faster-whisper passes them through; which run depends on the device)
ComputeType = Literal["default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
                      "float16", "bfloat16", "float32"]


class WhisperOptions(EngineOptions):
    """Speech recognition with faster-whisper (CTranslate2): the task ``asr``."""

    backend: Literal["whisper"] = "whisper"
    beam_size: int = Field(1, ge=1, le=16, description="whisper: beams searched while decoding (1: greedy)")
    compute_type: ComputeType = Field("int8", description="whisper: CTranslate2 compute type: int8 (default), "
                                      "float32, float16, int8_float16...")
    device: Optional[str] = None


class VisionOptions(EngineOptions):
    """Image classification in torch: the task ``image-classification``."""

    backend: Literal["vision"] = "vision"
    device: Optional[str] = None


#: one engine's options, chosen by the ``backend`` key that each carries
AnyEngineOptions = Annotated[Union[LlamaCppOptions, EncoderOptions, TransformersOptions, OnnxOptions, OpenAIOptions,
                                   VllmOptions, WhisperOptions, VisionOptions], Field(discriminator="backend")]
#: backend name -> its options model (the backends' registry names the engine classes)
ENGINE_OPTIONS: dict[str, type[EngineOptions]] = {
    o.model_fields["backend"].default: o
    for o in (LlamaCppOptions, EncoderOptions, TransformersOptions, OnnxOptions, OpenAIOptions, VllmOptions,
              WhisperOptions, VisionOptions)
}
