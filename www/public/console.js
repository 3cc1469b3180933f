// The agent console: one AgentStateManager, fed by the page's own token endpoint.
import { AgentStateManager, initAsync, verifyAuditRecord } from 'cxone-agent-state';
import { download, explain, fmtClock, fmtMs, fmtPct, renderFigures } from './common.js';

const STATES = ['READY', 'NOT_READY', 'PAUSED', 'IDLE'];
const $ = (s) => document.querySelector(s);
let manager = null;
let agents = [];
const results = new Map(); // userId → { text, kind }
let lastHash = '0'.repeat(64);
let chainOk = true;
let heartbeat = null; // the last `heartbeat` of the manager observing (cxone)
// Agents seen changed elsewhere since the console connected (the first poll's states are no such change).
const changedElsewhere = new Set();

function setStatus(text, kind = '') {
  const el = $('#tenant-status');
  el.textContent = text;
  el.className = `status msg ${kind}`;
}

function addAuditRow(r) {
  const linked = r.prevHash === lastHash;
  // An observation record says what the tenant showed; it is no attempt of ours.
  const seen = r.observation;
  lastHash = r.hash;
  const verified = verifyAuditRecord(r);
  chainOk = chainOk && linked && verified;
  const tr = document.createElement('tr');
  tr.dataset.seq = r.seq;
  const cells = [
    [r.seq, 'num'],
    [fmtClock(Date.parse(r.timestamp)), ''],
    [r.userId, ''],
    [r.newState, ''],
    [seen ? `observed (${seen.source})` : r.success ? 'accepted' : r.errorCode, r.success ? 'msg ok' : 'msg bad'],
    [`${r.latencyMs} ms`, 'num'],
    [r.attempts, 'num'],
    [r.hash.slice(0, 12), 'mono'],
    [linked && verified ? '✓ linked, hash verified' : '✗ broken', linked && verified ? 'msg ok' : 'msg bad'],
  ];
  for (const [text, cls] of cells) {
    const td = document.createElement('td');
    td.textContent = String(text);
    if (cls) td.className = cls;
    tr.append(td);
  }
  $('#audit tbody').prepend(tr);
  $('#chain-status').textContent = chainOk ? '— chain intact' : '— chain BROKEN';
  $('#chain-status').className = chainOk ? 'msg ok' : 'msg bad';
}

function renderAgents() {
  const tbody = $('#agents tbody');
  // Rebuilt when the list changes (another profile names the same agents by other ids).
  if ([...tbody.children].map((tr) => tr.dataset.agent).join(',') !== agents.join(',')) {
    tbody.replaceChildren(
      ...agents.map((id) => {
        const tr = document.createElement('tr');
        tr.dataset.agent = id;
        tr.innerHTML = '<th scope="row"></th><td class="state"></td><td class="num in-state"></td><td class="num idle"></td>'
          + '<td class="num util"></td><td class="controls"></td><td class="result msg" aria-live="polite"></td>';
        tr.querySelector('th').textContent = id;
        const controls = tr.querySelector('.controls');
        for (const s of STATES) {
          const b = document.createElement('button');
          b.type = 'button';
          b.className = 'state';
          b.textContent = s.replace('_', ' ');
          b.dataset.state = s;
          b.setAttribute('aria-label', `Set ${id} to ${s}`);
          b.addEventListener('click', () => change(id, s, b));
          controls.append(b);
        }
        return tr;
      }),
    );
  }
  if (!manager) return;
  const now = Date.now();
  const snaps = manager.observing ? manager.getAgents() : [];
  renderObserveStatus(snaps[0]);
  for (const tr of tbody.children) {
    const id = tr.dataset.agent;
    const m = manager.getAgentMetrics(id);
    const state = m?.currentState ?? 'unknown';
    const external = changedElsewhere.has(id) && snaps.find((a) => a.userId === id)?.source === 'external';
    tr.querySelector('.state').innerHTML = `<span class="badge ${state}">${state}</span>`
      + (external ? '<span class="badge source" title="changed outside this console">external</span>' : '');
    tr.querySelector('.in-state').textContent = m ? fmtMs(now - m.currentSinceMs) : '—';
    tr.querySelector('.idle').textContent = m ? fmtMs(m.idleTimeMs) : '—';
    tr.querySelector('.util').textContent = m ? fmtPct(m.utilization) : '—';
    const r = results.get(id);
    const cell = tr.querySelector('.result');
    cell.textContent = r?.text ?? '';
    cell.className = `result msg ${r?.kind ?? ''}`;
  }
}

