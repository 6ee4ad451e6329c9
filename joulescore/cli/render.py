"""Terminal rendering: the run summary, the progress bar and the run tables (text, never markup)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from joulescore.cli.console import id_column, plain
from joulescore.model.record import RunRecord
from joulescore.store.sqlite import ResultRow
from joulescore.units import energy_mark
from joulescore.units import fmt as _fmt


class RichProgress:
    """Prompts done, tokens/s and joules so far, on stderr so ``--json`` stays clean."""

    def __init__(self, console: Console, total: int, done: int, kind: str) -> None:
        self.tokens = 0
        self.busy_s = 0.0
        self.energy_j = 0.0
        self._unit = "J" if kind == "measured" else "J (est.)"
        self._progress = Progress(
            TextColumn("rating", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[energy]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            auto_refresh=False,  # no render thread competing with the engine's threads
            transient=False,
        )
        self._task = self._progress.add_task("run", total=total, completed=done, rate="", energy="")
        self._progress.start()

    def advance(self, result: ResultRow) -> None:
        self.tokens += result.output_tokens
        self.busy_s += result.duration_s
        self.energy_j += result.energy_j
        rate = f"{self.tokens / self.busy_s:.1f} tok/s" if self.busy_s else ""
        self._progress.update(self._task, advance=1, rate=rate, energy=f"{self.energy_j:.1f} {self._unit}",
                              refresh=True)

    def close(self) -> None:
        self._progress.stop()


def print_summary(console: Console, record: RunRecord) -> None:
    """The human summary of a run record."""
    meter, energy, counts, model = record.meter, record.energy, record.counts, record.model
    estimated = meter.kind != "measured"
    est_domains = [d for d, v in (meter.per_domain or {}).items() if v.get("kind") != "measured"]
    word = energy_mark(meter.kind).split()[0]
    mark = Text(word, "bold green" if word == "MEASURED" else "bold yellow")
    if meter.kind == "mixed":
        mark.append(plain(f" (estimated: {', '.join(est_domains)}; the rest measured)"), style="")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    cfg = record.config
    table.add_row("run", f"{record.run_id}  ({record.status})")
    table.add_row("model", f"{model.name}  ({model.backend}, {model.quantization or 'n/a'})")
    table.add_row("task", f"{record.task.name}: {counts.succeeded}/{counts.prompts} prompts"
                  f" ({counts.failed} failed), protocol {_cell(cfg.get('protocol'))}, "
                  f"batch {_cell(cfg.get('batch_size'))}")
    table.add_row("hardware", f"{record.hardware.cpu}, {record.hardware.logical_cpus or 'n/a'} logical CPUs")
    table.add_row("energy", Text.assemble(mark, f"  {_fmt(record.wh_per_1000_queries)} Wh per 1,000 queries"))
    band = f"band {_fmt(energy.low_j)}-{_fmt(energy.high_j)} J total" if estimated else ""
    table.add_row("", f"{_fmt(record.j_per_query)} J/query, {_fmt(record.j_per_output_token)} J/output token  {band}")
    _energy_detail(table, record)
    cached, n_in = counts.cached_input_tokens, counts.input_tokens
    reuse = f"; {100 * cached / n_in:.0f}% of input tokens came from the prefix cache" if cached and n_in else ""
    table.add_row("phases", f"prefill {_fmt(record.phase_split.prefill_pct, '.1f', '%')}, "
                  f"decode {_fmt(record.phase_split.decode_pct, '.1f', '%')}{reuse}")
    if record.media is not None:
        table.add_row("media", media_text(record))
    parts = [f"{name} {_fmt(value, '.4g', ' J')}" for name, value in
             (("CPU", energy.cpu_j), ("DRAM", energy.ram_j), ("GPU", energy.gpu_j), ("system", energy.system_j))
             if value is not None]
    table.add_row("covers", ", ".join(parts) + " (domains this meter does not cover are not counted)")
    table.add_row("speed", f"{_fmt(record.tokens_per_s, '.1f')} output tok/s, "
                  f"{_fmt(record.duration_s, '.1f', ' s')} measured")
    _reasoning_rows(table, record)
    if record.interference is not None:
        table.add_row("interference", interference_text(record))
    q = record.quality
    table.add_row("quality", f"{q.metric} = {_fmt(q.value)}" + (f"  ({q.note})" if q.note else ""))
    if record.errors:
        table.add_row("errors", f"{counts.failed} prompt(s) failed; first error: {record.errors[0]}")
    stated = "no stated uncertainty" if meter.uncertainty_pct is None else f"+/-{meter.uncertainty_pct:.0f}%"
    table.add_row("meter", f"{meter.kind}, {stated}: {'; '.join(meter.includes) or 'n/a'}")
    for note in meter.notes:
        table.add_row("", Text(plain(note), style="dim"))
    if record.run_json:
        table.add_row("saved", record.run_json)
    console.print(table)


def media_text(record: RunRecord) -> str:
    """A media run's preprocessing (decoding the files), energy per audio-second, and what was converted."""
    m = record.media
    if m is None:
        return ""
    text = (f"preprocessing {_fmt(m.preprocessing_j, '.4g', ' J')} ({_fmt(m.preprocessing_pct, '.1f', '%')} of the "
            f"total, decoding the {m.inputs} files)")
    if m.inputs == "audio":
        text += f"; {_fmt(m.audio_s, '.1f', ' s')} of audio, {_fmt(m.j_per_audio_s, '.4g')} J per audio-second"
    if m.converted:
        text += f"; {m.converted} file(s) converted: {'; '.join(m.conversions[:2])}"
    return text


