"""A scripted OpenAI-style upstream on loopback (a real HTTP server) for the proxy's failure cases.

The request's ``model`` picks the answer, so one server plays every part:
``slow-N`` streams for N seconds, ``cut`` stops a stream with no finish reason,
``empty`` finishes a stream with no content, ``big-N`` sends one N-byte event,
``huge-usage`` reports 10**30 prompt tokens, ``huge-output`` 2**63 output tokens.  Every request's method, raw path
and raw body are recorded, so a test can see what the proxy forwarded.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    doc = {"object": "chat.completion.chunk", "model": "scripted",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(doc)}\n\n".encode()


def _usage(model: str) -> dict[str, int]:
    return {"prompt_tokens": 10**30 if model == "huge-usage" else 3,
            "completion_tokens": 2**63 if model == "huge-output" else 2}


class Scripted(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # a stream ends when the connection closes
    seen: list[tuple[str, str, bytes]]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, b""))
        self._send(200, json.dumps({"object": "list", "data": [{"id": "scripted"}]}).encode())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.seen.append(("POST", self.path, body))
        try:
            doc: dict[str, Any] = json.loads(body)
        except ValueError:
            doc = {}
        model = str(doc.get("model", ""))
        if not doc.get("stream"):
            answer = {"object": "chat.completion", "model": model or "scripted", "usage": _usage(model),
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                   "finish_reason": "stop"}]}
            self._send(200, json.dumps(answer).encode())
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        self._stream(model)

    def _stream(self, model: str) -> None:
        w = self.wfile
        if model.startswith("slow-"):
            deadline = time.monotonic() + float(model[5:])
            while time.monotonic() < deadline:
                w.write(_chunk("tick"))
                w.flush()
                time.sleep(0.1)
        elif model.startswith("big-"):
            w.write(b"data: " + b"x" * int(model[4:]) + b"\n\n")
        if model == "cut":
            w.write(_chunk("Hel") + _chunk("lo"))
            return  # the connection closes: no finish reason, no [DONE]
        if model != "empty":
            w.write(_chunk("Hello"))
        usage = {"object": "chat.completion.chunk", "choices": [], "usage": _usage(model)}
        w.write(_chunk(None, "stop") + f"data: {json.dumps(usage)}\n\n".encode() + b"data: [DONE]\n\n")


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client (the proxy) that hangs up mid-stream is part of the script


def start() -> tuple[ThreadingHTTPServer, list[tuple[str, str, bytes]]]:
    """A running scripted upstream and the list of what it received."""
    seen: list[tuple[str, str, bytes]] = []
    handler = type("Handler", (Scripted,), {"seen": seen})
    server = _Quiet(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen
