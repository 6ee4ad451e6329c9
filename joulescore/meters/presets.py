"""What the scraped meters read: presets for the exporters clusters already run, units and selectors.

Presets are data: the counter names, the domain each one counts in and its
unit, whether several series may be summed (one per GPU or CPU package of one
host) and, for Kepler's pod figures, the attribution model behind them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from joulescore.errors import BadInput
from joulescore.meters.base import Domain
from joulescore.model.scrape import ScrapeOptions

#: joules per unit of a counter
UNITS_J: dict[str, float] = {"J": 1.0, "mJ": 1e-3, "uJ": 1e-6, "µJ": 1e-6}
KEPLER_METHOD = ("Kepler's attribution model: node energy (RAPL/NVML) shared out to pods by their share of "
                 "CPU cycles/instructions and GPU utilisation")


@dataclass(frozen=True)
class Preset:
    """One exporter's energy counters and how to read them."""

    name: str
    #: counter name -> the domain it counts in
    metrics: tuple[tuple[str, Domain], ...]
    unit: str
    #: several series of one counter from one host are summed (one per GPU or package); else one is expected
    several: bool
    #: the attribution model behind the figures, where an exporter already attributed them to a workload
    attributed: str = ""
    source: str = ""


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("dcgm", (("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", Domain.GPU),), "mJ", True,
           source="NVIDIA DCGM exporter (total energy since boot, per GPU)"),
    Preset("kepler-pod", tuple((f"kepler_pod_{d.value}_joules_total", d) for d in (Domain.CPU, Domain.GPU, Domain.DRAM)),
           "J", False, attributed=KEPLER_METHOD, source="Kepler (per pod)"),
    Preset("kepler-node", tuple((f"kepler_node_{d.value}_joules_total", d) for d in (Domain.CPU, Domain.GPU, Domain.DRAM)),
           "J", True, source="Kepler (per node)"),
    Preset("node-rapl", (("node_rapl_package_joules_total", Domain.CPU), ("node_rapl_dram_joules_total", Domain.DRAM)),
           "J", True, source="Prometheus node exporter, RAPL collector (core zones sit inside packages: not added)"),
)}


def domain_of_name(metric: str) -> Domain:
    """The domain a counter of your own counts in, from its name (gpu, dram, cpu/package; else system)."""
    low = metric.lower()
    for word, domain in (("gpu", Domain.GPU), ("dram", Domain.DRAM), ("cpu", Domain.CPU), ("package", Domain.CPU)):
        if word in low:
            return domain
    return Domain.SYSTEM


_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def selection(options: ScrapeOptions, flag_url: str) -> tuple[Preset, str | None]:
    """The preset to read (a ``--query`` of one counter becomes one) and the query it came from."""
    if options.preset and options.query:
        raise BadInput("give --preset or --query, not both")
    if options.unit is not None and options.unit not in UNITS_J:
        raise BadInput(f"--unit {options.unit!r} is not a unit of energy; choose one of: J, mJ, uJ")
    if options.query and options.selector:
        raise BadInput("--selector narrows a preset; put the labels into --query itself")
    if options.query:
        head = options.query.split("{", 1)[0].strip()
        if not _METRIC.match(head):
            raise BadInput(f"--query {options.query!r} must be a counter selector, metric{{label=\"value\"}}")
        return Preset(head, ((head, domain_of_name(head)),), options.unit or "J", True, source=options.query), \
            options.query
    if not options.preset:
        raise BadInput(f"give --preset ({', '.join(PRESETS)}) or --query with {flag_url}")
    preset = PRESETS.get(options.preset)
    if preset is None:
        raise BadInput(f"unknown preset {options.preset!r}; choose one of: {', '.join(PRESETS)}")
    if options.unit:
        preset = Preset(preset.name, preset.metrics, options.unit, preset.several, preset.attributed, preset.source)
    return preset, None


_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def parse_selector(text: str | None) -> list[tuple[str, str, str]]:
    """``pod="vllm-0",namespace=~"prod|canary"`` as (label, operator, value) matchers."""
    if not text or not text.strip():
        return []
    body = text.strip().removeprefix("{").removesuffix("}")
    matchers, pos = [], 0
    while pos < len(body):
        m = _MATCHER.match(body, pos)
        if m is None:
            raise BadInput(f"--selector {text!r} is not a list of label matchers such as pod=\"vllm-0\"")
        value = m.group(3).encode().decode("unicode_escape") if "\\" in m.group(3) else m.group(3)
        matchers.append((m.group(1), m.group(2), value))
        pos = m.end()
    return matchers


def matches(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    """Whether a series' labels satisfy every matcher, as Prometheus reads them (a missing label is "")."""
    for name, op, value in matchers:
        have = labels.get(name, "")
        ok = {"=": have == value, "!=": have != value}.get(op)
        if ok is None:
            ok = re.fullmatch(value, have) is not None
            ok = ok if op == "=~" else not ok
        if not ok:
            return False
    return True


def promql(preset: Preset, query: str | None, selector: str | None, window_s: int) -> str:
    """The range query that returns the raw samples of the last ``window_s`` seconds."""
    if query is not None:
        return f"{query}[{window_s}s]"
    names = "|".join(re.escape(m) for m, _ in preset.metrics)
    inner = f'__name__=~"{names}"' + (f",{selector.strip().removeprefix('{').removesuffix('}')}" if selector else "")
    return f"{{{inner}}}[{window_s}s]"
