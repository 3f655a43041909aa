// tally monitor page: the value a monitor judged per bucket (from /api/v1/monitors/<name>),
// its condition's lines (dashed), its firing windows (shaded), the segment picker and links
// to the executions of a bucket (/traces). One file, no framework.
"use strict";
(() => {
  const page = JSON.parse(document.getElementById("page-data").textContent);
  const { $, el, iso, executions, getJson, axes } = window.tally; // ui.js
  const here = (segment, at) => "?" + new URLSearchParams({ segment, at });
  const SHADE = "rgba(197, 48, 48, 0.18)";

  async function detail() {
    const q = new URLSearchParams();
    if (page.segment !== null) q.set("segment", page.segment);
    if (page.at !== null) q.set("at", page.at);
    return getJson(`/api/v1/monitors/${encodeURIComponent(page.name)}?${q}`);
  }

  function describe(d) {
    const m = d.monitor;
    const params = Object.entries(m.parameters).filter(([, v]) => v !== null).map(([k, v]) => `${k} ${v}`).join(", ");
    $("definition").textContent = `${m.key} · ${m.what} · ${m.condition} (${params}) every ${m.granularity} · ${m.source}`;
    const select = $("segment");
    const names = new Set(d.segments.map((s) => s.segment).concat([d.segment]));
    for (const name of [...names].sort()) {
      const st = d.segments.find((s) => s.segment === name);
      select.append(el("option", { value: name }, `${name || "(all)"}${st ? " · " + st.state : ""}`));
    }
    select.value = d.segment;
    select.addEventListener("change", () => { location.search = here(select.value, d.at); });
  }

  function draw(d) {
    const j = d.judged;
    const section = $("chart"), body = section.querySelector(".body");
    const end = j.ends[j.ends.length - 1];
    const spans = d.windows.map((w) => [Math.max(w.since, j.buckets[0]), Math.min(w.resolved ?? end, end)]).filter(([a, b]) => b > a);
    section.dataset.values = JSON.stringify(j.values);
    section.dataset.buckets = JSON.stringify(j.buckets);
    section.dataset.lines = d.lines.map((l) => `${l.label}:${l.value}`).join(" ");
    section.dataset.windows = JSON.stringify(spans);
    const series = [{}, { label: d.monitor.what, stroke: "#2b6cb0", width: 2, spanGaps: false }];
    for (const l of d.lines) series.push({ label: `${l.label} ${l.value}`, stroke: "#c53030", width: 1.5, dash: [6, 4], points: { show: false } });
    const data = [j.buckets, j.values, ...d.lines.map((l) => j.buckets.map(() => l.value))];
    const plot = new uPlot({
      width: Math.max(320, body.clientWidth || 900), height: 300, series,
      scales: { x: { time: true, range: () => [j.buckets[0], end] } },
      axes: axes(),
      hooks: {
        drawClear: [(u) => {
          const ctx = u.ctx, drawn = [];
          ctx.save(); ctx.fillStyle = SHADE;
          for (const [a, b] of spans) {
            const x0 = u.valToPos(a, "x", true), x1 = u.valToPos(b, "x", true);
            ctx.fillRect(x0, u.bbox.top, Math.max(1, x1 - x0), u.bbox.height);
            drawn.push([x0, x1, u.bbox.top, u.bbox.height]);
          }
          ctx.restore();
          section.dataset.shaded = JSON.stringify(drawn);
        }],
      },
    }, data, body);
    plot.over.title = "click a bucket to list its executions";
    plot.over.addEventListener("click", () => {
      const i = plot.cursor.idx;
      if (i !== null && i !== undefined) location.href = executions(d.key, j.buckets[i], j.ends[i]);
    });
  }

  function links(d) {
    const j = d.judged;
    const i = Math.max(0, j.buckets.findIndex((b) => b === d.at));
    const a = $("executions");
    a.href = executions(d.key, j.buckets[i], j.ends[i]);
    a.textContent = `executions of ${d.key} in the bucket ${iso(j.buckets[i])}`;
    const since = j.buckets[0], until = j.ends[j.ends.length - 1];
    $("key-page").href = "/ui/key?" + new URLSearchParams({ key: d.key, range: "custom", from: since, to: until, g: j.granularity });
    const list = $("windows");
    if (!d.windows.length) list.append(el("li", { class: "muted" }, "none recorded"));
    for (const w of d.windows.slice().reverse()) {
      const li = el("li", w.resolved === null ? { class: "open" } : {});
      const text = `${iso(w.since)} → ${w.resolved === null ? "still firing" : iso(w.resolved)} (fired ${iso(w.fired)}) `;
      li.append(el("span", {}, text), el("a", { href: executions(d.key, w.since, w.resolved ?? j.ends[j.ends.length - 1]) }, "executions"));
      list.append(li);
    }
  }

  detail().then((d) => { describe(d); draw(d); links(d); })
    .catch((e) => { const p = $("problem"); p.textContent = e.message; p.hidden = false; })
    .finally(() => { document.body.dataset.state = "ready"; });
})();
