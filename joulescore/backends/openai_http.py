"""Any OpenAI-compatible server (vLLM, llama.cpp server, TGI, ...) over HTTP, streamed.

Streaming gives the time to first token.  Energy is metered on the machine
where joulescore runs: with ``--serve`` the server is our child and its CPU
time is counted; a remote server's energy is not, and the record says so.

Failures are recorded, never double counted: a request is retried only when
no byte of the response arrived (it cannot have been processed into an
answer we saw); once anything arrived, a broken stream is a failed prompt.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from joulescore.backends.base import Backend, FirstTokenHook, Generation, SteadyEndHook, SteadyWindow
from joulescore.backends.openai_wire import BadStream, model_ids, parse_event, snippet, token_counts
from joulescore.backends.serve import ServedProcess
from joulescore.errors import BadInput, ModelError
from joulescore.model.generation import GenerationConfig
from joulescore.model.sections import ModelInfo

RETRY_BACKOFF_S = 0.5
#: after this many prompts in a row failed without reaching the server, the rest fail at once
DEAD_AFTER = 3


class OpenAIBackend(Backend):
    name = "openai"
    batching = "concurrent"

    def __init__(self, model: str, endpoint: str | None = None, serve: str | None = None,
                 threads: int | None = None, n_ctx: int = 4096, seed: int = 0, timeout_s: float = 60.0,
                 retries: int = 2, ready_timeout_s: float = 180.0) -> None:
        if not endpoint:
            raise BadInput("backend openai needs --endpoint URL (the server's base URL, e.g. http://127.0.0.1:8000)")
        self.base = endpoint.rstrip("/").removesuffix("/v1")
        self.timeout_s, self.retries, self.seed = timeout_s, retries, seed
        self.serve = serve
        self.child: ServedProcess | None = None
        self._dead_streak = 0
        self.client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=5.0),
                                   limits=httpx.Limits(max_connections=64))
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        try:
            if serve:
                self.child = ServedProcess(serve, endpoint)
                self._wait_ready(self.child, ready_timeout_s)
            ids = self._list_models()
        except BaseException:  # a failed start, or Ctrl-C while the server loads: stop what was started
            self.close()
            raise
        self.model_id = model if model in ids else ids[0]
        self._info = ModelInfo(
            name=self.model_id, path=None, backend=self.name, quantization=None,
            extra={"endpoint": self.base, "asked_for": model, "server_models": ids, "served_by": serve,
                   "batching": self.batching, "quantization_note": "set by the server, not known to the client"},
        )

    # server lifecycle ------------------------------------------------------
    def _wait_ready(self, child: ServedProcess, ready_timeout_s: float) -> None:
        """Wait until the served engine answers /v1/models at all; what it answers is checked next."""
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            status = child.exited()
            if status is not None:
                raise ModelError(f"--serve command exited with status {status} before it was ready: "
                                 f"{child.last_line()}")
            try:
                # 502-504: a proxy in front, or a server still loading its model
                if self.client.get(f"{self.base}/v1/models", timeout=2.0).status_code not in (502, 503, 504):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise ModelError(f"--serve command did not answer {self.base}/v1/models within {ready_timeout_s:.0f} s")

    def _list_models(self) -> list[str]:
        """The model ids the server lists; anything but an OpenAI model list is a one-line error."""
        try:
            listed = self.client.get(f"{self.base}/v1/models", timeout=10.0)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise BadInput(f"cannot reach an OpenAI-compatible server at {self.base}: {_why(exc)}") from None
        return model_ids(self.base, listed.status_code, listed.text)

    def notes(self) -> list[str]:
        if self.child is not None:
            return [f"openai backend: energy measured on this machine, including the served engine "
                    f"(--serve, pid {self.child.pid}) whose process tree's CPU time the estimator counts"]
        return [f"openai backend: energy measured on the machine where joulescore runs, not on the server at "
                f"{self.base}; a CPU-time estimate covers only the client process"]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.client.close()
        if self.child is not None:
            self.child.stop()

    def info(self) -> ModelInfo:
        return self._info

    # requests --------------------------------------------------------------
    def _server_gone(self) -> str | None:
        status = self.child.exited() if self.child is not None else None
        if status is not None:
            return f"the served engine exited with status {status}"
        if self._dead_streak >= DEAD_AFTER:
            return f"the server at {self.base} stopped answering ({self._dead_streak} prompts in a row)"
        return None

    def _request(self, messages: list[dict[str, str]], config: GenerationConfig,
                 on_first: FirstTokenHook | None, batch: SteadyWindow | None) -> Generation:
        gone = self._server_gone()
        if gone:
            if batch is not None:
                batch.step(started=1, ended=1)
            return Generation("", 0, 0, 0.0, 0.0, "error", error=f"not sent: {gone}")
        body: dict[str, object] = {"model": self.model_id, "messages": messages, "stream": True,
                                   "max_tokens": config.max_new_tokens, "temperature": config.temperature,
                                   "seed": config.seed}
        if config.min_new_tokens:
            body["min_tokens"] = config.min_new_tokens  # honoured by vLLM and llama.cpp servers
        error = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(RETRY_BACKOFF_S * attempt)
            outcome = self._stream(body, on_first, batch)
            if isinstance(outcome, Generation):
                self._dead_streak = 0
                if batch is not None:
                    batch.step(started=0 if outcome.text else 1, ended=1)  # text iff a first token came
                return outcome
            error = outcome  # nothing arrived: safe to send again
            if self._server_gone():
                break
        self._dead_streak += 1
        if batch is not None:
            batch.step(started=1, ended=1)
        return Generation("", 0, 0, 0.0, 0.0, "error", error=f"server unreachable: {error}")

    def _stream(self, body: dict[str, object], on_first: FirstTokenHook | None,
                batch: SteadyWindow | None) -> Generation | str:
        """One attempt.  A Generation once any byte arrived (ok or failed); else the reason, to retry."""
        text: list[str] = []
        count, events, finish, usage = 0, 0, "length", None
        start = time.perf_counter()
        first: float | None = None
        received = False
        other = ""  # the first line that was not a stream event, to say what came instead
        try:
            with self.client.stream("POST", f"{self.base}/v1/chat/completions", json=body) as resp:
                received = True
                if resp.status_code != 200:
                    detail = snippet(resp.read().decode(errors="replace"))
                    return Generation("", 0, 0, time.perf_counter() - start, 0.0, "error",
                                      error=f"HTTP {resp.status_code}: {detail}")
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        other = other or line.strip()
                        continue
                    data = line[5:].strip()
                    events += 1
                    if data == "[DONE]":
                        break
                    event = parse_event(data)
                    usage = event.usage or usage
                    finish = event.finish or finish
                    for piece in event.pieces:
                        if first is None:
                            first = time.perf_counter()
                            if on_first is not None:
                                on_first()
                            if batch is not None:
                                batch.step(started=1)
                        elif batch is not None:
                            batch.step(tokens=1)
                        text.append(piece)
                        count += 1
        except (httpx.HTTPError, httpx.StreamError, BadStream) as exc:
            return self._broken(exc, received, text, count, start, first)
        end = time.perf_counter()
        first = first or end
        if not events:
            return Generation("", 0, 0, end - start, 0.0, "error",
                              error=f"the server's answer held no stream events (data: lines); it began: "
                                    f"{snippet(other) or 'nothing'}")
        n_in, n_out, problem = token_counts(usage, count)
        return Generation("".join(text), n_in, n_out, first - start, end - first,
                          "error" if problem else "stop" if finish == "stop" else "length", error=problem)

    @staticmethod
    def _broken(exc: Exception, received: bool, text: list[str], count: int, start: float,
                first: float | None) -> Generation | str:
        """A stream that failed: the reason to retry when nothing arrived, else a failed prompt."""
        why = _why(exc)
        if not received and first is None:
            return why
        end = time.perf_counter()
        first_s = (first or end) - start
        return Generation("".join(text), 0, count, first_s, end - start - first_s, "error",
                          error=f"stream broken after {count} tokens: {why}")

    def generate(self, messages: list[dict[str, str]], config: GenerationConfig,
                 on_first_token: FirstTokenHook | None = None) -> Generation:
        return self._request(messages, config, on_first_token, None)

    def generate_batch(self, batch: list[list[dict[str, str]]], config: GenerationConfig,
                       on_first_token: FirstTokenHook | None = None,
                       on_steady_end: SteadyEndHook | None = None) -> list[Generation]:
        if self._pool is None or self._pool_size < len(batch):
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            self._pool = ThreadPoolExecutor(max_workers=len(batch), thread_name_prefix="openai")
            self._pool_size = len(batch)
        state = SteadyWindow(len(batch), on_first_token, on_steady_end)
        futures = [self._pool.submit(self._request, m, config, None, state) for m in batch]
        return [f.result() for f in futures]


def _why(exc: BaseException) -> str:
    return snippet(str(exc), 200) or type(exc).__name__
