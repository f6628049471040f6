// vpnhub Manager: the only script of the console (no build step, no inline code).
// 1. Live regions: elements with data-live="URL" are re-rendered from the server's
//    HTML fragment every data-interval milliseconds.
// 2. The event log's live tail: server-sent events appended as table rows.
"use strict";

function refresh(el) {
  const url = el.dataset.live;
  const every = Number(el.dataset.interval || 3000);
  let busy = false;
  setInterval(async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const r = await fetch(url, {credentials: "same-origin", cache: "no-store"});
      if (r.redirected || r.status === 401) { window.location.reload(); return; }
      if (r.status === 404) { window.location.reload(); return; }
      if (r.ok) {
        const html = await r.text();
        if (html !== el.dataset.last) { el.innerHTML = html; el.dataset.last = html; }
      }
    } catch (e) { /* the next poll tries again */ }
    finally { busy = false; }
  }, every);
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
  cell(tr, String(ev.seq));
  cell(tr, ev.time.replace("T", " ").slice(0, 19));
  cell(tr, String(ev.severity));
  cell(tr, ev["class"]);
  cell(tr, String(ev.repeat));
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
      const old = body.querySelector('tr[data-seq="' + ev.seq + '"]');
      if (old) { old.replaceWith(row); } else { body.appendChild(row); }
      table.dataset.last = String(Math.max(Number(table.dataset.last), ev.seq));
      row.scrollIntoView({block: "nearest"});
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(refresh);
  const table = document.getElementById("events-table");
  const toggle = document.getElementById("live-tail-toggle");
  if (table && toggle) tail(table, toggle);
});
