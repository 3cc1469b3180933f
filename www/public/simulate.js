// The compliance simulation page: a form, a Web Worker running simulateDay in slices, charts and the report.
import { bars, histogram, shareCurve, STATE_COLORS, timeline } from './charts.js';
import { download, fmtMs, fmtPct, renderFigures } from './common.js';

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
/** `cxone` only: the tenant's own activity, checked like FIELDS; the last column is its `ActivityConfig` name. */
const ACTIVITY_FIELDS = [
  ['agent-changes', 'agentChanges', 'Agent changes per agent-hour', 'agentChangesPerHour'],
  ['contacts', 'contacts', 'Contacts per agent-hour', 'contactsPerHour'],
  ['supervisor-changes', 'supervisorChanges', 'Supervisor changes per agent-hour', 'supervisorChangesPerHour'],
];
/** `cxone` only: checkboxes (input id, query key; `true` or `false` in the URL). */
const ACTIVITY_SWITCHES = [['log-in-out', 'logInOut'], ['observe', 'observe']];
let worker = null;
let lastSummary = null;
let lastCsv = '';
/** The last day's per-agent adherence figures, for re-sorting the table. */
let lastAdherenceAgents = [];

/** Reads and checks one number input; returns its value or throws an Error naming the field. */
function readNumber(id, label) {
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
  return v;
}

/** Reads and checks the form; returns the parameters or throws an Error naming the bad field. */
function readForm() {
  const out = {};
  for (const [id, key, label] of FIELDS) out[key] = readNumber(id, label);
  const profile = $('#profile').value;
  if (!PROFILES.includes(profile)) throw new Error(`API profile must be one of ${PROFILES.join(', ')} (got “${profile}”).`);
  out.profile = profile;
  // The activity is the cxone tenant's: on seed its fieldset is disabled and nothing of it is kept.
  if (profile === 'cxone') {
    for (const [id, key, label] of ACTIVITY_FIELDS) out[key] = readNumber(id, label);
    for (const [id, key] of ACTIVITY_SWITCHES) out[key] = $(`#${id}`).checked;
  }
  return out;
}

/** The activity fieldset is enabled only on cxone (seed has no agent states to read or act on). */
function syncActivity() {
  $('#activity').disabled = $('#profile').value !== 'cxone';
}

function shareUrl(p) {
  const q = new URLSearchParams(Object.entries(p).map(([k, v]) => [k, String(v)]));
  return `${location.origin}${location.pathname}?${q}`;
}

function options(p) {
  const o = {
    agents: p.agents, hours: p.hours, seed: p.seed, faults: p.faults / 100, rateLimitPerMinute: p.rate,
    breakEveryHours: p.breakEvery, breakMinutes: p.breakMinutes, profile: p.profile,
  };
  if (p.profile === 'cxone') {
    o.activity = Object.fromEntries(ACTIVITY_FIELDS.map(([, key, , name]) => [name, p[key]]));
    o.activity.logInOut = p.logInOut;
    o.observe = p.observe;
  }
  return o;
}

/** The accuracy table's rows: key, label, and the shown value of a `DayAccuracy`'s figure. */
const ACCURACY_ROWS = [
  ['meanUtilizationError', 'Mean utilization error (pp)', (a) => (a.meanUtilizationError * 100).toFixed(2)],
  ['maxUtilizationError', 'Largest utilization error (pp)', (a) => (a.maxUtilizationError * 100).toFixed(2)],
  ['meanIdleErrorMs', 'Mean idle time error (s)', (a) => (a.meanIdleErrorMs / 1000).toFixed(1)],
  ['maxIdleErrorMs', 'Largest idle time error (s)', (a) => (a.maxIdleErrorMs / 1000).toFixed(1)],
  ['agentsWithinBound', 'Agents within one poll interval per change', (a) => `${a.agentsWithinBound} / ${a.agents.length}`],
];