def _energy_detail(table: Table, record: RunRecord) -> None:
    """The rows beside the headline figure: its interval, the sample, the whole machine, net of idle."""
    energy = record.energy
    if record.interval is not None:
        table.add_row("interval", interval_text(record))
    if record.sampling is not None:
        table.add_row("sampled", sampling_text(record))
    if energy.whole_machine_j is not None:
        table.add_row("machine", f"whole machine {_fmt(record.whole_machine_wh_per_1000_queries)} Wh per 1,000 "
                      f"queries ({_fmt(energy.whole_machine_j, '.4g', ' J')}, as a wall-socket meter would see "
                      "it); the figure above is the run's attributed share")
    if energy.net_total_j is not None:
        table.add_row("", f"gross {_fmt(energy.total_j, '.4g', ' J')}, idle {_fmt(energy.idle_power_w, '.4g', ' W')}"
                      f" -> net {_fmt(energy.net_total_j, '.4g', ' J')} (idle subtracted on request)")


def _reasoning_rows(table: Table, record: RunRecord) -> None:
    """The reasoning/answer split of a run with a reasoning plan (nothing for one without)."""
    counts, energy = record.counts, record.energy
    reasoning = record.reasoning_plan()
    if reasoning is not None:
        per_q = counts.reasoning_tokens_per_query
        p50, p90 = (per_q.p50, per_q.p90) if per_q else (None, None)
        table.add_row("reasoning", f"{reasoning.mode} ({reasoning.method}, family {reasoning.family}, "
                      f"budget {_cell(reasoning.budget)} tokens): {_cell(counts.reasoning_tokens)} reasoning + "
                      f"{_cell(counts.answer_tokens)} answer tokens, p50/p90 {_fmt(p50, '.0f')}/{_fmt(p90, '.0f')} "
                      "per query")
        table.add_row("", f"decode: reasoning {_fmt(energy.reasoning_j, '.4g', ' J')}, answer "
                      f"{_fmt(energy.answer_j, '.4g', ' J')}; {_cell(counts.reasoning_truncated)} cut off "
                      f"mid-reasoning and {_cell(counts.reasoning_unclosed)} never closed it (not scored)")