/** Whether the observed states are fresh: from a snapshot (ticks between polls), else the last heartbeat. */
function renderObserveStatus(snap) {
  const el = $('#observe-status');
  const stale = snap ? snap.stale : heartbeat?.stale;
  const lag = snap?.observedAgoMs ?? heartbeat?.lagMs;
  el.hidden = !manager?.observing;
  if (el.hidden || stale === undefined) return;
  el.dataset.stale = String(stale);
  el.textContent = stale
    ? `— stale: agent states last confirmed ${lag == null ? 'never' : `${fmtMs(lag)} ago`}${heartbeat?.error ? ` (${heartbeat.error.code})` : ''}`
    : `— live: observed ${fmtMs(lag)} ago`;
}

/** A change the tenant showed and this console did not make: a feed entry, and the agent's row says so. */
function addObserved(o) {
  const { source, tenantState, code } = o.observation;
  // The first poll reports every agent's state: that is no change worth a line.
  if (o.previousState === null) return;
  const li = document.createElement('li');
  li.dataset.agent = o.userId;
  li.dataset.source = source;
  li.textContent = `${fmtClock(o.observation.atMs)} ${o.userId}: ${o.previousState} → ${o.state} (${tenantState}${code ? ` · ${code}` : ''}) `;
  const badge = document.createElement('span');
  badge.className = 'badge source';
  badge.textContent = source;
  li.append(badge);
  $('#feed').prepend(li);
  if (source === 'external') {
    changedElsewhere.add(o.userId);
    results.set(o.userId, { text: `Changed elsewhere to ${o.state}${code ? ` (${code})` : ''}`, kind: 'warn' });
  }
}

function renderReport() {
  if (manager) renderFigures($('#report'), manager.getComplianceReport());
}

async function change(userId, state, button) {
  if (!manager) return;
  const buttons = button.parentElement.querySelectorAll('button');
  buttons.forEach((b) => (b.disabled = true));
  results.set(userId, { text: `Changing to ${state}…`, kind: '' });
  renderAgents();
  const m = manager;
  try {
    const r = await m.transitionState(userId, state);
    if (manager === m) results.set(userId, { text: `Changed to ${r.newState} in ${r.latencyMs} ms`, kind: 'ok' });
  } catch (e) {
    if (manager === m) results.set(userId, { text: explain(e), kind: e.policyViolation ? 'warn' : 'bad' });
  } finally {
    buttons.forEach((b) => (b.disabled = false));
    renderAgents();
    renderReport();
  }
}

/**
 * Connects to a tenant. On `seed`, `baseUrl` is the API base; on `cxone` the token endpoint names the API and
 * WFM bases with each token (`baseUrl`, when given, sets the API base instead).
 */