/** How far an agent's figures are from the truth, for ordering: utilization error, then idle time error. */
const offBy = (a) => [a.utilization === null || a.truthUtilization === null ? 0 : Math.abs(a.utilization - a.truthUtilization),
  Math.abs(a.idleMs - a.truthIdleMs)];

/**
 * The accuracy section: `summary.accuracy` is the run's own (observation on or off, as it ran); `without` is the
 * same day's with observation off, when the run observed. Hidden when the day measured none (seed).
 */
function drawAccuracy(summary, without) {
  const section = $('#accuracy-section');
  const own = summary.accuracy;
  section.hidden = !own;
  if (!own) return;
  const runs = own.observed ? { off: without, on: own } : { off: own, on: undefined };
  $('#accuracy tbody').replaceChildren(...ACCURACY_ROWS.map(([key, label, show]) => {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = label;
    tr.append(th);
    for (const run of ['off', 'on']) {
      const td = document.createElement('td');
      const a = runs[run];
      td.className = 'num';
      td.dataset.key = key;
      td.dataset.run = run;
      td.textContent = a ? show(a) : '—';
      if (a) td.dataset.value = String(a[key]);
      tr.append(td);
    }
    return tr;
  }));
  $('#accuracy-bound').textContent = `One poll interval is ${(own.intervalMs / 1000).toLocaleString()} s; an agent is within it `
    + 'when its working and idle time are each off by at most one interval per true change (plus one).';
  $('#accuracy-agents-cap').textContent = `The 5 agents furthest off (observation ${own.observed ? 'on' : 'off'})`;
  const pct = (x) => (x === null ? '—' : `${(x * 100).toFixed(1)} %`);
  const worst = [...own.agents].sort((a, b) => {
    const [ua, ia] = offBy(a);
    const [ub, ib] = offBy(b);
    return ub - ua || ib - ia;
  }).slice(0, 5);
  $('#accuracy-agents tbody').replaceChildren(...worst.map((a) => {
    const tr = document.createElement('tr');
    tr.dataset.agent = a.userId;
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = a.userId;
    const cells = [
      ['truthChanges', a.truthChanges], ['utilization', pct(a.utilization)], ['truthUtilization', pct(a.truthUtilization)],
      ['idleMs', fmtMs(a.idleMs)], ['truthIdleMs', fmtMs(a.truthIdleMs)],
    ];
    tr.append(th, ...cells.map(([key, text]) => {
      const td = document.createElement('td');
      td.className = 'num';
      td.dataset.key = key;
      td.textContent = String(text);
      return td;
    }));
    return tr;
  }));
}

/** Shown figures: a dash, never `NaN` or `undefined`, for a figure that is missing. */
const known = (x) => typeof x === 'number' && Number.isFinite(x);
const pct = (x) => (known(x) ? fmtPct(x) : '—');
const dur = (ms) => (known(ms) ? fmtMs(ms) : '—');
const mins = (ms) => (known(ms) ? (ms / 60_000).toFixed(1) : '—');
const count = (n) => (known(n) ? n.toLocaleString() : '—');

/** The team's adherence figures, as `[key, label, shown, raw]` (raw `null` when missing). */
function teamAdherenceFigures(a) {
  const t = a.team ?? {};
  return [
    ['adherence', 'Adherence', pct(t.adherence), t.adherence],
    ['conformance', 'Conformance', pct(t.conformance), t.conformance],
    ['exceptionCount', 'Exceptions', count(a.exceptionCount), a.exceptionCount],
    ['outMs', 'Time out of adherence', dur(t.outMs), t.outMs],
    ['workOutsideShiftMs', 'Worked outside the shift', dur(t.workOutsideShiftMs), t.workOutsideShiftMs],
    ['scheduledWorkMs', 'Scheduled to work', dur(t.scheduledWorkMs), t.scheduledWorkMs],
  ].map(([key, label, shown, raw]) => [key, label, shown, known(raw) ? raw : null]);
}

/**
 * The agents table's columns: sort key, the value sorted on (`null` sorts last either way), the direction a
 * first click sorts in (1 ascending: the least adherent first), and the shown cell.
 */
