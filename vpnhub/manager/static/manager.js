// vpnhub Manager: the only script of the console (no build step, no inline code).
// 1. Live regions: elements with data-live="URL" are re-rendered from the server's
//    HTML fragment every data-interval milliseconds; #refresh-state says when the
//    page was last updated, or since when the concentrator has not answered.
// 2. The event log's live tail: server-sent events appended as table rows.
// 3. Logout and Ping: asked (Logout), busy while they run, their result shown
//    (also the Cluster page's Logout of any member's session).
// 4. The Status page's charts: inline SVG from /api/v1/status/history.
"use strict";

// ---- refresh state (issue 15): a failed refresh must not go unnoticed
const refreshState = {lastOk: new Date(), failing: false};

function clock(d) { return d.toTimeString().slice(0, 8); }

function showRefresh() {
  const el = document.getElementById("refresh-state");
  if (!el) return;
  if (refreshState.failing) {
    el.textContent = "Not updated since " + clock(refreshState.lastOk) +
      " \u2014 the concentrator does not answer" +
      (refreshState.why ? " (" + refreshState.why + ")" : "") + ".";
    el.className = "refresh-state stale";
    el.dataset.state = "stale";
  } else {
    el.textContent = "Last updated " + clock(refreshState.lastOk) + ".";
    el.className = "refresh-state fresh";
    el.dataset.state = "fresh";
  }
}

function refreshed(ok, why) {
  if (ok) { refreshState.lastOk = new Date(); refreshState.failing = false; }
  else { refreshState.failing = true; refreshState.why = why; }
  showRefresh();
}

// The server's answer to a poll: true if it answered (the page is then up to date).
function answered(r) {
  if (r.ok || r.status === 304) { return true; }
  refreshed(false, "HTTP " + r.status);
  return false;
}

function refresh(el) {
  const url = el.dataset.live;
  const every = Number(el.dataset.interval || 3000);
  let busy = false;
  el.poll = async () => {
    if (busy || el.dataset.stopped) return;
    busy = true;
    try {
      const r = await fetch(url, {credentials: "same-origin", cache: "no-store"});
      if (r.redirected || r.status === 401) { window.location.reload(); return; }
      if (r.status === 404) { window.location.reload(); return; }
      if (answered(r)) {
        const html = await r.text();
        if (html !== el.dataset.last) { el.innerHTML = html; el.dataset.last = html; }
        refreshed(true);
      }
    } catch (e) { refreshed(false, "no connection"); }  /* the next poll tries again */
    finally { busy = false; }
  };
  setInterval(() => { if (!document.hidden) el.poll(); }, every);
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}

function eventRow(ev) {
  const tr = document.createElement("tr");
  tr.dataset.seq = ev.seq;
  tr.dataset.class = ev["class"];
  tr.className = "sev" + ev.severity;
  const peer = ev.peer_address ? ev.peer_address + (ev.peer_port ? ":" + ev.peer_port : "") : "";
  cell(tr, String(ev.seq), "seq");
  cell(tr, ev.time.replace("T", " ").slice(0, 19));
  cell(tr, String(ev.severity), "sev");
  cell(tr, ev["class"]);
  cell(tr, String(ev.repeat), "rpt");
  cell(tr, peer);
  cell(tr, ev.group);
  cell(tr, ev.user);
  // caused by input that did not authenticate: the peer is the packet's source (issue 11)
  cell(tr, (ev.authenticated === false ? "[unauthenticated] " : "") + ev.text, "text");
  return tr;
}

function tail(table, toggle) {
  let source = null;
  const body = table.querySelector("tbody");
  toggle.addEventListener("change", () => {
    if (!toggle.checked) { if (source) source.close(); source = null; return; }
    const sep = table.dataset.stream.includes("?") ? "&" : "?";
    source = new EventSource(table.dataset.stream + sep + "after_seq=" + table.dataset.last);
    source.addEventListener("record", (msg) => {
      const ev = JSON.parse(msg.data);
      const row = eventRow(ev);
      const empty = body.querySelector("tr.empty");  // "No events match": one does now
      if (empty) empty.remove();
      const old = body.querySelector('tr[data-seq="' + ev.seq + '"]');
      if (old) { old.replaceWith(row); } else { body.appendChild(row); }
      table.dataset.last = String(Math.max(Number(table.dataset.last), ev.seq));
      row.scrollIntoView({block: "nearest"});
    });
  });
}

