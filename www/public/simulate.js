// The compliance simulation page: a form, a Web Worker running simulateDay in slices, charts and the report.
import { bars, histogram, STATE_COLORS, timeline } from './charts.js';
import { download, renderFigures } from './common.js';

const $ = (s) => document.querySelector(s);
// Input id, URL/query key, and the name used in messages. Each input's min, max and step (in the HTML) are
// the rule; the package checks the ranges again and names the field if the page lets something through.
const FIELDS = [
  ['agents', 'agents', 'Agent count'],
  ['hours', 'hours', 'Shift length'],
  ['break-every', 'breakEvery', 'Break interval'],
  ['break-minutes', 'breakMinutes', 'Break length'],
  ['faults', 'faults', 'Fault rate'],
  ['rate', 'rate', 'Rate limit'],
  ['seed', 'seed', 'Seed'],
];
/** The API profiles a day can run on (the `profile` select, and the `profile` query key). */
const PROFILES = ['seed', 'cxone'];
let worker = null;
let lastSummary = null;
let lastCsv = '';

/** Reads and checks the form; returns the parameters or throws an Error naming the bad field. */
function readForm() {
  const out = {};
  for (const [id, key, label] of FIELDS) {
    const input = $(`#${id}`);
    const min = Number(input.min);
    const max = input.max === '' ? Number.MAX_SAFE_INTEGER : Number(input.max);
    const whole = input.step === '1';
    const raw = input.value.trim();
    const v = Number(raw);
    const ok = raw !== '' && Number.isFinite(v) && v >= min && v <= max && (!whole || Number.isInteger(v));
    input.setAttribute('aria-invalid', ok ? 'false' : 'true');
    if (!ok) {
      input.focus();
      throw new Error(`${label} must be ${whole ? 'a whole number' : 'a number'} from ${min} to ${max.toLocaleString()} (got “${raw}”).`);
    }
    out[key] = v;
  }
  const profile = $('#profile').value;
  if (!PROFILES.includes(profile)) throw new Error(`API profile must be one of ${PROFILES.join(', ')} (got “${profile}”).`);
  out.profile = profile;
  return out;
}

function shareUrl(p) {
  const q = new URLSearchParams(Object.entries(p).map(([k, v]) => [k, String(v)]));
  return `${location.origin}${location.pathname}?${q}`;
}

function options(p) {
  return {
    agents: p.agents, hours: p.hours, seed: p.seed, faults: p.faults / 100, rateLimitPerMinute: p.rate,
    breakEveryHours: p.breakEvery, breakMinutes: p.breakMinutes, profile: p.profile,
  };
}

function draw(summary) {
  const c = summary.charts;
  const end = summary.finishedMs;
  timeline($('[data-chart="timeline"]'), c.timelines, c.hourZeroMs, end);
  $('#timeline-legend').innerHTML = Object.entries(STATE_COLORS)
    .map(([s, col]) => `<span><i style="background:${col}"></i>${s}</span>`).join('') + '<span><i style="background:#6c5ce7"></i>other</span>';
  const agents = summary.report.agents;
  histogram($('[data-chart="utilization"]'), agents.filter((a) => a.utilization !== null).map((a) => a.utilization * 100),
    [10, 20, 30, 40, 50, 60, 70, 80, 90, 100], (e) => `${e}%`, '#2e8b57');
  histogram($('[data-chart="idle"]'), agents.map((a) => a.cumulativeIdleMs / 60_000), [15, 30, 45, 60, 90, 120, 180, 240],
    (e) => `${e}`, '#7f8c8d');
  const hours = Math.max(c.violationsPerHour.length, c.retriesPerHour.length, Math.ceil((end - c.hourZeroMs) / 3_600_000));
  const hourLabels = Array.from({ length: hours }, (_, i) => `${i}`);
  const pad = (xs) => hourLabels.map((_, i) => xs[i] ?? 0);
  bars($('[data-chart="violations"]'), hourLabels, [{ values: pad(c.violationsPerHour), color: '#c0392b', label: 'violations blocked' }]);
  const buckets = c.latencyBucketsMs;
  const latLabels = c.latencyHistogram.map((_, i) => (i < buckets.length ? `≤${buckets[i] >= 1000 ? `${buckets[i] / 1000}s` : `${buckets[i]}ms`}` : '>60s'));
  bars($('[data-chart="latency"]'), latLabels, [{ values: c.latencyHistogram, color: '#1f5fbf', label: 'transitions' }]);
  bars($('[data-chart="retries"]'), hourLabels, [
    { values: pad(c.retriesPerHour), color: '#1f5fbf', label: 'retries' },
    { values: pad(c.rateLimitedPerHour), color: '#c0392b', label: 'after a 429' },
  ]);
  renderFigures($('#report'), summary.report);
  const cell = (text, cls = '') => { const td = document.createElement('td'); td.textContent = String(text); td.className = cls; return td; };
  $('#per-state tbody').replaceChildren(...Object.entries(summary.report.perState).map(([state, c]) => {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = state;
    tr.append(th, cell(c.attempts, 'num'), cell(c.successes, 'num'));
    return tr;
  }));
  $('#failures tbody').replaceChildren(...Object.entries(summary.report.failuresByCode).map(([code, n]) => {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = code;
    tr.append(th, cell(n, 'num'));
    return tr;
  }));
  const g = summary.groundTruth;
  const rows = [
    ['profile', 'API profile spoken', summary.config.profile],
    ['requestsReceived', 'Requests the tenant received', g.totalRequests],
    ['apiRequestsPerTransition', 'API requests per transition', summary.apiRequestsPerTransition.toFixed(2)],
    ['rateLimited', '429s from its rate limiter', g.rateLimited],
    ['faultsInjected', 'Faults injected', g.faultsInjected],
    ['retries', 'Retries the engine scheduled', summary.retries],
    ['readyAcceptedDuringBreak', 'READY accepted during a mandatory break', g.readyAcceptedDuringBreak],
  ];
  $('#truth tbody').innerHTML = rows.map(([k, label, v]) => `<tr><th scope="row">${label}</th><td class="num" data-key="${k}">${v}</td></tr>`).join('');
  $('#export-json').disabled = false;
  $('#export-csv').disabled = false;
}