const AGENT_COLUMNS = {
  userId: { value: (a) => a.userId, first: 1 },
  adherence: { value: (a) => (known(a.adherence) ? a.adherence : null), first: 1, show: (a) => pct(a.adherence) },
  conformance: { value: (a) => (known(a.conformance) ? a.conformance : null), first: 1, show: (a) => pct(a.conformance) },
  exceptions: { value: (a) => a.exceptions?.length ?? 0, first: -1, show: (a) => count(a.exceptions?.length ?? 0) },
  outMs: { value: (a) => (known(a.outMs) ? a.outMs : null), first: -1, show: (a) => mins(a.outMs) },
  workOutsideShiftMs: { value: (a) => (known(a.workOutsideShiftMs) ? a.workOutsideShiftMs : null), first: -1, show: (a) => mins(a.workOutsideShiftMs) },
};
let agentSort = { key: 'adherence', dir: 1 };
const byUserId = (a, b) => a.userId.localeCompare(b.userId, undefined, { numeric: true });

function sortedAgents(agents, { key, dir }) {
  const value = AGENT_COLUMNS[key].value;
  return [...agents].sort((a, b) => {
    const va = value(a);
    const vb = value(b);
    if (va === null || vb === null) return (va === null) - (vb === null) || byUserId(a, b);
    const c = typeof va === 'string' ? va.localeCompare(vb, undefined, { numeric: true }) : va - vb;
    return dir * c || byUserId(a, b);
  });
}

/** Fills the per-agent table in the current sort order. */
function drawAdherenceAgents() {
  const agents = sortedAgents(lastAdherenceAgents, agentSort);
  for (const th of document.querySelectorAll('#adherence-agents th[data-sort]')) {
    if (th.dataset.sort === agentSort.key) th.setAttribute('aria-sort', agentSort.dir === 1 ? 'ascending' : 'descending');
    else th.removeAttribute('aria-sort');
  }
  const label = $(`#adherence-agents th[data-sort="${agentSort.key}"]`).textContent;
  $('#adherence-agents-cap').textContent = `Every agent (${agents.length.toLocaleString()}), by ${label.toLowerCase()}, `
    + `${agentSort.dir === 1 ? 'ascending' : 'descending'}${agentSort.key === 'adherence' && agentSort.dir === 1 ? ': the least adherent first' : ''}`;
  $('#adherence-agents tbody').replaceChildren(...agents.map((a) => {
    const tr = document.createElement('tr');
    tr.dataset.agent = a.userId;
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = a.userId;
    tr.append(th, ...Object.entries(AGENT_COLUMNS).filter(([, c]) => c.show).map(([key, c]) => {
      const td = document.createElement('td');
      td.className = 'num';
      td.dataset.key = key;
      const v = c.value(a);
      if (v !== null) td.dataset.value = String(v);
      td.textContent = c.show(a);
      return td;
    }));
    return tr;
  }));
}