// ---- Logout and Ping (issue 15): asked, busy, then their result
function resultLine(text, ok) {
  let el = document.getElementById("action-result");
  if (!el) {
    el = document.createElement("p");
    el.id = "action-result";
    el.setAttribute("role", "status");
    const h1 = document.querySelector("main h1");
    if (h1) { h1.after(el); } else { document.querySelector("main").prepend(el); }
  }
  el.textContent = text;
  el.className = "action-result " + (ok ? "ok" : "error");
  el.dataset.ok = ok ? "yes" : "no";
  return el;
}

function pingText(p) {
  return p.address + (p.alive ? " is alive: " : " did not answer: ") + p.received + " of " +
    p.sent + " replies" + (p.rtt_avg_ms !== null ? ", average " + p.rtt_avg_ms.toFixed(2) +
    " ms" : "") + ".";
}

async function act(form, button) {
  const kind = form.dataset.action;
  // /sessions/{sid}/logout -> /api/v1/sessions/{sid}/logout: JSON, no redirect
  const url = "/api/v1" + new URL(form.action).pathname;
  const label = button.textContent;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.textContent = kind === "logout" ? "Logging out\u2026" : "Pinging\u2026";
  form.classList.add("busy");
  try {
    const r = await fetch(url, {method: "POST", credentials: "same-origin",
      headers: {"X-CSRF-Token": form.elements.csrf.value}});
    const body = await r.json().catch(() => ({}));
    if (r.status === 401) { window.location.reload(); return; }
    if (!r.ok) {
      resultLine((kind === "logout" ? "Logout" : "Ping") + " failed: " +
        (body.error || "HTTP " + r.status) + ".", false);
    } else if (kind === "logout") {
      // another cluster member's session: that member ends it (issue 17)
      resultLine(body.delivered === "notify" ? "Logout sent to member " + body.member +
        ": it sends the client a DELETE and closes its tunnel." :
        (body.user || "The session") + " logged out: the client was sent a DELETE" +
        " and its tunnel is closed.", true);
      const live = document.getElementById("live");
      if (live && /^\/sessions\/[^?]/.test(live.dataset.live)) {
        live.dataset.stopped = "1";  // the detail page of a session that is gone
      } else if (live && live.poll) { live.poll(); }
    } else {
      const el = resultLine(pingText(body), body.alive);
      el.classList.add("ping-result");
      el.dataset.alive = body.alive ? "yes" : "no";
    }
  } catch (e) {
    resultLine((kind === "logout" ? "Logout" : "Ping") +
      " failed: the concentrator does not answer.", false);
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    button.textContent = label;
    form.classList.remove("busy");
  }
}

function onAction(event) {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.dataset.action) return;
  event.preventDefault();
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    resultLine((form.dataset.action === "logout" ? "Logout" : "Action") + " cancelled.", true);
    return;
  }
  const button = form.querySelector("button");
  if (button && !button.disabled) act(form, button);
}

// ---- the Status page's charts (issue 15): inline SVG, no library
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#1f5fbf", "#c0392b", "#2e8b57", "#8e44ad", "#d35400", "#16a085",
  "#7f8c8d", "#b8860b"];

function human(v, unit) {
  if (unit === "bps") {
    for (const [u, d] of [["Gbit/s", 1e9], ["Mbit/s", 1e6], ["kbit/s", 1e3]]) {
      if (v >= d) return (v / d).toFixed(1) + " " + u;
    }
    return Math.round(v) + " bit/s";
  }
  if (unit === "per_s") return (Math.round(v * 100) / 100) + "/s";
  return Math.round(v).toLocaleString("en-US");
}

// The axis' top: 1, 2 or 5 times a power of ten, at or above the highest value.
function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function span(s) {  // as vpnhub.manager.human.duration, to the minute
  if (s < 60) return Math.round(s) + " s";
  const h = Math.floor(s / 3600), m = Math.round((s % 3600) / 60);
  return (h ? h + " h " : "") + (m || !h ? m + " min" : "").trim();
}

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function seriesOf(fig, data) {
  const keys = fig.dataset.series.split(",");
  if (keys[0] === "drops") return Object.entries(data.drops || {});
  return keys.filter((k) => Array.isArray(data[k])).map((k) => [k, data[k]]);
}

