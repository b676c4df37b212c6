// corral's dashboard: one page, routed by the URL's hash, refreshed by short
// polling of the JSON API (every REFRESH_MS) without reloading the page.
"use strict";

const REFRESH_MS = 2000;
const view = document.getElementById("view");
let charts = {};          // uPlot instances of the deployment page, by name (window.corralCharts too)
let chartsKey = "";        // which deployment they draw

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}

function state(s) {
  return `<span class="state ${esc(s)}">${esc(s)}</span>`;
}

function mib(bytes) {
  return bytes ? `${(bytes / 1048576).toFixed(1)} MiB` : "";
}

function age(seconds) {
  if (!seconds) return "";
  return seconds < 120 ? `${Math.round(seconds)} s` : seconds < 7200 ? `${Math.round(seconds / 60)} min` : `${(seconds / 3600).toFixed(1)} h`;
}

function resources(r) {
  return Object.entries(r || {}).map(([k, v]) => k === "memory" ? `memory ${(v / 1073741824).toFixed(1)} GiB`
    : `${esc(k)} ${Number(v).toFixed(2).replace(/\.00$/, "")}`).join(", ");
}

async function api(path) {
  const response = await fetch(path, {cache: "no-store"});
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `${response.status}`);
  return body;
}

function table(headers, rows, id) {
  const head = headers.map((h) => `<th>${esc(h)}</th>`).join("");
  const body = rows.length ? rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("")
                           : `<tr><td colspan="${headers.length}" class="muted">none</td></tr>`;
  return `<table${id ? ` id="${id}"` : ""}><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

const pages = {
  async cluster() {
    const c = await api("/api/cluster");
    const links = Object.entries(c.links).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join("");
    const nodes = c.nodes.map((n) => [esc(n.node_id), state(n.state), esc(n.address), resources(n.total),
                                     resources(n.available), esc(n.replicas)]);
    const proxies = c.proxies.map((p) => [esc(p.node_id), esc(p.url), esc(p.pid), esc(p.requests)]);
    const ctl = c.controller, rec = ctl.recovery || {};
    const recovered = rec.recovery_s == null ? "never restarted"
      : `recovered in ${Number(rec.recovery_s).toFixed(2)} s: ${rec.adopted} replicas adopted, ${rec.dropped} dropped`;
    return `<h2>Cluster</h2><table>${links}</table>
      <h2>Nodes</h2>${table(["node", "state", "address", "declared", "available", "replicas"], nodes, "nodes")}
      <h2>Controller</h2>${table(["restarts", "recovery", "reconcile loop p50 / p99 ms", "checkpoint"],
        [[esc(ctl.restarts), esc(rec.recovering_workers && rec.recovering_workers.length ? `waiting for ${rec.recovering_workers.join(", ")}` : recovered),
          `${esc(ctl.loop_p50_ms ?? "")} / ${esc(ctl.loop_p99_ms ?? "")}`,
          `${esc(rec.checkpoint_location ?? "")}<div class="muted">${esc(rec.checkpoint_writes ?? 0)} writes, ${esc(rec.checkpoint_failures ?? 0)} failed</div>`]])}
      <h2>HTTP proxies</h2>${table(["node", "url", "pid", "requests"], proxies)}`;
  },

  async applications() {
    const apps = await api("/api/applications");
    return `<h2>Applications</h2>` + table(["application", "status", "route", "deployment", "status", "running / target", "message"],
      apps.flatMap((a) => a.deployments.map((d, i) => [
        i ? "" : esc(a.name), i ? "" : state(a.status), i ? "" : esc(a.route_prefix ?? "(no HTTP)"),
        `<a href="#/applications/${encodeURIComponent(a.name)}/${encodeURIComponent(d.name)}">${esc(d.name)}</a>`,
        state(d.status), `${d.running} / ${d.target}`,
        esc(d.message) + (d.autoscaling ? `<div class="muted">autoscaling: ${esc(d.autoscaling.reason)}</div>` : ""),
      ])), "applications");
  },

  async deployment(app, name) {
    const d = await api(`/api/applications/${encodeURIComponent(app)}/deployments/${encodeURIComponent(name)}`);
    const replicas = d.replicas.map((r) => [
      `<a href="#/replicas/${encodeURIComponent(r.replica_id)}">${esc(r.replica_id)}</a>`, state(r.state), esc(r.node_id),
      esc(r.pid || ""), mib(r.rss_bytes), esc(r.ongoing), esc(r.requests), esc(r.errors), age(r.age_s),
      esc(r.isolation), esc(r.model_ids.join(", ")),
    ]);
    return {
      html: `<h2>${esc(app)} / ${esc(name)} ${state(d.status)}</h2>
        <p>${d.running} of ${d.target} replicas running. ${esc(d.message)}</p>
        ${d.autoscaling ? `<p class="muted">autoscaling: target ${esc(d.autoscaling.target)}, ${esc(d.autoscaling.reason)}</p>` : ""}
        <h2>Replicas</h2>${table(["replica", "state", "node", "pid", "memory", "in flight", "requests", "errors", "age",
                                  "isolation", "models"], replicas, "replicas")}
        <h2>Last hour</h2><div class="charts" id="charts"></div>`,
      after: () => drawCharts(`${app}/${name}`, d.history),
    };
  },

  async replica(id) {
    const r = await api(`/api/replicas/${encodeURIComponent(id)}/logs?tail=300`);
    const info = r.replica;
    return `<h2>Replica ${esc(id)} ${state(info.state)}</h2>
      <p><a href="#/applications/${encodeURIComponent(info.app)}/${encodeURIComponent(info.deployment)}">${esc(info.app)} / ${esc(info.deployment)}</a>
      on ${esc(info.node_id)}, pid ${esc(info.pid)}, ${mib(info.rss_bytes)}</p>
      <h2>Log</h2>${r.error ? `<p class="error">${esc(r.error)}</p>` : ""}<pre class="log" id="log">${esc(r.lines.join("\n"))}</pre>`;
  },

  async gangs() {
    const g = await api("/api/gangs");
    return `<h2>Gang reservations</h2>` + table(["reservation", "application", "deployment", "gang", "nodes", "bundle"],
      g.map((r) => [esc(r.name), esc(r.app), esc(r.deployment), esc(r.gang_id), esc(r.nodes.join(", ")), resources(r.bundle)]));
  },
};

const CHARTS = [
  ["replicas", "replicas", [["running", "running", "#1a7f37"], ["target", "target", "#7a8591"]]],
  ["requests", "requests/s", [["rps", "requests/s", "#1f6feb"]]],
  ["errors", "errors/s", [["error_rps", "errors/s", "#c62828"]]],
  ["latency", "latency ms", [["p50_ms", "p50", "#1f6feb"], ["p99_ms", "p99", "#b26a00"]]],
];

function drawCharts(key, history) {
  const box = document.getElementById("charts");
  if (!box) return;
  if (!history) { box.innerHTML = `<p class="muted">no samples yet</p>`; charts = {}; return; }
  if (chartsKey !== key || !box.children.length) {
    charts = {}; chartsKey = key; box.innerHTML = "";
  }
  for (const [id, title, lines] of CHARTS) {
    const data = [history.t, ...lines.map(([field]) => history[field])];
    if (charts[id]) { charts[id].setData(data); continue; }
    const div = document.createElement("div");
    div.className = "chart"; div.id = `chart-${id}`; box.appendChild(div);
    window.corralCharts = charts;
    charts[id] = new uPlot({
      title, width: 440, height: 200,
      scales: {x: {time: true, range: (u, min, max) => [Math.min(min, max - 300), max]}},  // at least the last 5 minutes
      series: [{}, ...lines.map(([, label, stroke]) => ({label, stroke, width: 2, spanGaps: true}))],
    }, data, div);
  }
}

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "applications" && parts.length === 3) return ["applications", () => pages.deployment(parts[1], parts[2])];
  if (parts[0] === "applications") return ["applications", () => pages.applications()];
  if (parts[0] === "replicas" && parts[1]) return ["applications", () => pages.replica(parts[1])];
  if (parts[0] === "gangs") return ["gangs", () => pages.gangs()];
  return ["cluster", () => pages.cluster()];
}

let rendering = false;
async function render() {
  if (rendering) return;
  rendering = true;
  const [nav, build] = route();
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === nav));
  try {
    const page = await build();
    const html = typeof page === "string" ? page : page.html;
    const charts = document.getElementById("charts");
    if (charts && typeof page !== "string") {  // keep the charts (and their zoom) while the rest is redrawn
      charts.remove();
      view.innerHTML = html;
      document.getElementById("charts").replaceWith(charts);
    } else {
      view.innerHTML = html;
    }
    if (typeof page !== "string") page.after();
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    view.innerHTML = `<p class="error">${esc(err.message)}</p>`;
    charts = {};
  } finally {
    rendering = false;
  }
}

window.addEventListener("hashchange", () => { charts = {}; chartsKey = ""; render(); });
render();
setInterval(render, REFRESH_MS);
