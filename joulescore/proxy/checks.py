"""What the proxy takes from clients and upstreams, checked once at the boundary.

Valid JSON can still hold what Python or SQLite cannot take: a lone surrogate
(``"a\\ud800"``) that no UTF-8 encoder accepts, or a count like ``10**30`` that
overflows SQLite's integers.  Paths are checked before routing, auth and
metering, so ``/v1/x/../chat/completions`` cannot reach the upstream's chat
handler unmetered.  A request body is forwarded byte for byte; the one change
is ``stream_options``, spliced in where a stream needs a usage report.
"""

from __future__ import annotations

import json
import posixpath
import re
from json.decoder import scanstring  # type: ignore[attr-defined]  # public since Python 2, not in the stubs
from typing import Any

#: no context window comes near a billion tokens; SQLite's integers end at 2**63
MAX_TOKENS = 10**9
#: a model name longer than this is refused (stored names and metric labels stay small)
MAX_MODEL_CHARS = 256
#: the request body the proxy reads or passes on, unless ``--max-body`` says otherwise
DEFAULT_MAX_BODY = 32 * 1024 * 1024
_ENCODED_SEPARATOR = re.compile(rb"%(2e|2f|5c)", re.IGNORECASE)
_WS = " \t\r\n"


def text_problem(text: str, limit: int = MAX_MODEL_CHARS) -> str | None:
    """Why a string from the wire cannot be stored or labelled (None when it can)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid Unicode (a lone surrogate)"
    if len(text) > limit:
        return f"it is longer than {limit} characters"
    return None


def path_problem(raw_path: bytes, path: str) -> str | None:
    """Why a request path is not canonical (None when it is): the proxy routes and meters the path it
    forwards, so ``..``, ``.``, ``//``, backslashes and encoded dots or slashes are refused, not resolved."""
    if _ENCODED_SEPARATOR.search(raw_path):
        return "it has an encoded dot, slash or backslash"
    if "\\" in path or not path.startswith("/"):
        return "it is not an absolute path with forward slashes"
    body = path[:-1] if path.endswith("/") and len(path) > 1 else path
    if posixpath.normpath(body) != body or body.startswith("//"):
        return "it has '.', '..' or empty segments"
    return None


def _members(text: str) -> list[tuple[str, int, int]]:
    """The top-level members of a JSON object as (key, value start, value end) offsets."""
    decoder = json.JSONDecoder()
    i = len(text) - len(text.lstrip(_WS)) + 1  # past "{"
    members: list[tuple[str, int, int]] = []
    while True:
        while text[i] in _WS:
            i += 1
        if text[i] == "}":
            return members
        key, i = scanstring(text, i + 1)
        while text[i] in _WS or text[i] == ":":
            i += 1
        _, end = decoder.raw_decode(text, i)
        members.append((key, i, end))
        i = end
        while text[i] in _WS or text[i] == ",":
            i += 1


def with_usage(body: bytes, doc: dict[str, Any]) -> tuple[bytes, bool]:
    """The body with ``stream_options.include_usage`` set, and whether the client had not asked for it.

    Every other byte stays as received (``1e999`` stays ``1e999``, not Python's ``Infinity``).
    """
    options = doc.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return body, False
    try:
        text = body.decode("utf-8")
        members = _members(text)
    except (UnicodeDecodeError, ValueError, IndexError):
        return body, False  # not plain UTF-8 JSON: forwarded untouched, tokens counted from chunks
    merged = json.dumps({**(options if isinstance(options, dict) else {}), "include_usage": True})
    spans = [(start, end) for key, start, end in members if key == "stream_options"]
    if spans:
        for start, end in reversed(spans):
            text = text[:start] + merged + text[end:]
    else:
        at = text.index("{") + 1
        text = f'{text[:at]}"stream_options": {merged}{", " if members else ""}{text[at:]}'
    return text.encode("utf-8"), True
