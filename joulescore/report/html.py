"""The report as one self-contained HTML file: data as JSON, plotly and the page's script inlined.

Nothing is fetched when the file is opened (it works from ``file://`` and can be
mailed).  Every string from outside (model names, paths, notes) reaches the page
as JSON data and is put on it as text (``textContent``), never as markup; the
JSON block escapes ``<``, ``>`` and ``&`` so a name cannot close its script tag.
A Content-Security-Policy with a per-file nonce forbids network access and any
script the file did not bring, as a second line of defence.
"""

from __future__ import annotations

import json
import secrets
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from joulescore.errors import BadInput

_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


def safe_json(data: Any) -> str:
    """JSON that can sit inside a <script> element: no ``</script>``, no ``<!--``, no entity."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for raw, escaped in _ESCAPES:  # str.replace: far faster than translate() on megabytes
        text = text.replace(raw, escaped)
    return text


def plotly_js() -> str:
    """plotly.js as the installed plotly package ships it (the same file ``write_html`` inlines)."""
    try:
        return resources.files("plotly").joinpath("package_data", "plotly.min.js").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        raise BadInput("the report needs plotly (pip install 'joulescore[report]')") from None


def _template(name: str) -> str:
    return resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


def render_html(data: dict[str, Any]) -> str:
    """The page: the jinja2 template (autoescaped) with the data, plotly and the page script."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(_template("report.html.j2"))
    return template.render(
        title=f"joulescore report ({len(data['runs'])} runs)", data_json=safe_json(data), nonce=secrets.token_hex(16),
        plotly_js=plotly_js(), page_js=_template("report.js"), page_css=_template("report.css"),
        generated_at=data["generated_at"], origins=data["origins"], version=data["tool_version"],
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