function drawChart(fig, data, labels) {
  const plot = fig.querySelector(".plot");
  const unit = fig.dataset.unit;
  const series = seriesOf(fig, data).filter(([, v]) => v.filter((x) => x !== null).length);
  const times = data.times || [];
  if (!series.length) {  // a rate needs two samples; drops only their reasons
    plot.replaceChildren(Object.assign(document.createElement("p"),
      {className: "hint", textContent: fig.dataset.empty}));
    return;
  }
  const W = 640, H = 190, L = 78, R = 10, T = 10, B = 24;
  // the samples there are (at most the hour): a young concentrator's few minutes fill
  // the width instead of a sliver at the right edge
  const end = times[times.length - 1];
  const start = Math.min(end - data.interval, times[0]);
  let top = 0;
  for (const [, v] of series) for (const x of v) if (x !== null && x > top) top = x;
  const ymax = niceCeil(top);
  const x = (t) => L + (t - start) / (end - start) * (W - L - R);
  const y = (v) => T + (H - T - B) * (1 - v / ymax);
  const svg = svgEl("svg", {viewBox: "0 0 " + W + " " + H, class: "chart", role: "img",
    "aria-label": fig.querySelector("figcaption").textContent, "data-max": top});
  svg.append(svgEl("rect", {x: L, y: T, width: W - L - R, height: H - T - B,
    fill: "#f7f9fc", stroke: "#b8c4d6"}));
  svg.append(svgEl("text", {x: 4, y: T + 10, "font-size": 11, fill: "#333"},
    human(ymax, unit)));
  svg.append(svgEl("text", {x: 4, y: H - B, "font-size": 11, fill: "#333"}, "0"));
  svg.append(svgEl("text", {x: L, y: H - 6, "font-size": 11, fill: "#333"},
    "\u2212" + span(end - start)));
  svg.append(svgEl("text", {x: W - R - 24, y: H - 6, "font-size": 11, fill: "#333"}, "now"));
  let lx = L + 8;
  series.forEach(([key, values], i) => {
    const color = COLORS[i % COLORS.length];
    const pts = [];
    let last = null, max = 0;
    values.forEach((v, j) => {
      if (v === null) return;
      pts.push(x(times[j]).toFixed(1) + "," + y(v).toFixed(1));
      last = v;
      max = Math.max(max, v);
    });
    const name = labels[key] || key;
    const line = svgEl("polyline", {fill: "none", stroke: color, "stroke-width": 2,
      points: pts.join(" "), "data-series": key, "data-points": pts.length,
      "data-max": max, "data-last": last});
    // the exact values on hover
    line.append(svgEl("title", {}, name + ": now " + human(last, unit) + " (" + last +
      "), highest " + human(max, unit) + " (" + max + ")"));
    svg.append(line);
    if (pts.length === 1) {  // one sample: a dot, a line needs two
      const [cx, cy] = pts[0].split(",");
      svg.append(svgEl("circle", {cx: cx, cy: cy, r: 3, fill: color,
        "data-series": key}));
    }
    const legend = svgEl("text", {x: lx, y: T + 14, "font-size": 11, fill: color}, name);
    svg.append(legend);
    lx += 10 + 6.5 * name.length;
  });
  plot.replaceChildren(svg);
}

function statusCharts(box) {
  const labels = Object.fromEntries(box.dataset.labels.split(";").map((p) => p.split("=")));
  const every = Number(box.dataset.interval || 5000);
  let etag = "", busy = false;
  const poll = async () => {
    if (busy) return;
    busy = true;
    try {
      const r = await fetch(box.dataset.history, {credentials: "same-origin",
        cache: "no-store", headers: etag ? {"If-None-Match": etag} : {}});
      if (r.status === 401) { window.location.reload(); return; }
      if (answered(r)) {
        if (r.status === 200) {
          const data = await r.json();
          etag = r.headers.get("ETag") || "";
          box.dataset.samples = String(data.samples);
          const taken = document.getElementById("status-samples");
          if (taken) taken.textContent = String(data.samples);
          box.querySelectorAll("figure.status-chart").forEach(
            (fig) => drawChart(fig, data, labels));
        }
        refreshed(true);
      }
    } catch (e) { refreshed(false, "no connection"); }
    finally { busy = false; }
  };
  poll();
  setInterval(() => { if (!document.hidden) poll(); }, every);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(refresh);
  if (document.getElementById("refresh-state")) showRefresh();
  document.addEventListener("submit", onAction);
  const charts = document.getElementById("status-charts");
  if (charts) statusCharts(charts);
  const table = document.getElementById("events-table");
  const toggle = document.getElementById("live-tail-toggle");
  if (table && toggle) tail(table, toggle);
});