def interval_text(record: RunRecord) -> str:
    """The 95% interval of the headline, as one line."""
    iv = record.interval
    if iv is None:
        return "n/a"
    return (f"95% CI {_fmt(iv.wh_per_1000_queries_low)}-{_fmt(iv.wh_per_1000_queries_high)} Wh per 1,000 "
            f"queries, {_fmt(iv.j_per_query_low)}-{_fmt(iv.j_per_query_high)} J/query "
            f"(+/-{_fmt(iv.half_width_pct, '.2f', '%')}, bootstrap over {iv.n} prompts)")


def sampling_text(record: RunRecord) -> str:
    sm = record.sampling
    if sm is None:
        return "n/a"
    kind = "a sampled rating" if sm.sampled else "every prompt"
    text = (f"--precision {sm.precision_pct:g}%: {sm.prompts_run} of {sm.prompts_available} prompts in a shuffled "
            f"order (seed {sm.seed}), {sm.stopped}: {kind}")
    if not sm.sampled:
        return text
    text += f"; J/query is the full run's, estimated by {sm.estimator or 'plain mean'}"
    iv = record.interval
    if iv is not None and iv.slope_j_per_token is not None:
        text += (f" ({_fmt(iv.covariate_population_mean, '.1f')} tokens per prompt over all {iv.prompts}, "
                 f"{_fmt(iv.covariate_sample_mean, '.1f')} sampled, {_fmt(iv.slope_j_per_token, '.4g')} J/token); "
                 f"the sample's own {_fmt(sm.sample_j_per_query)} J/query")
    elif sm.why_plain:
        text += f" ({sm.why_plain})"
    return text


def interference_text(record: RunRecord) -> Text:
    """DISTURBED and why, or the quiet figures; --threads auto's choice."""
    it = record.interference
    if it is None:
        return Text("n/a")
    figures = (f"others {_fmt(it.others_cpu_pct, '.1f', '%')} of the CPU, steal {_fmt(it.steal_pct, '.1f', '%')}"
               if it.measured else "not measured")
    if it.threads:
        figures += f"; --threads auto: {it.threads.get('threads')} ({it.threads.get('reason')})"
    if it.disturbed:
        return Text.assemble(("DISTURBED", "bold red"), plain(f": {it.reason} ({figures}); shown, never rated"))
    return Text(plain(f"quiet: {figures}"))


def runs_table(rows: list[dict[str, Any]]) -> Table:
    """Stored runs, one line each; identifiers are never cut."""
    table = Table(title="stored runs")
    cols = (("run", "run_id"), ("status", "status"), ("model", "model"), ("task", "task"), ("prompts", "prompts"),
            ("Wh/1k q", "wh"), ("J/token", "jpt"), ("kind", "kind"))
    for header, key in cols:
        if key in ("run_id", "model", "task"):
            id_column(table, header, [str(r[key]) for r in rows])
        else:
            table.add_column(header)
    for r in rows:
        table.add_row(*[_cell(r[key]) for _, key in cols])
    return table


def _cell(value: Any) -> str:
    return "n/a" if value is None else str(value)


def variance_table(variance: dict[str, Any]) -> Table:
    """Repeat variance: how much each headline figure moved across repeated runs."""
    kinds = "/".join(variance["meter_kind"]) or "n/a"
    table = Table(title=f"repeat variance over {len(variance['run_ids'])} complete runs ({kinds})")
    for col in ("figure", "mean", "stdev", "CV", "min", "max"):
        table.add_column(col, justify="right" if col != "figure" else "left")
    for name in ("wh_per_1000_queries", "j_per_query", "j_per_output_token", "tokens_per_s"):
        s = variance[name]
        table.add_row(name, _fmt(s["mean"]), _fmt(s["stdev"]), _fmt(s["cv_pct"], ".2f", "%"),
                      _fmt(s["min"]), _fmt(s["max"]))
    iv = variance.get("interval")
    if iv:
        table.caption = (f"95% CI of the mean: {_fmt(iv['wh_per_1000_queries_low'])}-"
                         f"{_fmt(iv['wh_per_1000_queries_high'])} Wh per 1,000 queries "
                         f"(+/-{_fmt(iv['half_width_pct'], '.2f', '%')}: each run's bootstrap and the repeats' spread)")
    return table
