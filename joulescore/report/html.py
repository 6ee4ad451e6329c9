"""The report as one self-contained HTML file: data as JSON, plotly and the page's script inlined.

Nothing is fetched when the file is opened (it works from ``file://`` and can be
mailed).  The data (JSON) and plotly.js travel gzip-compressed and base64-encoded,
a third of their size, and the browser's ``DecompressionStream`` unpacks them: base64
holds no ``<`` or ``&``, so no string can close its script element.  Every string from
outside (model names, paths, notes) is put on the page as text (``textContent``),
never as markup, and with its control characters shown escaped (``\\x1b``, ``\\n``, ``\\u202e``) by the
escaper the terminal and the label use (:func:`joulescore.visible.visible`), so a name can neither reorder
nor break a line of the page.
A Content-Security-Policy with a per-file nonce forbids network access and any
script the file did not bring, as a second line of defence.
"""

from __future__ import annotations

import base64
import gzip
import json
import secrets
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from joulescore.errors import BadInput
from joulescore.visible import visible

#: what the top of every report page holds (its <title>): an existing file with it may be written over
REPORT_MARK = b"<title>joulescore report ("
_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


def safe_json(data: Any) -> str:
    """JSON that can sit inside a <script> element: no ``</script>``, no ``<!--``, no entity."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for raw, escaped in _ESCAPES:  # str.replace: far faster than translate() on megabytes
        text = text.replace(raw, escaped)
    return text


_NUMBERS = frozenset({int, float, bool, type(None)})


def shown(value: Any) -> Any:
    """The data as the page gets it: every string (keys too) one line, control characters escaped."""
    if isinstance(value, str):
        return value if value.isprintable() else visible(value)
    if isinstance(value, dict):
        return {shown(k): shown(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [v if type(v) in _NUMBERS else shown(v) for v in value]  # per-prompt series: mostly numbers
    return value


def packed(text: str, level: int = 6) -> str:
    """gzip, then base64: what the page's ``unpack`` reads back."""
    return base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=level, mtime=0)).decode("ascii")


def unpacked(text: str) -> str:
    return gzip.decompress(base64.b64decode(text)).decode("utf-8")


@lru_cache(maxsize=1)
def plotly_packed() -> str:
    return packed(plotly_js())


def plotly_js() -> str:
    """plotly.js as the installed plotly package ships it (the same file ``write_html`` inlines)."""
    try:
        return resources.files("plotly").joinpath("package_data").joinpath("plotly.min.js").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        raise BadInput("the report needs plotly (pip install 'joulescore[report]')") from None


def _template(name: str) -> str:
    return resources.files(__package__).joinpath("templates").joinpath(name).read_text(encoding="utf-8")


def render_html(data: dict[str, Any]) -> str:
    """The page: the jinja2 template (autoescaped) with the data, plotly and the page script."""
    data = shown(data)
    try:
        import jinja2
    except ModuleNotFoundError:
        raise BadInput("the report needs jinja2 (pip install 'joulescore[report]')") from None
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(_template("report.html.j2"))
    return template.render(
        title=f"joulescore report ({len(data['runs'])} runs)", data_packed=packed(safe_json(data), level=3),
        nonce=secrets.token_hex(16), plotly_packed=plotly_packed(), page_js=_template("report.js"), page_css=_template("report.css"),
        generated_at=data["generated_at"], origins=data["origins"], version=data["tool_version"],
        has_traffic=bool(data.get("traffic")),
    )


def write_report(data: dict[str, Any], output: Path) -> Path:
    """Write the page to ``output`` (a file; its folder is made)."""
    if output.is_dir():
        raise BadInput(f"-o {output} is a folder; give the report's file name, e.g. report.html")
    text = render_html(data)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot write report to {output}: {exc.strerror}") from None
    return output