/** The schedule adherence section: team figures, the team curve, time out by activity, every agent. */
function drawAdherence(summary) {
  const section = $('#adherence-section');
  const a = summary.report?.adherence;
  section.hidden = !a;
  if (!a) return;
  $('#adherence-team').replaceChildren(...teamAdherenceFigures(a).map(([key, label, shown, raw]) => {
    const div = document.createElement('div');
    const dt = document.createElement('dt');
    dt.textContent = label;
    const dd = document.createElement('dd');
    dd.textContent = shown;
    dd.dataset.key = key;
    if (raw !== null) dd.dataset.value = String(raw);
    div.append(dt, dd);
    return div;
  }));
  $('#adherence-range').textContent = known(a.fromMs) && known(a.toMs) ? `Measured over ${fmtMs(a.toMs - a.fromMs)} of the day.` : '';
  const curve = a.curve ?? [];
  shareCurve($('[data-chart="adherence-curve"]'), curve.map((p) => ({ fromMs: p.fromMs, toMs: p.toMs, value: p.adherence })),
    a.fromMs ?? curve[0]?.fromMs ?? 0, a.toMs ?? curve[curve.length - 1]?.toMs ?? 1, '#1f5fbf', 'team adherence');
  const out = Object.entries(a.team?.outByActivityMs ?? {}).sort(([, x], [, y]) => y - x);
  const totalOut = a.team?.outMs;
  $('#adherence-out tbody').replaceChildren(...(out.length ? out : [['none', null]]).map(([activity, ms]) => {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = ms === null ? 'No time out of adherence' : activity;
    const time = document.createElement('td');
    time.className = 'num';
    time.textContent = dur(ms);
    const share = document.createElement('td');
    share.className = 'num';
    share.textContent = known(ms) && known(totalOut) && totalOut > 0 ? pct(ms / totalOut) : '—';
    if (ms !== null) {
      tr.dataset.activity = activity;
      time.dataset.value = String(ms);
    }
    tr.append(th, time, share);
    return tr;
  }));
  lastAdherenceAgents = a.agents ?? [];
  agentSort = { key: 'adherence', dir: 1 };
  drawAdherenceAgents();
}

function draw(summary) {
  const c = summary.charts;
  const end = summary.finishedMs;
  // The sampled agents' adherence exceptions are marked on their rows.
  const sampled = new Set(c.timelines.map((t) => t.userId));
  const exceptions = new Map((summary.report.adherence?.agents ?? []).filter((a) => sampled.has(a.userId)).map((a) => [a.userId, a.exceptions ?? []]));
  timeline($('[data-chart="timeline"]'), c.timelines, c.hourZeroMs, end, exceptions);
  $('#timeline-legend').innerHTML = Object.entries(STATE_COLORS)
    .map(([s, col]) => `<span><i style="background:${col}"></i>${s}</span>`).join('') + '<span><i style="background:#6c5ce7"></i>other</span>'
    + '<span><i class="exception"></i>out of adherence (exception)</span>';
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
  drawAdherence(summary);
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
      drawAccuracy(m.summary, m.without);
      const status = $('#sim-status');
      const profile = m.summary.config.profile;
      const observing = m.summary.config.observe ? ', observing agent states,' : '';
      const again = m.withoutMs === undefined ? '' : `, ${(m.withoutMs / 1000).toFixed(2)} s more without observation`;
      status.textContent = `Simulated ${p.agents.toLocaleString()} agents × ${p.hours} h on the ${profile} profile${observing} in ${(m.ms / 1000).toFixed(2)} s `
        + `(${((performance.now() - t0) / 1000).toFixed(2)} s including loading${again}): ${m.summary.report.totalTransitions.toLocaleString()} transitions, `
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

$('#profile').addEventListener('change', syncActivity);
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
$('#adherence-agents thead').addEventListener('click', (e) => {
  const th = e.target.closest('th[data-sort]');
  if (!th) return;
  const key = th.dataset.sort;
  agentSort = { key, dir: agentSort.key === key ? -agentSort.dir : AGENT_COLUMNS[key].first };
  drawAdherenceAgents();
});
$('#export-json').addEventListener('click', () => lastSummary && download('simulation.json', JSON.stringify(lastSummary, null, 2), 'application/json'));
$('#export-csv').addEventListener('click', () => lastSummary && download('simulation-report.csv', lastCsv, 'text/csv'));

// A shared link fills the form and reproduces the run.
const q = new URLSearchParams(location.search);
const shared = [...q.keys()].length > 0;
if (shared) {
  for (const [id, key] of FIELDS) if (q.has(key)) $(`#${id}`).value = q.get(key);
  if (PROFILES.includes(q.get('profile'))) $('#profile').value = q.get('profile');
  for (const [id, key] of ACTIVITY_FIELDS) if (q.has(key)) $(`#${id}`).value = q.get(key);
  for (const [id, key] of ACTIVITY_SWITCHES) if (q.has(key)) $(`#${id}`).checked = q.get(key) === 'true';
}
syncActivity();
if (shared) $('#params').requestSubmit();
