"""``proxy`` (a metering reverse proxy for an OpenAI-compatible server) and ``requests`` (what it stored)."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timezone
from typing import Annotated, Optional

import typer
from rich.table import Table

from joulescore.cli.app import app, out
from joulescore.cli.console import id_column, print_json
from joulescore.cli.options import (
    DbOption,
    ExporterUrlOption,
    JsonOption,
    PresetOption,
    PrometheusUrlOption,
    QueryOption,
    SelectorOption,
    UnitOption,
)
from joulescore.errors import BadInput
from joulescore.meters import METER_NAMES
from joulescore.proxy.checks import DEFAULT_MAX_BODY
from joulescore.units import energy_mark, fmt


@app.command()
def proxy(
    upstream: Annotated[str, typer.Option(help="the OpenAI-compatible server, e.g. http://127.0.0.1:8000")],
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on (loopback unless told otherwise)")]
    = "127.0.0.1:9000",
    serve: Annotated[Optional[str], typer.Option(help="a command that starts the upstream server; stopped with the proxy")] = None,
    meter: Annotated[str, typer.Option(help=f"energy source: {', '.join(METER_NAMES)}")] = "auto",
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="JOULESCORE_PROXY_API_KEY",
                                                   help="require this bearer token on the API and /metrics")] = None,
    annotate: Annotated[bool, typer.Option("--annotate", help="end each stream with an SSE comment giving its energy")]
    = False,
    tick: Annotated[float, typer.Option(help="seconds between meter reads when no request event comes")] = 0.25,
    timeout: Annotated[float, typer.Option(help="seconds an upstream answer may take")] = 600.0,
    max_body: Annotated[int, typer.Option(help="largest request body in bytes; a larger one is answered 413")]
    = DEFAULT_MAX_BODY,
    db: DbOption = None,
    prometheus_url: PrometheusUrlOption = None, exporter_url: ExporterUrlOption = None, preset: PresetOption = None,
    query: QueryOption = None, selector: SelectorOption = None, unit: UnitOption = None,
) -> None:
    """Meter an OpenAI-compatible server request by request; Prometheus metrics at /metrics."""
    from joulescore.model.scrape import ScrapeOptions
    from joulescore.proxy.server import ProxySettings, check_upstream, parse_listen, run_proxy

    if meter not in METER_NAMES:
        raise BadInput(f"unknown meter {meter!r}; choose one of: {', '.join(METER_NAMES)}")
    if not (math.isfinite(tick) and 0.01 <= tick <= 60):
        raise BadInput(f"--tick {tick} is out of range; give seconds between 0.01 and 60")
    if not (math.isfinite(timeout) and timeout > 0):
        raise BadInput(f"--timeout {timeout} must be a positive number of seconds")
    if api_key is not None and not api_key.strip():
        raise BadInput("--api-key is empty; give a token or leave the flag out")
    if max_body < 1:
        raise BadInput(f"--max-body {max_body} must be a positive number of bytes")
    host, port = parse_listen(listen)
    run_proxy(ProxySettings(check_upstream(upstream), host, port, serve, meter, db, api_key, annotate, tick, timeout,
                            max_body=max_body,
                            scrape=ScrapeOptions(prometheus_url, exporter_url, preset, query, selector, unit,
                                                 keep_going=True)))


@app.command()
def requests(
    since: Annotated[str, typer.Option(help="how far back: 90s, 30m, 1h, 7d")] = "1h",
    limit: Annotated[int, typer.Option(help="most recent requests listed")] = 20,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Requests the proxy metered: the most recent, and per model J/request p50/p90, J/token, idle share."""
    from joulescore.report.requests import idle_share, parse_since, summarise
    from joulescore.store.requests import RequestStore, since_unix

    if limit < 0:
        raise BadInput(f"--limit {limit} must be 0 or more")
    start = since_unix(parse_since(since))
    with RequestStore(db, readonly=True) as store:  # a listing never creates or migrates a database
        rows = store.requests_since(start)
        idle_j, idle_s = store.idle_since(start)
    summary = summarise(rows)
    share = idle_share(sum(r.energy_j for r in rows), idle_j)
    recent = rows[-limit:] if limit else []
    if as_json:
        print_json(out, {"since": since, "idle_j": idle_j, "idle_s": idle_s, "idle_share": share,
                         "models": [dataclasses.asdict(m) for m in summary],
                         "recent": [dataclasses.asdict(r) for r in recent]})
        return
    table = Table(title=f"requests in the last {since}")
    id_column(table, "model", [s.model for s in summary])
    for col in ("requests", "ok", "failed", "J/request p50", "J/request p90", "J/output token", "energy J", "mark"):
        table.add_column(col)
    for s in summary:
        table.add_row(s.model, str(s.requests), str(s.ok), str(s.failed), fmt(s.p50_j), fmt(s.p90_j),
                      fmt(s.j_per_output_token), fmt(s.energy_j), ", ".join(energy_mark(k) for k in s.meter_kinds))
    out.print(table)
    out.print(f"idle: {fmt(idle_j)} J over {fmt(idle_s, '.1f')} s; idle share of all energy: "
              f"{fmt(share * 100 if share is not None else None, '.1f', ' %')}")
    if recent:
        listing = Table(title=f"most recent {len(recent)}")
        for col in ("started (UTC)", "model", "status", "HTTP", "in", "out", "TTFT s", "s", "energy J"):
            listing.add_column(col)
        for r in recent:
            when = datetime.fromtimestamp(r.started_unix, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            listing.add_row(when, r.model, r.status, str(r.http_status), fmt(r.input_tokens, "d"),
                            str(r.output_tokens), fmt(r.ttft_s, ".3f"), fmt(r.duration_s, ".3f"),
                            fmt(r.energy_j) + ("" if r.energy_final else " provisional"))
        out.print(listing)
