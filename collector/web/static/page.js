// Draws the footfall page from /api/fleet and /api/sites/{site} and fetches them again every
// data-refresh-s seconds. No libraries, no build step. Every figure carries its raw number in
// data-value, so scripts (and tests) read numbers, not formatted text.
"use strict";

(() => {
  const body = document.body;
  const refreshMs = Number(body.dataset.refreshS || 30) * 1000;
  const $ = (id) => document.getElementById(id);

  // el("td", {class: "n", "data-value": 3}, "3") — attributes with null values are left out.
  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value !== null && value !== undefined) node.setAttribute(name, value);
    }
    for (const child of children) node.append(child instanceof Node ? child : String(child));
    return node;
  }

  const integer = new Intl.NumberFormat();
  const fmtInt = (n) => (n === null || n === undefined ? "—" : integer.format(n));
  const fmtRate = (r) => (r === null || r === undefined ? "—" : `${(r * 100).toFixed(1)} %`);
  const num = (value, text, attributes = {}) =>
    el("span", { class: "num", "data-value": value === null ? "" : value, ...attributes }, text);

  function ago(seconds) {
    if (seconds === null) return "never";
    if (seconds < 90) return `${Math.round(seconds)} s ago`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} days ago`;
  }

  function renderFleet(data) {
    const s = data.summary;
    $("fleet-summary").replaceChildren(
      num(s.devices, fmtInt(s.devices), { "data-key": "devices" }), " devices, ",
      num(s.online, fmtInt(s.online), { "data-key": "online" }), " online, ",
      num(s.with_problems, fmtInt(s.with_problems), { "data-key": "with_problems" }), " with problems",
    );
    const rows = data.devices.map((d) => {
      const skew = d.clock_skew_s;
      return el("tr", { class: d.problems.length ? "problem" : "ok", "data-site": d.site_id, "data-device": d.device_id,
                        "data-online": d.online, "data-problems": d.problems.length },
        el("td", {}, d.site_id),
        el("td", {}, d.device_id),
        el("td", {}, d.zones.join(", ") || "—"),
        el("td", { class: d.online ? "good" : "bad", "data-key": "state" }, d.online ? "online" : "offline"),
        el("td", { title: d.last_seen_at || "", "data-key": "seen", "data-value": d.seen_ago_s ?? "" }, ago(d.seen_ago_s)),
        el("td", { "data-key": "version" }, d.agent_version || "—"),
        el("td", { class: "n", "data-key": "spool", "data-value": d.spool_batches ?? "" }, fmtInt(d.spool_batches)),
        el("td", { class: "n", "data-key": "evicted", "data-value": d.evicted_batches ?? "" }, fmtInt(d.evicted_batches)),
        el("td", { "data-key": "wifi" }, d.wifi_state || "—"),
        el("td", { "data-key": "camera" }, d.camera_state || "—"),
        el("td", { class: "n", "data-key": "skew", "data-value": skew ?? "" }, skew === null ? "—" : `${skew.toFixed(1)} s`),
        el("td", { class: "problems" }, d.problems.join("; ")),
      );
    });
    $("fleet-table").tBodies[0].replaceChildren(...rows);
  }

  const KPIS = [
    ["entries", "Entries", fmtInt],
    ["visitors", "Visitors", fmtInt],
    ["passersby", "Passers-by", fmtInt],
    ["entry_rate", "Entry rate", fmtRate],
  ];

  function renderKpis(totals) {
    const cards = KPIS.map(([key, label, fmt]) => {
      const today = totals.today[key];
      const before = totals.last_week[key];
      const change = today !== null && before ? today / before - 1 : null;
      return el("div", { class: "kpi", "data-metric": key },
        el("div", { class: "label" }, label),
        num(today, fmt(today), { class: "num today" }),
        el("div", { class: "muted" }, "last week ", num(before, fmt(before), { class: "num last-week" }),
          change === null ? "" : el("span", { class: change >= 0 ? "good" : "bad" },
            ` ${change >= 0 ? "+" : ""}${(change * 100).toFixed(0)} %`)),
      );
    });
    $("kpis").replaceChildren(...cards);
  }

  const SERIES = [["entries", "Entries"], ["visitors", "Visitors"], ["passersby", "Passers-by"]];

  function renderHourly(hours) {
    const top = Math.max(1, ...hours.flatMap((h) => SERIES.map(([key]) => h[key])));
    const groups = hours.map((h) =>
      el("div", { class: "hour", "data-hour": h.hour },
        el("div", { class: "bars" }, ...SERIES.map(([key, label]) =>
          el("div", { class: `bar ${key}`, "data-series": key, "data-value": h[key],
                      style: `height:${(100 * h[key]) / top}%`, title: `${h.hour} ${label}: ${h[key]}` }))),
        el("div", { class: "tick" }, h.hour.slice(0, 2))));
    const legend = el("div", { class: "legend" },
      ...SERIES.map(([key, label]) => el("span", {}, el("i", { class: `swatch ${key}` }), label)));
    $("hourly").replaceChildren(el("div", { class: "hours" }, ...groups), legend);
  }

  function renderHeatmap(map) {
    if (!map.zones.length) {
      $("heatmap").replaceChildren(el("p", { class: "muted" }, "No visitors in any zone yet."));
      return;
    }
    const value = new Map(map.cells.map((c) => [`${c.zone_id}|${c.hour}`, c.visitors]));
    const top = Math.max(1, ...map.cells.map((c) => c.visitors));
    const head = el("tr", {}, el("th", {}, "zone"), ...map.hours.map((h) => el("th", {}, String(h).padStart(2, "0"))));
    const rows = map.zones.map((zone) =>
      el("tr", {}, el("th", {}, zone), ...map.hours.map((hour) => {
        const v = value.get(`${zone}|${hour}`) || 0;
        return el("td", { "data-zone": zone, "data-hour": hour, "data-value": v, title: `${zone} ${hour}:00 — ${v}`,
                          style: `background:rgba(37,99,235,${(0.85 * v) / top})`, class: v / top > 0.5 ? "dark" : null },
          v ? fmtInt(v) : "");
      })));
    $("heatmap").replaceChildren(el("table", { class: "heatmap" }, el("thead", {}, head), el("tbody", {}, ...rows)));
  }

  // Horizontal bars: rows of [label, value, attributes].
  function hbars(rows) {
    const top = Math.max(1, ...rows.map(([, value]) => value));
    return el("div", { class: "hbars" }, ...rows.map(([label, value, attributes]) =>
      el("div", { class: "hbar-row" },
        el("span", { class: "hbar-label" }, label),
        el("span", { class: "hbar-track" },
          el("span", { class: "hbar", style: `width:${(100 * value) / top}%`, "data-value": value, ...attributes })),
        el("span", { class: "n" }, fmtInt(value)))));
  }

  function renderSite(data) {
    $("site-name").textContent = `${data.site.name} — ${data.today}`;
    $("site").dataset.now = data.now;
    renderKpis(data.totals);
    renderHourly(data.hourly);
    renderHeatmap(data.heatmap);
    $("dwell").replaceChildren(hbars(data.dwell.map((d) => [d.label, d.visitors, { "data-bucket": d.label }])));
    $("flows").replaceChildren(data.flows.length
      ? hbars(data.flows.map((f) => [`${f.from_zone} → ${f.to_zone}`, f.visits,
                                     { "data-from": f.from_zone, "data-to": f.to_zone, "data-moves": f.moves }]))
      : el("p", { class: "muted" }, "No moves between zones yet."));
  }

  async function getJson(url) {
    const response = await fetch(url, { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) throw new Error(`${url} answered ${response.status}`);
    return response.json();
  }

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    const site = body.dataset.site;
    const updated = $("updated");
    try {
      const [fleet, footfall] = await Promise.all([
        getJson("/api/fleet"),
        site ? getJson(`/api/sites/${encodeURIComponent(site)}`) : null,
      ]);
      renderFleet(fleet);
      if (footfall && footfall.site.site_id === body.dataset.site) renderSite(footfall);
      updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
      updated.className = "muted";
      body.dataset.renders = Number(body.dataset.renders || 0) + 1;
      // Time from navigation to the first complete drawing (bench/web_page.py reads it).
      if (!performance.getEntriesByName("footfall-rendered").length) performance.mark("footfall-rendered");
    } catch (error) {
      updated.textContent = `update failed: ${error.message} — retrying`;
      updated.className = "bad";
    }
    timer = setTimeout(refresh, refreshMs);
  }

  const picker = $("site-picker");
  if (picker) {
    picker.addEventListener("change", () => {
      body.dataset.site = picker.value;
      history.replaceState(null, "", `?site=${encodeURIComponent(picker.value)}`);
      $("site-name").textContent = picker.selectedOptions[0].textContent;
      refresh();
    });
  }
  refresh();
})();
