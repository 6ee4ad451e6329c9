/* joulescore report: lays out the embedded figures.  The leaderboard is drawn first; plotly (about 5 MB of
   script, inlined as text) is evaluated on the next tick, and the charts are drawn as soon as it is ready.  It computes nothing but filters, sorts and grey-outs.
   Every string from the data goes on the page as text (textContent, setAttribute), never as markup;
   strings handed to plotly (which reads a few tags in its labels) are entity-escaped first. */
"use strict";
(function () {
  window.joulescoreStart = performance.now();
  const NONCE = document.currentScript.nonce;
  const pending = new Map();  // chart element -> its latest [traces, layout], until plotly is ready
  function plot(div, traces, layout) {
    if (window.Plotly) window.Plotly.react(div, traces, layout, CONFIG); else pending.set(div, [traces, layout]);
  }
  async function loadPlotly() {
    const s = document.createElement("script");
    s.nonce = NONCE;
    s.textContent = await unpack("plotly-src");
    document.head.append(s);  // runs now: the page's nonce lets this one script in
    for (const [div, [traces, layout]] of pending) if (div.isConnected) window.Plotly.react(div, traces, layout, CONFIG);
    pending.clear();
    window.joulescoreChartsReady = performance.now();
  }
  let DATA = null;
  /* The data and plotly travel gzip-compressed, base64-encoded (a third of the size); the browser's own
     DecompressionStream unpacks them, with no network access. */
  async function unpack(id) {
    const bytes = Uint8Array.from(atob(document.getElementById(id).textContent.trim()), (c) => c.charCodeAt(0));
    return new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).text();
  }
  const $ = (id) => document.getElementById(id);
  const CONFIG = { displaylogo: false, responsive: true };
  const KIND_COLOUR = { measured: "#1b7f3b", estimated: "#c25e00", mixed: "#8a5a00" };
  const GREY = "#cccccc";

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === "class") e.className = v; else e.setAttribute(k, String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  const pt = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  function fmt(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "n/a";
    if (typeof v !== "number") return String(v);
    return String(Number(v.toPrecision(digits || 4)));
  }
  const pct = (v) => (v === null || v === undefined ? "n/a" : v.toFixed(0) + "%");
  const starsText = (s) => (s === null || s === undefined ? "-" : "★".repeat(s) + "☆".repeat(5 - s));
  const runLink = (r, text) => el("a", { href: "#run=" + encodeURIComponent(r.uid), class: "run-link" }, text);

  const COLUMNS = [
    { key: "model", label: "model", cell: (r) => runLink(r, r.model) },
    { key: "engine", label: "engine" },
    { key: "precision", label: "dtype / quant." },
    { key: "batch", label: "batch", num: true },
    { key: "hardware", label: "hardware" },
    { key: "kind_label", label: "meter", cell: (r) => el("span", { class: r.kind }, r.kind_label) },
    { key: "wh", label: "Wh / 1,000 queries", num: true,
      cell: (r) => fmt(r.wh) + (r.wh_low === null ? "" : ` (${fmt(r.wh_low, 3)}–${fmt(r.wh_high, 3)}, ${r.band})`) },
    { key: "j_per_token", label: "J / output token", num: true, cell: (r) => fmt(r.j_per_token) },
    { key: "prefill_pct", label: "prefill / decode", num: true, cell: (r) => pct(r.prefill_pct) + " / " + pct(r.decode_pct) },
    { key: "quality", label: "quality", num: true, cell: (r) => r.quality_metric + " " + fmt(r.quality) },
    { key: "stars", label: "stars", cell: (r) => el("span", { class: "stars", title: r.stars_note }, starsText(r.stars)) },
    { key: "aies_stars", label: "AI Energy Score",  // the published scale: its own column, never the local stars
      cell: (r) => el("span", { class: "aies " + r.aies_status, title: r.aies_line }, r.aies) },
    { key: "date", label: "date" },
    { key: "disturbed", label: "disturbed",
      cell: (r) => (r.disturbed ? el("span", { class: "disturbed", title: r.disturbed_reason }, "DISTURBED") : "") },
    { key: "origin", label: "origin", cell: (r) => el("code", { title: r.origin }, r.origin.split("/").pop()) },
  ];
  const FILTERS = [["hardware_class", "hardware class"], ["engine", "engine"], ["size_class", "size class"],
                   ["kind", "measured or estimated"], ["reasoning", "reasoning mode"]];
  const CSV_KEYS = ["task", "model", "engine", "precision", "batch", "hardware", "hardware_class", "size_class", "kind",
                    "kind_label", "wh", "wh_low", "wh_high", "band", "j_per_token", "j_per_query", "prefill_pct",
                    "decode_pct", "quality_metric", "quality", "stars", "aies", "aies_status", "peer_group", "date", "disturbed",
                    "disturbed_reason", "p90_latency_s", "reasoning", "run_id", "origin"];

  const state = { task: null, sortKey: "wh", sortDir: 1, hidden: {}, latency: Infinity, energy: Infinity };
  const byUid = new Map();
  const taskRuns = () => DATA.runs.filter((r) => r.task === state.task);
  const passes = (r) => FILTERS.every(([k]) => !(state.hidden[k] || new Set()).has(String(r[k])));
  const excluded = (r) => (r.p90_latency_s !== null && r.p90_latency_s > state.latency) || (r.wh !== null && r.wh > state.energy);

  function visibleRows() {
    const rows = taskRuns().filter(passes);
    const k = state.sortKey, dir = state.sortDir;
    return rows.sort((a, b) => {
      const x = a[k], y = b[k];
      if (x === y) return 0;
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y))) * dir;
    });
  }

  function renderTabs() {
    const tabs = $("tabs");
    tabs.replaceChildren(...DATA.tasks.map((t) => {
      const b = el("button", { type: "button", role: "tab", "data-task": t, "aria-selected": t === state.task }, t);
      b.addEventListener("click", () => { state.task = t; state.hidden = {}; renderTabs(); setupControls(); renderBoard(); });
      return b;
    }));
  }

  function setupControls() {
    const runs = taskRuns();
    $("filters").replaceChildren(...FILTERS.map(([key, label]) => {
      const values = [...new Set(runs.map((r) => String(r[key])))].sort();
      return el("fieldset", { "data-filter": key }, el("legend", {}, label), ...values.map((v) => {
        const box = el("input", { type: "checkbox", value: v });
        box.checked = true;
        box.addEventListener("change", () => {
          const set = state.hidden[key] || (state.hidden[key] = new Set());
          if (box.checked) set.delete(v); else set.add(v);
          renderBoard();
        });
        return el("label", {}, box, " " + v);
      }));
    }));
    slider("latency-limit", "latency-value", runs.map((r) => r.p90_latency_s), "latency", " s");
    slider("energy-budget", "energy-value", runs.map((r) => r.wh), "energy", " Wh");
  }

  function slider(id, outId, values, key, unit) {
    const finite = values.filter((v) => v !== null && v !== undefined);
    const max = finite.length ? Math.max(...finite) : 1;
    const input = $(id);
    input.max = String(max); input.min = "0"; input.step = String(max / 200 || 0.01); input.value = String(max);
    state[key] = Infinity;
    $(outId).textContent = "no limit";
    input.oninput = () => {
      const v = Number(input.value);
      state[key] = v >= max ? Infinity : v;
      $(outId).textContent = v >= max ? "no limit" : fmt(v, 3) + unit;
      renderBoard();
    };
  }

  function renderBoard(withScatter = true) {
    const head = el("tr", {}, ...COLUMNS.map((c) => {
      const th = el("th", { "data-key": c.key, scope: "col" }, c.label);
      if (c.key === state.sortKey) th.setAttribute("aria-sort", state.sortDir > 0 ? "ascending" : "descending");
      th.addEventListener("click", () => {
        state.sortDir = state.sortKey === c.key ? -state.sortDir : 1; state.sortKey = c.key; renderBoard(false);
      });
      return th;
    }));
    $("board").tHead.replaceChildren(head);
    const rows = visibleRows();
    $("board").tBodies[0].replaceChildren(...rows.map((r) => el("tr", { "data-uid": r.uid, class: excluded(r) ? "excluded" : "" },
      ...COLUMNS.map((c) => el("td", { class: c.num ? "num" : "", "data-key": c.key }, c.cell ? c.cell(r) : String(r[c.key] ?? "-"))))));
    const all = taskRuns().length, greyed = rows.filter(excluded).length;
    $("count").textContent = `${rows.length} of ${all} runs shown` + (greyed ? `, ${greyed} outside the limits (greyed)` : "");
    $("board-note").textContent = DATA.not_shown ? `${DATA.not_shown} stored run(s) are not complete, or of another task, and are not on the board.` : "";
    if (!withScatter) return;  // a new order changes neither the references nor the scatter
    renderReferences();
    renderScatter(rows);
  }

  function renderReferences() {
    const refs = DATA.references.filter((r) => r.task === state.task);
    const cols = ["model", "hardware", "Wh / 1,000 queries", "J / token", "source", "published task", "note"];
    $("references").tHead.replaceChildren(el("tr", {}, ...cols.map((c) => el("th", {}, c))));
    $("references").tBodies[0].replaceChildren(...refs.map((r) => el("tr", { class: "reference", title: r.citation },
      el("td", {}, r.model), el("td", {}, r.hardware), el("td", { class: "num" }, fmt(r.wh)), el("td", { class: "num" }, fmt(r.j_per_token)),
      el("td", {}, "published (" + r.source + ")"), el("td", {}, r.published_task), el("td", {}, r.note))));
    if (!refs.length) $("references").tBodies[0].append(el("tr", {}, el("td", { colspan: cols.length, class: "note" }, "no published figure fits this task")));
  }

  function renderScatter(rows) {
    const placed = rows.filter((r) => r.wh !== null && r.quality !== null);
    const traces = [{
      type: "scatter", mode: "markers", name: "runs", x: placed.map((r) => r.wh), y: placed.map((r) => r.quality),
      text: placed.map((r) => pt(`${r.model} (${r.engine}, ${r.kind_label})`)),
      customdata: placed.map((r) => r.uid), hovertemplate: "%{text}<br>%{x:.4g} Wh/1k q, quality %{y:.4g}<extra></extra>",
      marker: { size: 9, color: placed.map((r) => (excluded(r) ? GREY : KIND_COLOUR[r.kind] || "#555")) },
      error_x: { type: "data", symmetric: false, color: "#999", thickness: 1,
                 array: placed.map((r) => (r.wh_high === null ? 0 : r.wh_high - r.wh)),
                 arrayminus: placed.map((r) => (r.wh_low === null ? 0 : r.wh - r.wh_low)) },
    }];
    const groups = new Map();
    for (const r of placed.filter((r) => r.pareto)) (groups.get(r.peer_group) || groups.set(r.peer_group, []).get(r.peer_group)).push(r);
    for (const [group, members] of groups) {
      members.sort((a, b) => a.wh - b.wh);
      traces.push({ type: "scatter", mode: "lines", name: pt("Pareto frontier: " + group), hoverinfo: "skip",
                    x: members.map((r) => r.wh), y: members.map((r) => r.quality), line: { dash: "dot", color: "#1b4f8a" } });
    }
    const metric = placed.length ? placed[0].quality_metric : "quality";
    const left = rows.length - placed.length;
    plot($("scatter"), traces, {
      title: { text: pt(`${state.task}: energy against ${metric}` + (left ? ` (${left} run(s) without a figure not placed)` : "")) },
      xaxis: { title: { text: "Wh per 1,000 queries (bars: band or interval)" } }, yaxis: { title: { text: pt(metric) } },
      margin: { t: 50, r: 20 }, showlegend: true, legend: { orientation: "h", y: -0.2 },
    });
  }

  function downloadCsv() {
    const cell = (v) => {
      let s = v === null || v === undefined ? "" : String(v);
      if (typeof v === "string" && /^[=+\-@\t\r]/.test(s)) s = "'" + s;  // never a formula in a spreadsheet
      return '"' + s.replace(/"/g, '""') + '"';
    };
    const lines = [CSV_KEYS.join(",")].concat(visibleRows().map((r) => CSV_KEYS.map((k) => cell(r[k])).join(",")));
    const url = URL.createObjectURL(new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv" }));
    const a = el("a", { href: url, download: `joulescore-${state.task}.csv` });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  /* ---- run pages ---------------------------------------------------------------------------- */
  function kv(pairs) {
    return el("dl", { class: "kv" }, ...pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v instanceof Node ? v : String(v ?? "n/a"))]));
  }
  const pre = (obj) => el("pre", {}, typeof obj === "string" ? obj : JSON.stringify(obj, null, 2));
  function chart(parent, traces, layout) {
    const div = el("div", { class: "chart" });
    parent.append(div);
    plot(div, traces, Object.assign({ margin: { t: 40, r: 20 }, showlegend: traces.length > 1 }, layout));
  }

  function labelCard(d, r) {
    const L = d.label;
    const f = (name, value) => el("div", { class: "field" }, el("small", {}, name), value);
    return el("div", { class: "label-card" }, el("h4", {}, "AI ENERGY LABEL"),
      f("model", el("strong", {}, L.model)), f("task", L.task), f("hardware", L.hardware), f("date", L.date),
      el("div", { class: "big " + L.kind }, fmt(L.wh_per_1000_queries)),
      el("div", { class: "field" }, "Wh per 1,000 queries"),
      el("div", { class: "field" }, `${fmt(L.j_per_output_token)} J per output token, ${fmt(L.j_per_query)} J per query`),
      f("stars", el("span", { class: "stars", title: r.stars_note }, starsText(r.stars) + (r.stars === null ? " " + r.stars_note : ` ${r.stars}/5`))),
      f("AI Energy Score", el("span", { class: "aies " + r.aies_status }, r.aies)),
      f("quality", L.quality), el("div", { class: "mark " + L.kind }, L.mark),
      f("energy source", L.source), el("div", { class: "field note" }, L.footer));
  }

  /* a run whose prompts are files: decoding them, energy per audio-second, what was resampled or resized */
  function mediaText(m) {
    let text = `${fmt(m.preprocessing_j)} J (${pct(m.preprocessing_pct)} of the total) decoding the ${m.inputs} files`;
    if (m.j_per_audio_s !== null) text += `; ${fmt(m.j_per_audio_s)} J per audio-second over ${fmt(m.audio_s)} s of audio`;
    if (m.converted) text += `; ${m.converted} converted: ${m.conversions.join("; ")}`;
    return text;
  }

  function renderRun(uid) {
    const d = DATA.details[uid], r = byUid.get(uid), box = $("run");
    if (!d || !r) { box.replaceChildren(el("p", {}, "no such run in this report")); return; }
    $("run-select").value = uid;
    const e = d.energy, p = d.prompts, i = d.interference;
    const sec = el("div", { class: "run-section", "data-uid": uid });
    sec.append(el("h3", {}, `${r.model} on ${r.task}`), el("p", { class: "meta" }, "run ", el("code", {}, d.run_id), " from ", el("code", {}, r.origin)));
    if (i.disturbed) sec.append(el("p", { class: "disturbed" }, "DISTURBED: " + (i.reason || "no reason recorded")));
    sec.append(labelCard(d, r));
    sec.append(kv([
      ["Wh / 1,000 queries", `${fmt(r.wh)} (${r.band} ${fmt(r.wh_low, 3)}–${fmt(r.wh_high, 3)})`],
      ["energy", `${fmt(e.total_j)} J total: prefill ${fmt(e.prefill_j)} J (${pct(r.prefill_pct)}), decode ${fmt(e.decode_j)} J (${pct(r.decode_pct)})`],
      ["by domain", ["cpu_j", "ram_j", "gpu_j", "system_j"].filter((k) => e[k] !== null).map((k) => `${k.slice(0, -2)} ${fmt(e[k])} J`).join(", ") || "n/a"],
      ["J / query, J / output token", `${fmt(r.j_per_query)}, ${fmt(r.j_per_token)}`],
      ["meter", r.kind_label],
      ["engine, dtype / quantization, batch", `${r.engine}, ${d.precision}, ${r.batch}`],
      ["prompts", `${d.counts.succeeded} answered of ${d.counts.prompts} (${d.counts.failed} failed)`],
      ["quality", `${d.quality.metric} ${fmt(d.quality.value)} over ${d.quality.n} prompts ${d.quality.note || ""}`],
      ["stars", `${starsText(r.stars)} ${r.stars_note} (peer group ${r.peer_group})`],
      ["AI Energy Score", el("span", { class: "aies-line aies " + d.aies.status, "data-status": d.aies.status }, d.aies.line)],
      ["steady state", d.steady_state ? `${fmt(d.steady_state.j_per_output_token)} J/token, ${fmt(d.steady_state.tokens_per_s)} tok/s` : "n/a (batch 1 or sequential)"],
      ["sweep", d.sweep ? `${d.sweep.id} / ${d.sweep.variant}` : "none"],
      ...(d.media ? [["preprocessing", mediaText(d.media)]] : []),
    ]));
    const charts = el("div", { class: "charts" });
    sec.append(el("p", { class: "note" }, p.step > 1 ? `Per-prompt charts show every ${p.step}th answered prompt: ${p.shown} of ${p.answered}. The figures above are over all of them.`
      : `Per-prompt charts show all ${p.answered} answered prompts.`), charts);
    chart(charts, [{ type: "histogram", x: p.energy_j, marker: { color: KIND_COLOUR[r.kind] } }],
          { title: { text: "energy per prompt" }, xaxis: { title: { text: "J" } }, yaxis: { title: { text: "prompts" } } });
    chart(charts, [{ type: "scatter", mode: "markers", x: p.input_tokens, y: p.energy_j, marker: { size: 5 } }],
          { title: { text: "J per query against input tokens (the cost of prefill)" }, xaxis: { title: { text: "input tokens" } }, yaxis: { title: { text: "J" } } });
    chart(charts, [{ type: "histogram", x: p.ttft_s, name: "time to first token", opacity: 0.6 },
                   { type: "histogram", x: p.latency_s, name: "total", opacity: 0.6 }],
          { title: { text: "latency" }, barmode: "overlay", xaxis: { title: { text: "s" } }, yaxis: { title: { text: "prompts" } } });
    chart(charts, [{ type: "scatter", mode: "lines+markers", x: p.elapsed_s, y: p.power_w, marker: { size: 3 } }],
          { title: { text: "power timeline: each prompt's mean power (its energy / its time)" }, xaxis: { title: { text: "metered time, s" } }, yaxis: { title: { text: "W" } } });
    if (d.reasoning) {
      const s = d.reasoning;
      chart(charts, [{ type: "bar", x: ["reasoning", "answer"], y: [s.reasoning_j, s.answer_j], name: "J",
                       text: [`${s.reasoning_tokens} tokens`, `${s.answer_tokens} tokens`], textposition: "auto" }],
            { title: { text: "decode energy: reasoning against answer" }, yaxis: { title: { text: "J" } } });
    }
    sec.append(el("h4", {}, "Impact per query"), impactTable(d.impact));
    const m = d.meter;
    sec.append(el("h4", {}, "The meter's provenance, in full"), kv([
      ["kind", m.kind], ["sources", (m.sources || []).join("; ")], ["includes", (m.includes || []).join("; ")],
      ["domains", (m.domains || []).join(", ")], ["stated uncertainty", m.uncertainty_pct === null ? "none stated" : `±${m.uncertainty_pct}%`],
      ["idle baseline", m.idle_baseline_s === null ? "none" : `${m.idle_baseline_s} s, ${JSON.stringify(m.idle_power_w)} W`],
    ]), el("h5", {}, "notes"), el("ul", {}, ...(m.notes || []).map((n) => el("li", {}, n))));
    if (m.per_domain) sec.append(el("h5", {}, "per domain"), pre(m.per_domain));
    if (d.errors.length) sec.append(el("h5", {}, "errors"), el("ul", {}, ...d.errors.map((x) => el("li", {}, x))));
    sec.append(el("details", {}, el("summary", {}, "settings and hardware"), pre(d.config), pre(d.hardware)));
    box.replaceChildren(sec);
  }

  function impactTable(imp) {
    if (!imp) return el("p", {}, "n/a: the run has no answered prompt with energy");
    const a = DATA.region, q = imp.per_query;
    const row = (name, key, scale) => el("tr", {}, el("td", {}, name),
      ...["central", "low", "high"].map((k) => el("td", { class: "num" }, fmt(q[k][key] * scale, 3))));
    return el("div", {}, el("p", { class: "note" }, `region ${a.region} (${a.region_name}): ${a.g_per_kwh} gCO2e/kWh ${a.grid_year}; PUE ${a.pue} [${a.pue_source}]; WUE ${a.wue_l_per_kwh} L/kWh [${a.wue_source}]`),
      el("table", { class: "impact" }, el("tr", {}, ...["", "central", "low", "high"].map((c) => el("th", {}, c))),
        row("facility energy (Wh)", "facility_kwh", 1000), row("carbon (gCO2e)", "carbon_g", 1), row("water (mL)", "water_l", 1000)),
      el("ul", { class: "note" }, ...imp.notes.map((n) => el("li", {}, n))));
  }

  /* ---- sweeps and reasoning modes ------------------------------------------------------------ */
  function table(cols, rows) {
    return el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", {}, c)))),
      el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", { class: typeof c === "string" && /^[\d.+\-x%pt/ ]+$/.test(c) ? "num" : "" }, c)))))));
  }
  const linked = (uid, text) => (uid && byUid.has(uid) ? el("a", { href: "#run=" + encodeURIComponent(uid) }, text) : text);

  function renderSweeps() {
    const box = $("sweep-list");
    if (!DATA.sweeps.length) { box.replaceChildren(el("p", { class: "note" }, "no sweeps in these databases")); return; }
    box.replaceChildren();
    for (const s of DATA.sweeps) {
      box.append(el("h3", {}, `${s.name}: sweep ${s.sweep_id} on ${s.task}`), el("p", { class: "meta" }, "from ", el("code", {}, s.origin)));
      if (s.error) { box.append(el("p", {}, s.error)); continue; }
      box.append(table(["variant", "status", "J/query", "Wh/1k q", "J/token", "steady J/token", "tok/s", "p90 s", "quality", "meter", "Pareto"],
        s.variants.map((v) => [linked(v.uid, v.variant), v.reason ? `${v.status}: ${v.reason}` : v.status, fmt(v.j_per_query), fmt(v.wh_per_1000_queries),
          fmt(v.j_per_output_token), fmt(v.steady_j_per_output_token), fmt(v.tokens_per_s), fmt(v.p90_latency_s), fmt(v.quality), v.energy_kind || "n/a", v.pareto ? "yes" : ""])));
      const rec = s.recommended;
      box.append(el("p", {}, rec ? `recommended (no limits set: the lowest energy per query): ${rec.variant}, ${fmt(rec.energy_ratio_vs_baseline)}x less energy per query than the baseline ${s.baseline} (${fmt(rec.baseline_j_per_query)} → ${fmt(rec.j_per_query)} J, ${rec.energy_kind}), quality delta ${fmt(rec.quality_delta)}`
        : "no variant meets the limits"));
      for (const n of s.notes) box.append(el("p", { class: "note" }, "note: " + n));
      const ok = s.variants.filter((v) => v.j_per_query !== null && v.p90_latency_s !== null);
      const trace = (vs, name, colour) => ({ type: "scatter", mode: "markers+text", name, x: vs.map((v) => v.j_per_query), y: vs.map((v) => v.p90_latency_s),
        text: vs.map((v) => pt(v.variant)), textposition: "top center", marker: { size: 10, color: colour } });
      chart(box, [trace(ok.filter((v) => v.pareto), "Pareto set", "#1b4f8a"), trace(ok.filter((v) => !v.pareto), "dominated", GREY)],
            { title: { text: "variants: energy against p90 latency" }, xaxis: { title: { text: "J per query" } }, yaxis: { title: { text: "p90 end-to-end latency, s" } } });
    }
  }

  function renderReasoning() {
    const box = $("reasoning-list");
    if (!DATA.reasoning.length) { box.replaceChildren(el("p", { class: "note" }, "no runs of one model under two or more reasoning modes")); return; }
    box.replaceChildren();
    for (const g of DATA.reasoning) {
      box.append(el("h3", {}, `${g.model} on ${g.task} (${g.prompts} prompts): modes against ${g.baseline}`), el("p", { class: "meta" }, "from ", el("code", {}, g.origin)));
      box.append(table(["mode", "budget", "J/query", "energy", "tok/q", "think/q", "cut", "accuracy", "change", "J/correct", "s/query", "meter"],
        g.modes.map((m) => [linked(m.uid, `${m.mode} (${m.method})`), String(m.budget), fmt(m.j_per_query), fmt(m.energy_ratio, 3) + "x", fmt(m.output_tokens_per_query),
          fmt(m.reasoning_tokens_per_query), `${m.truncated}/${m.prompts}`, m.accuracy === null ? "n/a" : fmt(100 * m.accuracy, 3) + "%",
          m.accuracy_change_points === null ? "n/a" : fmt(m.accuracy_change_points, 3) + " pt", fmt(m.j_per_correct), fmt(m.latency_mean_s), m.meter_kind])));
      box.append(el("p", {}, "verdict: " + g.verdict));
      const names = g.modes.map((m) => pt(m.mode));
      chart(box, [{ type: "bar", name: "J per query", x: names, y: g.modes.map((m) => m.j_per_query), offsetgroup: 1 },
                  { type: "bar", name: "accuracy", x: names, y: g.modes.map((m) => m.accuracy), yaxis: "y2", offsetgroup: 2 }],
            { title: { text: "energy and accuracy per mode" }, yaxis: { title: { text: "J per query" } },
              yaxis2: { title: { text: "accuracy" }, overlaying: "y", side: "right", rangemode: "tozero" }, showlegend: true });
    }
  }

  /* ---- live traffic (joulescore proxy) ------------------------------------------------------- */
  function renderTraffic() {
    const box = $("traffic-list");
    if (!box) return;  // no database has proxy requests: the section is not on the page
    box.replaceChildren();
    for (const t of DATA.traffic) {
      const sec = el("div", { class: "traffic", "data-origin": t.origin });
      sec.append(el("h3", {}, "from ", el("code", {}, t.origin)),
        el("p", { class: "meta" }, `${t.requests} requests, ${t.first_utc} to ${t.last_utc} UTC`));
      sec.append(table(["model", "requests", "ok", "failed", "J/request p50", "J/request p90", "J/output token", "energy J", "meter", "band"],
        t.models.map((m) => [m.model, String(m.requests), String(m.ok), String(m.failed), fmt(m.p50_j), fmt(m.p90_j), fmt(m.j_per_output_token),
          fmt(m.energy_j), m.mark, m.band_below_pct === null ? "n/a" : `−${fmt(m.band_below_pct, 3)}% / +${fmt(m.band_above_pct, 3)}%`])));
      sec.append(el("p", { class: "idle" }, `idle: ${fmt(t.idle_j)} J over ${fmt(t.idle_s, 3)} s; idle share of all energy: ` +
        (t.idle_share === null ? "n/a" : fmt(100 * t.idle_share, 3) + " %") + " (idle energy belongs to no model)"));
      const s = t.series;
      if (s.step > 1) sec.append(el("p", { class: "note" }, `The chart shows every ${s.step}th request: ${s.shown} of ${s.requests}. The table is over all of them.`));
      box.append(sec);
      const models = [...new Set(s.model)].sort();
      chart(sec, models.map((name) => {
        const idx = s.model.map((m, i) => (m === name ? i : -1)).filter((i) => i >= 0);
        return { type: "scatter", mode: "markers", name: pt(name), x: idx.map((i) => s.time_utc[i]), y: idx.map((i) => s.energy_j[i]),
                 text: idx.map((i) => pt(`${s.status[i]}, ${s.output_tokens[i]} output tokens`)),
                 hovertemplate: "%{x}<br>%{y:.4g} J, %{text}<extra></extra>",
                 marker: { size: 6, symbol: idx.map((i) => (s.status[i] === "ok" ? "circle" : "x")) } };
      }), { title: { text: "J per request over time (x: not answered)" }, xaxis: { title: { text: "request start, UTC" }, type: "date" },
            yaxis: { title: { text: "J per request" }, rangemode: "tozero" }, showlegend: true });
    }
  }

  function showFromHash() {
    const m = /^#run=(.*)$/.exec(location.hash);
    if (m) { renderRun(decodeURIComponent(m[1])); $("runs").scrollIntoView(); }
  }

  async function start() {
  DATA = JSON.parse(await unpack("report-data"));
  state.task = DATA.tasks[0] || null;
  for (const r of DATA.runs) byUid.set(r.uid, r);
  renderTabs();
  setupControls();
  renderBoard();
  $("csv").addEventListener("click", downloadCsv);
  const select = $("run-select");
  select.replaceChildren(...DATA.runs.map((r) => el("option", { value: r.uid }, `${r.task}: ${r.model} (${r.run_id}, ${r.origin})`)));
  select.addEventListener("change", () => { location.hash = "run=" + encodeURIComponent(select.value); });
  window.addEventListener("hashchange", showFromHash);
  if (/^#run=/.test(location.hash)) showFromHash(); else if (DATA.runs.length) renderRun(DATA.runs[0].uid);
  renderSweeps();
  renderReasoning();
  renderTraffic();
  window.joulescoreReady = performance.now();
  setTimeout(loadPlotly, 0);
  }
  start().catch((e) => { document.body.prepend(el("p", { class: "disturbed" }, "the report could not be read: " + e)); throw e; });
})();
