// tally dashboard page: reads the page's JSON (the dashboard spec), keeps its state in the
// URL, fetches /api/v1 (same-origin cookie, reads only) and draws each widget with uPlot or
// plain HTML. No framework; one file.
"use strict";
(() => {
  const page = JSON.parse(document.getElementById("page-data").textContent);
  const d = page.dashboard;
  const GSEC = page.granularitySeconds; // granularity -> seconds (schemas/granularity.py)
  const RSEC = page.rangeSeconds; // range -> seconds
  const MAX_BUCKETS = 800;
  const COLORS = ["#2b6cb0", "#dd6b20", "#38a169", "#c53030", "#805ad5", "#d69e2e", "#319795",
    "#d53f8c", "#718096", "#3182ce", "#975a16", "#2c7a7b"];
  // A series keeps its colour across views: the hash of its name picks the palette slot (the
  // next free one if another series of the chart holds it).
  const hash = (name) => [...name].reduce((h, c) => Math.imul(h ^ c.charCodeAt(0), 16777619), 2166136261) >>> 0;
  function colours(names) {
    const taken = new Set(), out = {};
    for (const name of [...new Set(names)].sort()) {
      let i = hash(name) % COLORS.length;
      for (let n = 0; n < COLORS.length && taken.has(i); n++) i = (i + 1) % COLORS.length;
      taken.add(i); out[name] = COLORS[i];
    }
    return out;
  }
  // Points with no drawn neighbour, which a line would leave out (one busy minute in an hour).
  const isolated = (ys) => ys.map((v, i) => (v !== null && v !== undefined && ys[i - 1] == null && ys[i + 1] == null ? i : -1)).filter((i) => i >= 0);
  const { $, el, executions, getJson, axes } = window.tally; // ui.js
  const fmt = (v, unit = "") => {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    const s = a >= 1e6 ? (v / 1e6).toFixed(2) + "M" : a >= 1e4 ? (v / 1e3).toFixed(1) + "k"
      : Number.isInteger(v) ? String(v) : v.toFixed(a < 10 ? 2 : 1);
    return unit ? `${s} ${unit}` : s;
  };

  const state = fromUrl();
  const charts = [];
  let timer = null;
  let generation = 0;
  let drawing = 0; // refreshes in flight

  function fromUrl() {
    const q = new URLSearchParams(location.search);
    const seg = {};
    for (const name of Object.keys(d.segments || {})) seg[name] = q.get("s." + name) || "";
    const range = q.get("range") || d.range;
    return {
      range: range === "custom" || RSEC[range] ? range : d.range,
      from: Number(q.get("from")) || 0, to: Number(q.get("to")) || 0,
      g: q.get("g") || d.granularity || "auto", tz: q.get("tz") || "browser",
      live: q.get("live") === "1", seg,
    };
  }

  function toUrl(push) {
    const q = new URLSearchParams();
    const keep = new URLSearchParams(location.search).get("key");
    if (keep !== null) q.set("key", keep); // the generic page's key
    if (state.range !== d.range) q.set("range", state.range);
    if (state.range === "custom") { q.set("from", state.from); q.set("to", state.to); }
    if (state.g !== (d.granularity || "auto")) q.set("g", state.g);
    if (state.tz !== "browser") q.set("tz", state.tz);
    if (state.live) q.set("live", "1");
    for (const [k, v] of Object.entries(state.seg)) if (v) q.set("s." + k, v);
    const url = location.pathname + (q.toString() ? "?" + q : "");
    if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
  }

  function resolvedKey() {
    let key = d.key;
    for (const [name, seg] of Object.entries(d.segments || {})) {
      if (!state.seg[name] && seg.all) return seg.all;
    }
    for (const name of Object.keys(d.segments || {})) {
      const v = state.seg[name];
      key = v ? key.replace(`{${name}}`, v) : key.replace(`::{${name}}`, "").replace(`{${name}}`, "");
    }
    return key;
  }

  // The range; given the refresh's settled time (asOf), it ends there at the latest.
  function timeWindow(asOf = null) {
    if (state.range === "custom" && state.from && state.to && state.to > state.from) {
      return { since: state.from, until: asOf === null ? state.to : Math.min(state.to, asOf) };
    }
    const until = asOf === null ? Math.floor(Date.now() / 1000) : asOf;
    return { since: until - (RSEC[state.range] || 86400), until };
  }

  // One settled time per refresh (/api/v1/settled: the start of a minute every event before it
  // has reached), sent as as_of with every widget's request: each reads the same rows, so the
  // widgets agree to the unit under live traffic; later minutes show at the next refresh.
  async function settledTime() {
    try {
      return (await getJson("/api/v1/settled")).as_of;
    } catch (e) {
      console.warn("settled:", e.message);
      return null; // read up to now, as before (widgets may then differ by what arrives meanwhile)
    }
  }

  function showAsOf(asOf) {
    const box = $("as-of");
    box.hidden = false;
    box.dataset.asOf = asOf === null ? "" : String(asOf);
    if (asOf === null) { box.textContent = "as of now"; box.title = "the settled time was not available"; return; }
    const t = tzDate(asOf);
    const hhmm = `${String(t.getHours()).padStart(2, "0")}:${String(t.getMinutes()).padStart(2, "0")}`;
    box.textContent = `as of ${hhmm}`;
    box.title = `every widget counts what happened before ${hhmm}; the minutes since are still arriving and show at the next refresh (late data for earlier minutes too)`;
  }

  const bucketCount = (w, g) => Math.ceil((w.until - w.since) / GSEC[g]) + 1;

  // One message for the page (a granularity too fine for the range, an error every widget
  // would repeat) instead of one per widget; "" hides it.
  function pageError(message) {
    $("page-error").textContent = message;
    $("page-error").hidden = !message;
  }

  function tooFine(ctx) {
    if (state.g === "auto") return "";
    const n = bucketCount(ctx, ctx.g);
    if (n <= page.maxBuckets) return "";
    const coarser = ["1m", "1h", "1d", "1w", "1mo"].find((g) => page.granularities.includes(g) && bucketCount(ctx, g) <= page.maxBuckets);
    const range = state.range === "custom" ? "this range" : state.range;
    return `${range} at ${ctx.g} is ${n} buckets, more than the ${page.maxBuckets} the server reads per request: choose ${coarser || "a shorter range"}${coarser ? " or coarser" : ""}.`;
  }

  function granularity(w) {
    if (state.g !== "auto" && page.granularities.includes(state.g)) return state.g;
    const span = w.until - w.since;
    const choices = ["1m", "1h", "1d", "1w", "1mo"].filter((g) => page.granularities.includes(g));
    return choices.find((g) => span / GSEC[g] <= MAX_BUCKETS) || choices[choices.length - 1];
  }

  function query(path, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (Array.isArray(v)) v.forEach((x) => q.append(k, x)); else if (v !== undefined && v !== null) q.set(k, v);
    }
    return `${path}?${q}`;
  }

  // ---- controls -------------------------------------------------------------------------
  function zones() {
    const select = $("tz");
    const browser = Intl.DateTimeFormat().resolvedOptions().timeZone;
    const options = [["browser", `browser (${browser})`], ["UTC", "UTC"]];
    if (page.serverZone !== "UTC") options.push([page.serverZone, `${page.serverZone} (buckets)`]);
    if (!options.some(([v]) => v === state.tz)) options.push([state.tz, state.tz]);
    for (const [value, label] of options) select.append(el("option", { value }, label));
    select.value = state.tz;
  }

  async function segments() {
    const names = Object.keys(d.segments || {});
    if (!names.length) return;
    const pattern = d.key.replace(/\{[A-Za-z_][A-Za-z0-9_]*\}/g, "*");
    const regex = new RegExp("^" + d.key.split(/(\{[A-Za-z_][A-Za-z0-9_]*\})/).map((part) =>
      /^\{.*\}$/.test(part) ? "([^:]+)" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("") + "$");
    const keys = await getJson(query("/api/v1/keys", { pattern, since: "30d", limit: 1000 }));
    names.forEach((name, i) => {
      const found = new Set();
      for (const k of keys) { const m = regex.exec(k.key); if (m) found.add(m[i + 1]); }
      if (state.seg[name]) found.add(state.seg[name]);
      const select = $("seg-" + name);
      for (const v of [...found].sort()) select.append(el("option", { value: v }, v));
      select.value = state.seg[name];
    });
  }

  function syncControls() {
    document.querySelectorAll("[data-range]").forEach((b) =>
      b.setAttribute("aria-pressed", String(b.dataset.range === state.range)));
    $("custom").hidden = state.range !== "custom";
    $("granularity").value = state.g;
    $("live").checked = state.live;
    for (const name of Object.keys(d.segments || {})) $("seg-" + name).value = state.seg[name];
    $("key").textContent = resolvedKey();
    const w = timeWindow();
    for (const option of $("granularity").options) { // a granularity with too many buckets for the range is off
      const n = option.value === "auto" ? 0 : bucketCount(w, option.value);
      option.disabled = n > page.maxBuckets;
      option.title = option.disabled ? `${n} buckets in this range; the server reads at most ${page.maxBuckets}` : "";
    }
    const local = (t) => { const x = new Date((t - new Date(t * 1000).getTimezoneOffset() * 60) * 1000); return x.toISOString().slice(0, 16); };
    $("from").value = local(w.since); $("to").value = local(w.until);
  }

  function change(update, push = false) {
    update();
    toUrl(push);
    syncControls();
    schedule();
    refresh();
  }

  function bind() {
    document.querySelectorAll("[data-range]").forEach((b) => b.addEventListener("click", () => change(() => {
      if (b.dataset.range === "custom") {
        const w = timeWindow(); state.from = w.since; state.to = w.until; state.live = false;
      }
      state.range = b.dataset.range;
    })));
    const custom = () => change(() => {
      const f = Date.parse($("from").value) / 1000, t = Date.parse($("to").value) / 1000;
      if (f && t && t > f) { state.from = Math.floor(f); state.to = Math.floor(t); }
    });
    $("from").addEventListener("change", custom);
    $("to").addEventListener("change", custom);
    $("granularity").addEventListener("change", (e) => change(() => { state.g = e.target.value; }));
    $("tz").addEventListener("change", (e) => change(() => { state.tz = e.target.value; }));
    $("live").addEventListener("change", (e) => change(() => {
      state.live = e.target.checked; if (state.live && state.range === "custom") state.range = d.range;
    }));
    $("refresh").addEventListener("click", () => refresh());
    for (const name of Object.keys(d.segments || {})) {
      $("seg-" + name).addEventListener("change", (e) => change(() => { state.seg[name] = e.target.value; }, true));
    }
    window.addEventListener("popstate", () => { Object.assign(state, fromUrl()); syncControls(); refresh(); });
    document.addEventListener("keydown", (e) => {
      if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
      const ranges = [...page.ranges, "custom"];
      if (e.key === "r") refresh();
      else if (e.key === "l") $("live").click();
      else if (/^[1-5]$/.test(e.key)) document.querySelector(`[data-range="${ranges[Number(e.key) - 1]}"]`).click();
    });
    let width = window.innerWidth;
    window.addEventListener("resize", () => {
      if (Math.abs(window.innerWidth - width) < 40) return;
      width = window.innerWidth; refresh();
    });
  }

  // Live mode skips a tick while a refresh is still drawing (a slow server would otherwise
  // start a new one every tick and never finish any); a change by the user always refreshes.
  function schedule() {
    if (timer) clearInterval(timer);
    timer = state.live ? setInterval(() => { if (!drawing) refresh(); }, page.refreshSeconds * 1000) : null;
  }

  // ---- widgets --------------------------------------------------------------------------
  const visible = (w) => (w.rows || []).filter((r) => !r.hidden);
  const labelOf = (w, name) => {
    const spec = (w.rows || []).find((r) => (r.path || r.expression) === name);
    return (spec && spec.label) || name;
  };

  function seriesParams(w, ctx, extra = {}) {
    const rows = w.rows || [];
    return {
      key: ctx.key, since: ctx.since, until: ctx.until, granularity: ctx.g, as_of: ctx.asOf,
      path: rows.filter((r) => r.path).map((r) => r.path),
      expression: rows.filter((r) => r.expression).map((r) => r.expression),
      top: w.top, ...extra,
    };
  }

  function rowLabel(w, r) {
    if (r.kind !== "match" && r.kind !== "other") return labelOf(w, r.name);
    const item = r.kind === "other" ? "(other)" : itemOf(r);
    const specs = visible(w);
    return specs.length > 1 ? `${labelOf(w, r.source)}: ${item}` : item;
  }

  function hiddenNames(w) {
    return new Set((w.rows || []).filter((r) => r.hidden).map((r) => r.path || r.expression));
  }

  // Every KPI of the page in one request: the range and the previous period, two queries.
  function kpiQuery(ctx) {
    const rows = d.widgets.filter((w) => w.type === "kpi").flatMap((w) => w.rows || []);
    if (!rows.length) return null;
    const unique = (xs) => [...new Set(xs)];
    return query("/ui/api/kpi", {
      key: ctx.key, since: ctx.since, until: ctx.until, granularity: ctx.g, as_of: ctx.asOf,
      path: unique(rows.filter((r) => r.path).map((r) => r.path)),
      expression: unique(rows.filter((r) => r.expression).map((r) => r.expression)),
    });
  }

  // The change against the previous period, one unit only: percentage points for a value in
  // percent ("▼ 0.36 pp"), else percent of the previous value ("▲ 4.2%"), or the plain
  // difference when the previous value is 0.
  function delta(diff, previous, unit) {
    if (unit === "%") return `${fmt(Math.abs(diff))} pp`;
    if (!previous) return fmt(Math.abs(diff), unit);
    return `${Math.abs((100 * diff) / previous).toFixed(1)}%`;
  }

  // The range ends inside a bucket (today so far at 1d): the previous period is cut at the
  // same elapsed part (yesterday until this time of day), so like is compared with like.
  const cut = (kpi) => kpi.previous_until && kpi.previous_until < kpi.since;
  function previousPeriod(kpi) {
    const span = (a, b) => `${tzDate(a).toLocaleString()} – ${tzDate(b).toLocaleString()}`;
    return cut(kpi)
      ? `the same elapsed part of the previous period (${span(kpi.previous_since, kpi.previous_until)})`
      : `the previous period (${span(kpi.previous_since, kpi.since)})`;
  }

  async function drawKpi(w, body, section, ctx) {
    section.dataset.query = ctx.kpiUrl;
    const all = await ctx.kpi;
    const mine = new Set((w.rows || []).map((r) => r.path || r.expression));
    const data = { rows: all.rows.filter((r) => mine.has(r.name)) };
    const hide = hiddenNames(w);
    const box = el("div", { class: "kpi" });
    for (const row of data.rows.filter((r) => !hide.has(r.name))) {
      const item = el("div", { class: "kpi-item", "data-name": row.name, "data-value": String(row.value) });
      item.append(el("span", { class: "value" }, fmt(row.value, w.unit)));
      if (row.value !== null && row.previous !== null) {
        const diff = row.value - row.previous;
        const good = w.better === "lower" ? diff < 0 : diff > 0;
        const cls = diff === 0 || !w.better ? "" : good ? "up" : "down";
        item.append(el("span", { class: `change ${cls}`, title: `${previousPeriod(all)}: ${fmt(row.previous, w.unit)}` },
          `${diff >= 0 ? "▲" : "▼"} ${delta(diff, row.previous, w.unit)} vs previous${cut(all) ? " (to this time)" : ""}`));
      }
      if (visible(w).length > 1) item.append(el("span", { class: "label" }, labelOf(w, row.name)));
      box.append(item);
    }
    body.replaceChildren(box);
  }

  function tzDate(ts) {
    const date = new Date(ts * 1000);
    if (state.tz === "browser") return date;
    return uPlot.tzDate(date, state.tz);
  }

  function chart(body, buckets, rows, opts = {}) {
    const style = opts.style || "line";
    const width = Math.max(200, body.clientWidth || body.parentElement.clientWidth - 24);
    const raw = rows.map((r) => r.points.map((v) => (v === null ? null : v)));
    let drawn = raw;
    if (style === "stacked" || style === "normalized") {
      const totals = buckets.map((_, i) => raw.reduce((s, p) => s + (p[i] || 0), 0));
      let acc = buckets.map(() => 0);
      drawn = raw.map((p) => {
        acc = acc.map((a, i) => a + (style === "normalized" ? (totals[i] ? (100 * (p[i] || 0)) / totals[i] : 0) : p[i] || 0));
        return acc.slice();
      }).reverse();
    }
    const order = style === "stacked" || style === "normalized" ? rows.slice().reverse() : rows;
    const rawOrdered = style === "stacked" || style === "normalized" ? raw.slice().reverse() : raw;
    const bars = style === "stacked" || style === "normalized" ? uPlot.paths.bars({ size: [0.8, 40], gap: 1 }) : undefined;
    const palette = colours(rows.map((r) => r.name));
    const series = [{}].concat(order.map((r) => {
      const c = palette[r.name];
      return {
        label: opts.label ? opts.label(r) : r.name,
        stroke: c, width: 1.5,
        fill: style === "line" ? undefined : c + (style === "area" ? "33" : "cc"),
        paths: bars,
        points: { show: buckets.length < 60 && !bars, filter: (u, si, show) => (show || bars ? null : isolated(u.data[si])) },
        value: (u, v, si, idx) => (idx === null || idx === undefined ? "–" : fmt(rawOrdered[si - 1][idx], opts.unit)),
        spanGaps: false,
      };
    }));
    const g = opts.granularity;
    const missed = opts.missed || [];
    const plot = new uPlot({
      width, height: opts.height || 220, tzDate,
      series,
      scales: {
        x: { time: true, range: (u, min, max) => [buckets[0], buckets[buckets.length - 1] + GSEC[g] * 0.999] },
        // bars and areas are read by their height: their axis starts at 0
        ...(style === "line" ? {} : { y: { range: (u, min, max) => [Math.min(0, min ?? 0), max > 0 ? max * 1.05 : 1] } }),
      },
      axes: axes({ size: 56, values: (u, vals) => vals.map((v) => fmt(v)) }),
      legend: { live: true },
      cursor: { focus: { prox: 16 } },
      hooks: {
        drawClear: [(u) => {
          if (!missed.length) return;
          const ctx2 = u.ctx; ctx2.save(); ctx2.fillStyle = "rgba(197, 48, 48, 0.14)";
          for (const i of missed) {
            const x0 = u.valToPos(buckets[i], "x", true), x1 = u.valToPos(buckets[i] + GSEC[g], "x", true);
            ctx2.fillRect(x0, u.bbox.top, Math.max(1, x1 - x0), u.bbox.height);
          }
          ctx2.restore();
        }],
      },
    }, [buckets, ...drawn], body);
    if (opts.key) {
      // Dig in: a click on a bucket lists the traced executions of that key in it (/traces).
      plot.over.title = "click a bucket to list its executions";
      plot.over.addEventListener("click", () => {
        const i = plot.cursor.idx;
        if (i === null || i === undefined) return;
        location.href = executions(opts.key, buckets[i], buckets[i] + GSEC[g]);
      });
    }
    charts.push(plot);
    return plot;
  }

  async function drawTimeseries(w, body, section, ctx) {
    const url = query("/api/v1/series", seriesParams(w, ctx));
    section.dataset.query = url;
    const data = await getJson(url);
    const s = data.series;
    const hide = hiddenNames(w);
    const rows = s.rows.filter((r) => !hide.has(r.name));
    section.dataset.buckets = String(s.buckets.length);
    section.dataset.firstBucket = String(s.buckets[0]);
    body.replaceChildren();
    if (!rows.length) { body.append(el("p", { class: "nodata" }, "No matching paths in this range.")); return; }
    let missed = [];
    let note = "";
    if (w.expected !== null && w.expected !== undefined) {
      // expected runs per bucket: `expected` per `expected_per` (e.g. 1 per 1h), scaled
      const per = w.expected_per ? (w.expected * GSEC[s.granularity]) / GSEC[w.expected_per] : w.expected;
      if (per < 1) {
        note = `A ${s.granularity} bucket is shorter than ${w.expected_per}: choose ${w.expected_per} or coarser to check missed runs.`;
      } else {
        const done = (i) => (s.buckets[i + 1] ?? s.end) <= ctx.until; // not the bucket in progress
        missed = s.buckets.map((_, i) => i).filter((i) => done(i) && rows.some((r) => (r.points[i] || 0) < per));
        note = `${missed.length} of ${s.buckets.length} buckets had a job with fewer than ${fmt(per)} run(s) (shaded).`;
      }
      section.dataset.missed = String(missed.length);
    }
    chart(body, s.buckets, rows, { style: w.style, unit: w.unit, granularity: s.granularity, missed, label: (r) => rowLabel(w, r), key: ctx.key });
    if (note) body.append(el("p", { class: "note" }, note));
  }

  function itemOf(row) {
    // "tenants.acme.count" from the wildcard "tenants.*.count" -> "acme"
    if (!row.source || row.kind !== "match") return null;
    const parts = row.source.split("."), names = row.name.split(".");
    const i = parts.indexOf("*");
    return i >= 0 && names.length === parts.length ? names[i] : null;
  }

  function barList(items, unit, onPick) {
    const max = Math.max(...items.map((i) => Math.abs(i.value || 0)), 1);
    const list = el("ul", { class: "bars" });
    for (const item of items) {
      const li = el("li", { "data-name": item.name, "data-value": String(item.value), title: `${item.name}: ${fmt(item.value, unit)}` });
      const name = onPick && item.pick ? el("button", { class: "name", type: "button" }, item.label) : el("span", { class: "name" }, item.label);
      if (onPick && item.pick) name.addEventListener("click", () => onPick(item.pick));
      const bar = el("span", { class: "bar" });
      bar.style.width = `${(100 * Math.abs(item.value || 0)) / max}%`;
      li.append(name, bar, el("span", { class: "num" }, fmt(item.value, unit)));
      list.append(li);
    }
    return list;
  }

  async function drawCategory(w, body, section, ctx) {
    const url = query("/api/v1/series", seriesParams(w, ctx, { category: "true" }));
    section.dataset.query = url;
    const data = await getJson(url);
    const hide = hiddenNames(w);
    const byName = Object.fromEntries(data.series.rows.map((r) => [r.name, r]));
    const items = data.category.filter((c) => !hide.has(c.name)).map((c) => {
      const row = byName[c.name] || {};
      const pick = w.drill && row.kind === "match" ? itemOf(row) : null;
      return { name: c.name, value: c.value, pick, label: row.kind ? rowLabel(w, row) : labelOf(w, c.name) };
    });
    if (!items.length) { body.replaceChildren(el("p", { class: "nodata" }, "No matching paths in this range.")); return; }
    items.sort((a, b) => ((byName[a.name] || {}).kind === "other") - ((byName[b.name] || {}).kind === "other"));
    const drill = w.drill && !state.seg[w.drill] ? (v) => change(() => { state.seg[w.drill] = v; }, true) : null;
    body.replaceChildren(barList(items, w.unit, drill));
    if (drill) body.append(el("p", { class: "note" }, `Click a name to show only that ${w.drill}.`));
  }

  const stat = (points) => {
    const xs = points.filter((v) => v !== null);
    const sum = xs.reduce((a, b) => a + b, 0);
    return { sum, mean: xs.length ? sum / xs.length : null, min: xs.length ? Math.min(...xs) : null,
      max: xs.length ? Math.max(...xs) : null, last: points.length ? points[points.length - 1] : null };
  };

  async function drawTable(w, body, section, ctx) {
    const url = query("/api/v1/series", seriesParams(w, ctx));
    section.dataset.query = url;
    const data = await getJson(url);
    const hide = hiddenNames(w);
    const rows = data.series.rows.filter((r) => !hide.has(r.name) && !hide.has(r.source));
    const specs = visible(w);
    const pivot = specs.length > 0 && specs.every((r) => r.path && r.path.split("*").length === 2);
    const table = el("table");
    if (pivot) {
      // one line per wildcard match, one column per row pattern
      const cols = specs.map((r) => r.path);
      const lines = new Map();
      for (const r of rows) {
        const item = r.kind === "other" ? "(other)" : itemOf(r);
        if (item === null) continue;
        if (!lines.has(item)) lines.set(item, {});
        lines.get(item)[r.source] = stat(r.points).sum;
      }
      const head = el("tr");
      head.append(el("th", {}, cols[0].split(".")[cols[0].split(".").indexOf("*") - 1] || "item"));
      for (const c of specs) head.append(el("th", { scope: "col" }, c.label || c.path));
      const thead = el("thead"); thead.append(head); table.append(thead);
      const tbody = el("tbody");
      const sorted = [...lines.entries()].sort((a, b) => (b[1][cols[0]] || 0) - (a[1][cols[0]] || 0));
      for (const [item, values] of sorted) {
        const tr = el("tr", { "data-name": item });
        tr.append(el("td", {}, item));
        for (const c of cols) {
          const v = values[c] || 0;
          const flag = specs.find((r) => r.path === c).flag_zero;
          const zero = flag && v === 0 && (values[cols[0]] || 0) > 0;
          tr.append(el("td", zero ? { class: "zero", title: "zero while it ran (idle)" } : {}, fmt(v)));
        }
        tbody.append(tr);
      }
      table.append(tbody);
      if (!sorted.length) { body.replaceChildren(el("p", { class: "nodata" }, "No matching paths in this range.")); return; }
    } else {
      const head = el("tr");
      for (const h of ["row", "sum", "mean", "min", "max", "last"]) head.append(el("th", { scope: "col" }, h));
      const thead = el("thead"); thead.append(head); table.append(thead);
      const tbody = el("tbody");
      for (const r of rows) {
        const s = stat(r.points);
        const tr = el("tr", { "data-name": r.name });
        tr.append(el("td", {}, labelOf(w, r.name)));
        for (const v of [s.sum, s.mean, s.min, s.max, s.last]) tr.append(el("td", {}, fmt(v, w.unit)));
        tbody.append(tr);
      }
      table.append(tbody);
    }
    body.replaceChildren(table);
  }

  // Percentile bands from the quantiles API (sketches merged per bucket, within 1%).
  const BANDS = [["p50", 0.5], ["p95", 0.95], ["p99", 0.99]];

  async function drawDistribution(w, body, section, ctx) {
    const base = w.path;
    const url = query("/api/v1/quantiles", { key: ctx.key, path: base, since: ctx.since, until: ctx.until, granularity: ctx.g, as_of: ctx.asOf, q: BANDS.map(([, l]) => l) });
    section.dataset.query = url;
    const d = await getJson(url);
    const total = d.count.reduce((s, n) => s + n, 0);
    if (!total) {
      section.dataset.distribution = "none";
      body.replaceChildren(el("div", { class: "nodata", role: "status" },
        `No distribution data for ${base} in this range (samples are tracked as a distribution, e.g. a job's duration).`));
      return;
    }
    section.dataset.distribution = "quantiles";
    // the range's quantile is not the mean of bucket quantiles: show the largest bucket's value
    // only per bucket; the headline is the last bucket with samples
    const lastI = d.count.map((n, i) => (n ? i : -1)).filter((i) => i >= 0).pop();
    const q = el("div", { class: "quantiles" });
    for (const [name, level] of BANDS) {
      const v = d.quantiles[d.qs.indexOf(level)][lastI];
      q.append(el("span", { "data-quantile": name, "data-value": String(v) }, `${name} ${fmt(v)}${w.unit ? " " + w.unit : ""}`));
    }
    q.append(el("span", { class: "muted" }, `(latest bucket, ${fmt(d.count[lastI])} samples, within ${Math.round(d.alpha * 100)}%)`));
    body.replaceChildren(q);
    const rows = BANDS.map(([name, level]) => ({ name, points: d.quantiles[d.qs.indexOf(level)] }));
    chart(body, d.buckets, rows, { granularity: d.granularity, height: 150, unit: w.unit });
  }

  // Gauges: per bucket the last reading of each path (the gauge API), e.g. a queue's depth.
  async function drawGauge(w, body, section, ctx) {
    const urls = w.rows.map((r) => query("/api/v1/gauge", { key: ctx.key, path: r.path, since: ctx.since, until: ctx.until, granularity: ctx.g, as_of: ctx.asOf }));
    section.dataset.query = urls.join(" ");
    const data = await Promise.all(urls.map(getJson));
    const rows = data.map((d, j) => ({ name: w.rows[j].label || w.rows[j].path, points: d.last }));
    if (!data.some((d) => d.last.some((v) => v !== null))) {
      section.dataset.gauge = "none";
      body.replaceChildren(el("div", { class: "nodata", role: "status" }, `No readings of ${w.rows.map((r) => r.path).join(", ")} in this range.`));
      return;
    }
    section.dataset.gauge = "last";
    const q = el("div", { class: "quantiles" });
    data.forEach((d, j) => {
      const i = d.last.map((v, k) => (v === null ? -1 : k)).filter((k) => k >= 0).pop();
      q.append(el("span", { "data-gauge": w.rows[j].path, "data-value": i === undefined ? "" : String(d.last[i]) },
        `${rows[j].name} ${i === undefined ? "–" : fmt(d.last[i])}${w.unit ? " " + w.unit : ""}`));
    });
    body.replaceChildren(q);
    chart(body, data[0].buckets, rows, { style: w.style, granularity: data[0].granularity, height: 150, unit: w.unit });
  }

  function drawText(w, body) {
    body.replaceChildren(...w.text.split(/\n\s*\n/).map((p) => el("p", {}, p)));
  }

  const DRAW = { kpi: drawKpi, timeseries: drawTimeseries, category: drawCategory, table: drawTable,
    distribution: drawDistribution, gauge: drawGauge, text: drawText };

  async function freshness(ctx) {
    const box = $("freshness");
    const found = await getJson(query("/api/v1/keys", { pattern: ctx.key, since: ctx.since, until: ctx.until, limit: 1 }));
    $("empty").hidden = found.length > 0;
    if (!found.length) { box.textContent = "no data in range"; box.classList.add("stale"); return; }
    if (state.range === "custom" && ctx.until < Date.now() / 1000 - 60) { // a past range: how late the key is says nothing about it
      box.textContent = `range ends ${new Date(ctx.until * 1000).toLocaleString()}`;
      box.title = `last write to ${ctx.key}: ${found[0].last_seen}`;
      box.classList.remove("stale");
      return;
    }
    const behind = Math.max(0, Math.round((Date.now() / 1000 - Date.parse(found[0].last_seen) / 1000) / 60));
    box.textContent = `last write ${behind < 1 ? "this minute" : behind + " min ago"} · updated ${new Date().toLocaleTimeString()}${state.live ? " · live" : ""}`;
    box.title = `last write to ${ctx.key}: ${found[0].last_seen}`;
    box.classList.toggle("stale", state.live && behind > 5);
  }

  // Rows of counter widgets naming a path the key never wrote ("amount.summ"), with the
  // closest paths it did write, from /ui/api/unknown: one request for the page.
  const COUNTERS = new Set(["kpi", "timeseries", "category", "table"]);
  function unknownQuery(ctx) {
    const rows = d.widgets.filter((w) => COUNTERS.has(w.type)).flatMap((w) => w.rows || []);
    if (!rows.length) return null;
    const unique = (xs) => [...new Set(xs)];
    return query("/ui/api/unknown", {
      key: ctx.key,
      path: unique(rows.filter((r) => r.path).map((r) => r.path)),
      expression: unique(rows.filter((r) => r.expression).map((r) => r.expression)),
    });
  }

  async function flagUnknown(w, body, section, ctx) {
    if (!COUNTERS.has(w.type)) return;
    const mine = new Set((w.rows || []).map((r) => r.path || r.expression));
    const unknown = (await ctx.unknown).filter((u) => mine.has(u.row));
    section.dataset.unknown = unknown.map((u) => u.path).join(" ");
    if (!unknown.length) return;
    const flags = unknown.map((u) => el("p", { class: "unknown-path", role: "status", "data-path": u.path },
      `no data for ${u.path}` + (u.suggestions.length ? ` — did you mean ${u.suggestions[0]}?` : " — the key never wrote it")));
    if (w.type === "kpi") body.replaceChildren(...flags); // not a "0 ▲ 0" that looks like a real zero
    else body.prepend(...flags);
  }

  async function refresh() {
    drawing++;
    try {
      await draw();
    } finally {
      drawing--;
    }
  }

  async function draw() {
    const mine = ++generation;
    const asOf = await settledTime(); // one "as of" for every request of this refresh
    if (mine !== generation) return; // a newer refresh started meanwhile and draws instead
    const w = timeWindow(asOf);
    const ctx = { key: resolvedKey(), since: w.since, until: w.until, g: granularity(w), asOf };
    showAsOf(asOf);
    const over = tooFine(ctx); // then no widget asks for what must fail
    pageError(over);
    ctx.kpiUrl = over ? null : kpiQuery(ctx);
    ctx.kpi = ctx.kpiUrl ? getJson(ctx.kpiUrl) : Promise.resolve({ rows: [] });
    ctx.kpi.catch(() => {}); // each KPI widget shows the error itself
    const unknownUrl = over ? null : unknownQuery(ctx);
    ctx.unknown = (unknownUrl ? getJson(unknownUrl) : Promise.resolve([])).catch(() => []);
    document.body.dataset.state = "loading";
    while (charts.length) charts.pop().destroy();
    const jobs = [freshness(ctx).catch((e) => { $("freshness").textContent = "freshness: " + e.message; })];
    const failed = [];
    d.widgets.forEach((widget, i) => {
      const section = $("w" + i);
      const body = section.querySelector(".body");
      if (over && widget.type !== "text") { body.replaceChildren(el("p", { class: "muted" }, "Not drawn: see the message above.")); return; }
      section.classList.add("loading");
      jobs.push(Promise.resolve().then(() => DRAW[widget.type](widget, body, section, ctx))
        .then(() => flagUnknown(widget, body, section, ctx))
        .catch((e) => { failed.push([body, e.message]); body.replaceChildren(el("p", { class: "problem", role: "alert" }, e.message)); })
        .finally(() => { section.classList.remove("loading"); performance.mark(`tally:w${i}:${widget.type}`); }));
    });
    await Promise.all(jobs);
    if (mine !== generation) return;
    const repeated = failed.map(([, m]) => m).find((m, _, all) => all.filter((x) => x === m).length > 1);
    if (repeated && !over) { // the same error on several widgets: said once, for the page
      pageError(repeated);
      for (const [body, m] of failed) if (m === repeated) body.replaceChildren(el("p", { class: "muted" }, "Not drawn: see the message above."));
    }
    document.body.dataset.granularity = ctx.g;
    document.body.dataset.since = String(ctx.since);
    document.body.dataset.until = String(ctx.until);
    document.body.dataset.asOf = ctx.asOf === null ? "" : String(ctx.asOf);
    document.body.dataset.state = "ready";
    document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
    if (!window.__tallyFirstDrawMs) window.__tallyFirstDrawMs = performance.now();
  }

  zones();
  bind();
  syncControls();
  schedule();
  segments().catch((e) => console.warn("segments:", e.message)).finally(() => syncControls());
  refresh();
})();