async function connect(profile, baseUrl, tokenUrl, ids) {
  // Changes still open end now (and are audited by that manager, not shown in the new table).
  manager?.close();
  manager = null;
  results.clear();
  heartbeat = null;
  changedElsewhere.clear();
  $('#feed').replaceChildren();
  $('#feed-section').hidden = profile !== 'cxone';
  $('#audit tbody').replaceChildren();
  lastHash = '0'.repeat(64);
  chainOk = true;
  agents = ids;
  renderAgents();
  setStatus('Connecting…');
  try {
    await initAsync();
    // The token comes from our own back end: the page never holds a client secret.
    const getAccessToken = async () => {
      const res = await fetch(tokenUrl, { cache: 'no-store' });
      const body = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(body.message ?? `token endpoint answered ${res.status}`);
      return body;
    };
    const first = await getAccessToken(); // fail fast with a clear message
    if (!(first.expiresIn > 0)) {
      setStatus('The token service handed out an already expired token — check the token endpoint.', 'bad');
    }
    // On cxone the console observes changes made elsewhere (`?observeMs=` and `?staleMs=` set the poll).
    const q = new URLSearchParams(location.search);
    const observe = {};
    if (q.has('observeMs')) observe.intervalMs = Number(q.get('observeMs'));
    if (q.has('staleMs')) observe.staleAfterMs = Number(q.get('staleMs'));
    const options = profile === 'cxone'
      ? { profile, apiBaseUrl: baseUrl || undefined, rateLimitPerMinute: 600, wfmRateLimitPerMin: 600, observe }
      : { baseUrl, rateLimitPerMinute: 600 };
    const m = new AgentStateManager({ getAccessToken }, undefined, options);
    manager = m;
    m.addEventListener('observed', (e) => {
      if (manager !== m) return;
      addObserved(e.detail);
      renderAgents();
    });
    m.addEventListener('heartbeat', (e) => {
      if (manager !== m) return;
      heartbeat = e.detail;
      renderAgents();
    });
    m.addEventListener('audit', (e) => {
      if (manager !== m) return;
      addAuditRow(e.detail);
      renderReport();
    });
    m.addEventListener('retry', (e) => {
      const d = e.detail;
      if (manager !== m) return;
      if (d.userId) {
        const why = d.status ? `HTTP ${d.status}` : 'no answer';
        results.set(d.userId, { text: `Retrying in ${(d.delayMs / 1000).toFixed(1)} s (retry ${d.retry}, ${why})…`, kind: 'warn' });
        renderAgents();
      }
    });
    const where = baseUrl || first.apiBase || 'the tenant your token endpoint names';
    if (first.expiresIn > 0) setStatus(`Connected to ${where} (${profile} profile); tokens from ${tokenUrl}.`, 'ok');
    renderAgents();
    renderReport();
  } catch (e) {
    setStatus(`Could not connect: ${e.message}. Check the token endpoint and the base URL.`, 'bad');
  }
}

$('#connect').addEventListener('submit', (e) => {
  e.preventDefault();
  const ids = $('#agent-ids').value.split(',').map((s) => s.trim()).filter(Boolean);
  if (ids.length === 0) return setStatus('List at least one agent id.', 'bad');
  const profile = $('#profile').value;
  const baseUrl = $('#base-url').value.trim();
  if (profile === 'seed' && !baseUrl) return setStatus('Enter the API base URL.', 'bad');
  connect(profile, baseUrl, $('#token-url').value.trim(), ids);
});
$('#export-json').addEventListener('click', () => {
  if (manager) download('compliance-report.json', JSON.stringify(manager.getComplianceReport(), null, 2), 'application/json');
});
$('#export-csv').addEventListener('click', () => {
  if (manager) download('compliance-report.csv', manager.getComplianceReportCsv(), 'text/csv');
});
setInterval(() => {
  renderAgents();
}, 1000);

// Defaults: the local sim-server and token endpoint that `make www` started.
const config = await fetch('/config').then((r) => r.json()).catch(() => null);
// Switching the profile fills in the local defaults of that profile (on `cxone`, the bases come with tokens).
$('#profile').addEventListener('change', () => {
  if (!config) return;
  const cxone = $('#profile').value === 'cxone' && config.cxone;
  $('#base-url').value = cxone ? '' : config.baseUrl;
  $('#token-url').value = cxone ? config.cxone.tokenUrl : config.tokenUrl;
  $('#agent-ids').value = ((cxone ? config.cxone.agents : config.agents) ?? []).join(', ');
});
if (config) {
  $('#base-url').value = config.baseUrl;
  $('#token-url').value = config.tokenUrl;
  $('#agent-ids').value = (config.agents ?? []).join(', ');
  connect('seed', config.baseUrl, config.tokenUrl, config.agents ?? []);
} else {
  setStatus('Enter a tenant and a token endpoint, then Connect.');
}
