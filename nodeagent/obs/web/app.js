// The shoal dashboard: one stream of the head's state (/api/events, server-sent events, one
// document a second), drawn into the tables and the timeline without a reload. No library, no
// CDN: every file comes from the shoal binary.
"use strict";
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const bytes = (n) => n >= 1 << 30 ? (n / (1 << 30)).toFixed(1) + " GiB" : n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + " MiB" : n >= 1024 ? (n / 1024).toFixed(1) + " KiB" : (n || 0) + " B";
const num = (x) => (Math.round((x || 0) * 100) / 100).toString();
// an id shortened to its submitter's first bytes and its own counter (ids are an 8-byte client
// prefix, a 4-byte counter and a 4-byte index), the whole id in the tooltip
const short = (id) => { const s = esc(id || ""); return s ? `<span title="${s}">${s.slice(0, 4)}…${s.slice(16, 24)}</span>` : ""; };

function rows(id, list, cells) {
  $(id).tBodies[0].innerHTML = (list || []).map((x) => "<tr>" + cells(x).map((c) => "<td>" + c + "</td>").join("") + "</tr>").join("");
}

function draw(p) {
  $("cluster").textContent = p.cluster || "";
  const r = p.report || {};
  $("summary").textContent = `${(p.nodes || []).length} node(s) · tasks ${r.tasks} (${r.tasks_failed} failed) · actors ${r.actors} · actor calls ${r.actor_calls} · up ${num(r.wall_seconds)} s`;
  const workers = {};
  (p.workers || []).forEach((w) => { workers[w.node] = (workers[w.node] || 0) + 1; });
  rows("nodes", p.nodes, (n) => {
    const t = n.total || {}, a = n.available || {};
    return [esc(n.id) + (n.head ? " (head)" : ""), esc(n.addr), n.alive ? '<span class="ALIVE">alive</span>' : '<span class="DEAD">dead</span>',
      `${num((t.CPU || 0) - (a.CPU || 0))} / ${num(t.CPU)}`, `${(n.gpus_used || []).length} / ${(n.gpus || []).length}`, num(n.load1),
      `${bytes(n.store.bytes)} / ${bytes(n.store.capacity)} (${n.store.objects} objects)`, `${n.store.spilled} (${bytes(n.store.spilled_bytes)})`,
      workers[n.id] || 0, `${bytes(n.received_bytes)} / ${bytes(n.sent_bytes)}`, n.head ? "-" : n.heartbeats];
  });
  rows("tasks", p.tasks, (f) => [esc(f.name), esc(f.kind), ...["PENDING", "RUNNING", "FINISHED", "FAILED", "RETRYING"].map((s) =>
    f.states[s] ? `<span class="${s}">${f.states[s]}</span>` : "0")]);
  const recent = (p.recent || []).slice().reverse();
  rows("recent", recent.slice(0, 50), (t) => [short(t.task_id), esc(t.name), `<span class="${esc(t.state)}">${esc(t.state)}</span>`,
    esc(t.node), esc(t.worker), t.attempt, t.start_s ? num(t.start_s) : "", t.end_s ? num(t.end_s) : "", esc(t.reason)]);
  rows("actors", p.actors, (a) => [short(a.id), esc(a.name), esc(a.class), `<span class="${esc(a.state)}">${esc(a.state)}</span>`,
    esc(a.node), esc(a.worker), a.restarts]);
  rows("groups", p.placement_groups, (g) => [short(g.id), esc(g.name), esc(g.strategy), `<span class="${esc(g.state)}">${esc(g.state)}</span>`,
    esc((g.nodes || []).join(", "))]);
  rows("workers", p.workers, (w) => [esc(w.id), esc(w.node), w.pid || "", esc(w.task), short(w.actor), esc((w.gpus || []).join(",")),
    `<a href="#" data-worker="${esc(w.id)}">log</a>`]);
  timeline(p, r.wall_seconds || 0);
}

function timeline(p, now) {
  const svg = $("timeline"), width = svg.clientWidth || 800, from = Math.max(0, now - 60), lanes = {}, label = 140;
  const x = (s) => label + ((s - from) / Math.max(now - from, 1)) * (width - label - 10);
  let out = "";
  (p.recent || []).filter((t) => t.worker && t.start_s && (t.end_s || now) >= from).forEach((t) => {
    if (!(t.worker in lanes)) lanes[t.worker] = Object.keys(lanes).length;
    const y = 4 + lanes[t.worker] * 16, x0 = x(Math.max(t.start_s, from)), x1 = x(t.end_s || now);
    out += `<rect class="${esc(t.state)}" x="${x0}" y="${y}" width="${Math.max(x1 - x0, 2)}" height="12"><title>${esc(t.name)} ${esc(t.state)} on ${esc(t.worker)}</title></rect>`;
  });
  Object.entries(lanes).forEach(([w, i]) => { out += `<text x="2" y="${14 + i * 16}">${esc(w)}</text>`; });
  svg.setAttribute("height", String(8 + Object.keys(lanes).length * 16));
  svg.innerHTML = out;
}

$("workers").addEventListener("click", async (e) => {
  const w = e.target.dataset && e.target.dataset.worker;
  if (!w) return;
  e.preventDefault();
  const res = await fetch("api/logs?worker=" + encodeURIComponent(w));
  const log = $("log");
  log.hidden = false;
  log.textContent = res.ok ? await res.text() : `no log (${res.status}): ${await res.text()}`;
});

function connect() {
  const es = new EventSource("api/events");
  es.onmessage = (m) => { $("live").textContent = "live"; $("live").className = "badge live"; draw(JSON.parse(m.data)); };
  es.onerror = () => { $("live").textContent = "reconnecting"; $("live").className = "badge"; };
}
connect();
