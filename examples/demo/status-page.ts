// The live status page: one HTML document with its script and charts inline (nothing is loaded
// from outside this machine), polling /stats.json.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { StatusSnapshot } from './status.js';

export interface StatusServer {
  readonly url: string;
  close(): Promise<void>;
}

export async function serveStatusPage(snapshot: () => StatusSnapshot, port = 0): Promise<StatusServer> {
  const server: Server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    if (path === '/stats.json') {
      response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      response.end(JSON.stringify(snapshot()));
    } else if (path === '/') {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      response.end(PAGE);
    } else {
      response.writeHead(404, { 'content-type': 'text/plain' });
      response.end('not found\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const { port: bound } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${bound}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // A browser's keep-alive connection would hold close() open.
        server.closeAllConnections();
      }),
  };
}

// The page builds its DOM with textContent only: event texts carry server error messages.
const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>lagless demo</title>
<style>
  body { font: 13px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #1d2430; background: #f7f8fa; }
  h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 18px 0 6px; }
  .phase { font-weight: 600; color: #0b5cad; }
  .notes { color: #555; margin: 2px 0; }
  table { border-collapse: collapse; background: #fff; box-shadow: 0 0 0 1px #dde1e6; }
  th, td { padding: 3px 9px; text-align: right; border-bottom: 1px solid #eceef1; white-space: nowrap; }
  th:first-child, td:first-child { text-align: left; }
  th { background: #eef1f5; font-weight: 600; }
  td.bad { color: #b42318; font-weight: 600; } td.good { color: #067647; font-weight: 600; }
  .state-up { color: #067647; font-weight: 600; } .state-down { color: #b42318; font-weight: 700; }
  .state-probing { color: #b54708; font-weight: 600; }
  .grid { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
  ol { margin: 0; padding-left: 20px; } li { margin: 2px 0; }
  li.running { font-weight: 600; color: #0b5cad; } li.pending { color: #888; }
  li .result { font-weight: 400; color: #1d2430; font-family: ui-monospace, monospace; font-size: 12px; }
  #events { font-family: ui-monospace, monospace; font-size: 12px; background: #fff; box-shadow: 0 0 0 1px #dde1e6;
    padding: 6px 10px; max-height: 260px; overflow: auto; min-width: 520px; }
  svg { vertical-align: middle; background: #fbfcfd; }
</style>
</head>
<body>
<h1>lagless demo</h1>
<div>now: <span class="phase" id="phase">connecting…</span></div>
<div id="notes"></div>
<div class="grid">
  <div><h2>Story</h2><ol id="steps"></ol></div>
</div>
<h2>Reads per router (each read judged by the server: <code>inet_server_port()</code> and the row it returned)</h2>
<table id="contenders"><thead><tr>
  <th>router</th><th>reads</th><th>stale</th><th>failed</th><th>by node</th>
  <th>replica reads</th><th>primary reads</th><th>waits</th><th>fallbacks</th><th>retries</th>
</tr></thead><tbody></tbody></table>
<div id="routers" class="grid"></div>
<h2>Last events</h2>
<div id="events"></div>
<script>
'use strict';
const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}
const ms = (v) => (v === null || v === undefined ? '–' : v < 10 ? v.toFixed(2) : v.toFixed(0));
function chart(history) {
  const w = 180, h = 40, ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('width', w); svg.setAttribute('height', h); svg.setAttribute('class', 'lag-chart');
  const values = history.map((v) => (v === null ? 0 : v));
  // Scaled to 1 s at least, so a few ms of probe jitter stays a flat line.
  const top = Math.max(1000, ...values);
  const step = w / 119; // 120 samples fill the width; the newest is at the right edge
  const x = (i) => w - (values.length - 1 - i) * step;
  const points = values.map((v, i) => x(i).toFixed(1) + ',' + (h - 2 - (v / top) * (h - 4)).toFixed(1));
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', points.join(' ')); line.setAttribute('fill', 'none');
  line.setAttribute('stroke', '#0b5cad'); line.setAttribute('stroke-width', '1.5');
  svg.append(line);
  history.forEach((v, i) => { // gaps while the replica is out of rotation
    if (v !== null) return;
    const r = document.createElementNS(ns, 'rect');
    r.setAttribute('x', x(i).toFixed(1)); r.setAttribute('y', 0); r.setAttribute('width', (step + 0.5).toFixed(1));
    r.setAttribute('height', h); r.setAttribute('fill', '#f8d7d4'); svg.append(r);
  });
  const label = document.createElementNS(ns, 'text');
  label.setAttribute('x', 2); label.setAttribute('y', 9); label.setAttribute('font-size', 9); label.setAttribute('fill', '#667');
  label.textContent = 'max ' + top.toFixed(0) + ' ms'; svg.append(label);
  return svg;
}
function render(s) {
  $('phase').textContent = s.phase;
  document.body.dataset.step = String(s.step);
  document.body.dataset.done = String(s.done);
  $('notes').replaceChildren(...s.notes.map((n) => el('div', { class: 'notes' }, n)));
  $('steps').replaceChildren(...s.steps.map((st) => el('li', { class: st.state, 'data-step-state': st.state },
    st.title + (st.state === 'running' ? '  (running)' : ''),
    ...st.results.map((r) => el('div', { class: 'result' }, r)))));
  $('contenders').tBodies[0].replaceChildren(...s.contenders.map((c) => {
    const t = c.tally, r = c.router;
    const nodes = Object.entries(t.byNode).map(([k, v]) => k + ' ' + v).join(', ') || '–';
    return el('tr', { 'data-contender': c.id },
      el('td', {}, c.label),
      el('td', { 'data-counter': 'reads' }, t.reads),
      el('td', { 'data-counter': 'stale', class: t.stale ? 'bad' : 'good' }, t.stale),
      el('td', { 'data-counter': 'failed', class: t.failed ? 'bad' : 'good' }, t.failed),
      el('td', {}, nodes),
      ...(r ? [r.replica, r.primary, r.waits, r.fallbacks, r.retries] : ['–', '–', '–', '–', '–'])
        .map((v, i) => el('td', { 'data-counter': ['replica', 'primary', 'waits', 'fallbacks', 'retries'][i] }, v)));
  }));
  $('routers').replaceChildren(...s.routers.map((rt) => el('div', { 'data-router': rt.id },
    el('h2', {}, rt.label + ': replicas (primary ' + rt.primary.state + ', served ' + rt.primary.served + ')'),
    el('table', {},
      el('thead', {}, el('tr', {}, ...['replica', 'state', 'in-flight', 'p50 ms', 'p99 ms', 'lag ms', 'lag bytes',
        'lag, last 30 s', 'served', 'failed'].map((h) => el('th', {}, h)))),
      el('tbody', {}, ...rt.replicas.map((r) => el('tr', { 'data-replica': r.name, 'data-state': r.state },
        el('td', {}, r.name),
        el('td', { class: 'state-' + r.state, 'data-field': 'state' }, r.state),
        el('td', {}, r.inFlight),
        el('td', {}, ms(r.latency.p50Ms)), el('td', {}, ms(r.latency.p99Ms)),
        el('td', { 'data-field': 'lag-ms' }, ms(r.lagMs)), el('td', {}, r.lagBytes === null ? '–' : r.lagBytes),
        el('td', {}, chart(r.lagSeries)),
        el('td', { 'data-field': 'served' }, r.served), el('td', {}, r.failed))))))));
  $('events').replaceChildren(...s.events.map((e) => el('div', {}, e.at + '  ' + e.source + ': ' + e.text)));
}
let failures = 0;
async function poll() {
  try {
    const response = await fetch('/stats.json', { cache: 'no-store' });
    render(await response.json());
    failures = 0;
  } catch {
    if (++failures > 3) { $('phase').textContent = 'the demo has stopped'; return; }
  }
  setTimeout(poll, 250);
}
poll();
</script>
</body>
</html>
`;
