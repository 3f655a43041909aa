// What the dashboard and monitor pages share: DOM shortcuts, bucket times, the executions
// link of a bucket (/traces), JSON reads of /api/v1 that send a signed-out reader to the login
// page, and uPlot axes in the page's ink. Loaded before each page's script; no framework.
"use strict";
window.tally = (() => {
  const iso = (t) => new Date(t * 1000).toISOString();
  return Object.freeze({
    $: (id) => document.getElementById(id),
    el(tag, attrs = {}, text = "") {
      const node = document.createElement(tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      if (text !== "") node.textContent = text;
      return node;
    },
    iso,
    // The traced executions of ``key`` in [since, until) (unix seconds).
    executions: (key, since, until) =>
      "/traces?" + new URLSearchParams({ key, since: iso(since), until: iso(until) }),
    async getJson(url) {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.status === 401) {
        location.href = "/ui/login?next=" + encodeURIComponent(location.pathname + location.search);
        throw new Error("signed out");
      }
      const body = await response.json();
      if (!response.ok) throw new Error(body.reason || body.detail || `HTTP ${response.status}`);
      return body;
    },
    // x and y axes whose labels follow light/dark mode; ``y``: more options of the y axis.
    axes(y = {}) {
      const ink = getComputedStyle(document.body).color;
      return [{ stroke: ink }, { stroke: ink, ...y }];
    },
  });
})();