function run(p) {
  $('#form-error').textContent = '';
  worker?.terminate();
  worker = new Worker('/sim-worker.js', { type: 'module' });
  $('#run').disabled = true;
  $('#progress').value = 0;
  delete $('#sim-status').dataset.ms;
  delete $('#sim-status').dataset.profile;
  $('#sim-status').textContent = `Simulating ${p.agents.toLocaleString()} agents × ${p.hours} h on the ${p.profile} profile…`;
  const t0 = performance.now();
  worker.onmessage = (e) => {
    const m = e.data;
    if (m.type === 'progress') {
      $('#progress').value = m.progress;
    } else if (m.type === 'done') {
      $('#progress').value = 1;
      lastSummary = m.summary;
      lastCsv = m.csv;
      draw(m.summary);
      const status = $('#sim-status');
      const profile = m.summary.config.profile;
      status.textContent = `Simulated ${p.agents.toLocaleString()} agents × ${p.hours} h on the ${profile} profile in ${(m.ms / 1000).toFixed(2)} s `
        + `(${((performance.now() - t0) / 1000).toFixed(2)} s including loading): ${m.summary.report.totalTransitions.toLocaleString()} transitions, `
        + `${m.summary.report.violationCount} violations blocked, ${m.summary.groundTruth.readyAcceptedDuringBreak} READY accepted during a break.`;
      status.dataset.ms = String(Math.round(m.ms));
      status.dataset.profile = profile;
      status.className = 'status msg ok';
      $('#run').disabled = false;
    } else {
      $('#form-error').textContent = `The simulation stopped: ${m.message}`;
      $('#run').disabled = false;
    }
  };
  worker.onerror = (e) => {
    $('#form-error').textContent = `The simulation could not start: ${e.message ?? 'worker error'}`;
    $('#run').disabled = false;
  };
  worker.postMessage(options(p));
}

$('#params').addEventListener('submit', (e) => {
  e.preventDefault();
  try {
    const p = readForm();
    history.replaceState(null, '', shareUrl(p));
    run(p);
  } catch (err) {
    $('#form-error').textContent = err.message;
  }
});
$('#share').addEventListener('click', async () => {
  try {
    const url = shareUrl(readForm());
    history.replaceState(null, '', url);
    await navigator.clipboard?.writeText(url).catch(() => {});
    $('#sim-status').textContent = `Share link: ${url}`;
  } catch (err) {
    $('#form-error').textContent = err.message;
  }
});
$('#export-json').addEventListener('click', () => lastSummary && download('simulation.json', JSON.stringify(lastSummary, null, 2), 'application/json'));
$('#export-csv').addEventListener('click', () => lastSummary && download('simulation-report.csv', lastCsv, 'text/csv'));

// A shared link fills the form and reproduces the run.
const q = new URLSearchParams(location.search);
if ([...q.keys()].length > 0) {
  for (const [id, key] of FIELDS) if (q.has(key)) $(`#${id}`).value = q.get(key);
  if (PROFILES.includes(q.get('profile'))) $('#profile').value = q.get('profile');
  $('#params').requestSubmit();
}
