// The pages in real headless Chromium (Debian's, driven by playwright-core; nothing is downloaded).
import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const out = join(root, 'test-output');
mkdirSync(out, { recursive: true });

let server;
let base;
let browser;

before(async () => {
  server = spawn('node', [join(root, 'www', 'server.mjs'), '--port', '0', '--exit-on-stdin-eof'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const [line] = await once(createInterface({ input: server.stdout }), 'line');
  base = /(http:\/\/127\.0\.0\.1:\d+)\//.exec(line)[1];
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  server?.stdin.end();
});

/** Opens a page; `errors` collects uncaught exceptions, `consoleErrors` what the page logs as errors. */
async function openPage(path) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const errors = [];
  const consoleErrors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(`${m.text()} (${m.location().url})`);
  });
  await page.goto(base + path);
  return { page, errors, consoleErrors };
}

/** A share as the simulation page shows it (common.js `fmtPct`). */
const shownPct = (x) => `${(x * 100).toFixed(1)} %`;

/**
 * The simulation page's schedule adherence section against `day` (the same day computed by the package in
 * Node): the team figures, the team curve, one table row per agent (least adherent first), and the sampled
 * agents' exceptions marked on the state timeline. Returns the number of exception marks.
 */
async function assertAdherence(page, day) {
  const a = day.report.adherence;
  assert.ok(a && a.team, 'the day has a team adherence report');
  assert.equal(await page.locator('#adherence-section').isVisible(), true);
  const team = (key) => page.locator(`#adherence-team dd[data-key="${key}"]`);
  // Team figures: the raw value, and the value as shown.
  assert.equal(Number(await team('adherence').getAttribute('data-value')), a.team.adherence);
  assert.equal(await team('adherence').innerText(), shownPct(a.team.adherence));
  assert.equal(Number(await team('conformance').getAttribute('data-value')), a.team.conformance);
  assert.equal(await team('conformance').innerText(), shownPct(a.team.conformance));
  assert.equal(Number(await team('exceptionCount').getAttribute('data-value')), a.exceptionCount);
  assert.equal((await team('exceptionCount').innerText()).replace(/\D/g, ''), String(a.exceptionCount));
  assert.equal(Number(await team('outMs').getAttribute('data-value')), a.team.outMs);
  assert.equal(Number(await team('workOutsideShiftMs').getAttribute('data-value')), a.team.workOutsideShiftMs);
  const outRows = await page.locator('#adherence-out tbody tr[data-activity]').evaluateAll((trs) => trs.map((tr) =>
    [tr.dataset.activity, Number(tr.querySelector('td[data-value]').dataset.value)]));
  assert.deepEqual(Object.fromEntries(outRows), a.team.outByActivityMs);
  assert.doesNotMatch(await page.locator('#adherence-section').innerText(), /NaN|undefined|null|Infinity/);

  // The team curve: one point per hour that has a figure, in order.
  const curve = a.curve.filter((p) => p.adherence !== null).map((p) => p.adherence);
  assert.ok(curve.length > 0, 'the curve has points');
  const points = await page.locator('svg[data-chart="adherence-curve"] circle.point')
    .evaluateAll((cs) => cs.map((c) => ({ value: Number(c.dataset.value), cy: Number(c.getAttribute('cy')) })));
  assert.deepEqual(points.map((p) => p.value), curve);
  // Higher adherence is drawn higher up (a smaller y).
  const hi = points.reduce((m, p) => (p.value > m.value ? p : m));
  const lo = points.reduce((m, p) => (p.value < m.value ? p : m));
  assert.ok(hi.value === lo.value || hi.cy < lo.cy, `the best hour (${hi.value}) is above the worst (${lo.value})`);

  // Every agent has a row, the least adherent first (agents without a figure last).
  const rows = page.locator('#adherence-agents tbody tr');
  assert.equal(await rows.count(), a.agents.length);
  const shown = await rows.evaluateAll((trs) => trs.map((tr) => ({
    userId: tr.dataset.agent,
    adherence: tr.querySelector('td[data-key="adherence"]').dataset.value,
    adherenceText: tr.querySelector('td[data-key="adherence"]').textContent,
    exceptions: Number(tr.querySelector('td[data-key="exceptions"]').dataset.value),
  })));
  assert.deepEqual(shown.map((r) => r.userId).sort(), a.agents.map((x) => x.userId).sort());
  const rated = a.agents.filter((x) => x.adherence !== null);
  const worst = rated.reduce((m, x) => (x.adherence < m.adherence ? x : m));
  assert.equal(shown[0].userId, worst.userId);
  assert.equal(shown[0].adherenceText, shownPct(worst.adherence));
  const values = shown.filter((r) => r.adherence !== undefined).map((r) => Number(r.adherence));
  assert.equal(values.length, rated.length);
  assert.ok(values.every((v, i) => i === 0 || values[i - 1] <= v), 'ascending adherence');
  const byId = new Map(a.agents.map((x) => [x.userId, x]));
  assert.ok(shown.every((r) => r.exceptions === byId.get(r.userId).exceptions.length), 'each row\'s exception count');

  // The sampled agents' exceptions that overlap the drawn range are marked on their own rows.
  const from = day.charts.hourZeroMs;
  const to = day.finishedMs;
  const expected = day.charts.timelines.flatMap((t) => (byId.get(t.userId)?.exceptions ?? [])
    .filter((e) => Math.max(e.startMs, from) < Math.min(e.endMs, to)).map((e) => `${t.userId}@${e.startMs}`));
  const marks = page.locator('svg[data-chart="timeline"] rect.exception');
  assert.equal(await marks.count(), expected.length);
  const drawn = await marks.evaluateAll((rs) => rs.map((r) => ({
    key: `${r.dataset.agent}@${r.dataset.start}`, y: Number(r.getAttribute('y')), title: r.querySelector('title')?.textContent ?? '',
  })));
  assert.deepEqual(drawn.map((m) => m.key).sort(), expected.sort());
  assert.ok(drawn.every((m) => /out of adherence: \S+.* during scheduled \S+, \d+\.\d min from \d\d:\d\d$/.test(m.title)),
    `tooltips: ${drawn[0]?.title}`);
  // A mark sits on its agent's row: the row's label is the nearest one above the mark's middle.
  const rowOf = await page.locator('svg[data-chart="timeline"] rect:not(.exception)').evaluateAll((rs) => {
    const out = {};
    for (const r of rs) out[r.querySelector('title').textContent.split(' ')[0]] = Number(r.getAttribute('y'));
    return out;
  });
  assert.ok(drawn.every((m) => Math.abs(rowOf[m.key.split('@')[0]] - m.y) < 1), 'each mark on its agent\'s row');
  return expected.length;
}

test('console: change an agent\'s state against sim-server, see the new state and a new audit row', async () => {
  const { page, errors } = await openPage('/');
  const row = page.locator('tr[data-agent="agent-0001"]');
  await row.waitFor();
  await page.locator('#tenant-status.ok').waitFor();
  const before = await page.locator('#audit tbody tr').count();
  await page.getByRole('button', { name: 'Set agent-0001 to READY' }).click();
  await row.locator('.result', { hasText: 'Changed to READY' }).waitFor();
  await row.locator('.state .badge', { hasText: 'READY' }).waitFor();
  const audit = page.locator('#audit tbody tr').first();
  assert.equal(await page.locator('#audit tbody tr').count(), before + 1);
  assert.match(await audit.innerText(), /agent-0001[\s\S]*READY[\s\S]*accepted[\s\S]*✓ linked, hash verified/);
  // Keyboard: focus the next control and press Enter.
  await page.getByRole('button', { name: 'Set agent-0002 to PAUSED' }).focus();
  await page.keyboard.press('Enter');
  await page.locator('tr[data-agent="agent-0002"] .state .badge', { hasText: 'PAUSED' }).waitFor();
  assert.equal(await page.locator('#report dd[data-key="successCount"]').getAttribute('data-value'), '2');
  assert.equal(await page.locator('#report dd[data-key="unknownOutcomeCount"]').getAttribute('data-value'), '0');
  await page.screenshot({ path: join(out, 'console.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});

test('console: READY during a scheduled break is refused with the reason in words', async () => {
  const { page, errors } = await openPage('/');
  await page.locator('#tenant-status.ok').waitFor();
  await page.getByRole('button', { name: 'Set agent-0003 to READY' }).click();
  const inBreak = page.locator('tr[data-agent="agent-0003"] .result');
  await inBreak.filter({ hasText: 'Refused' }).waitFor();
  assert.match(await inBreak.innerText(), /^Refused: mandatory break in progress until \d{1,2}:\d{2}/);
  await page.getByRole('button', { name: 'Set agent-0005 to READY' }).click();
  const due = page.locator('tr[data-agent="agent-0005"] .result');
  await due.filter({ hasText: 'Refused' }).waitFor();
  assert.match(await due.innerText(), /mandatory break due at \d{1,2}:\d{2}/);
  // NOT_READY is still allowed during the break.
  await page.getByRole('button', { name: 'Set agent-0003 to NOT_READY' }).click();
  await inBreak.filter({ hasText: 'Changed to NOT_READY' }).waitFor();
  await page.getByRole('button', { name: 'Set agent-0010 to READY' }).click();
  await page.locator('tr[data-agent="agent-0010"] .result', { hasText: 'not on shift' }).waitFor();
  assert.equal(await page.locator('#report dd[data-key="violationCount"]').getAttribute('data-value'), '3');
  assert.deepEqual(errors, []);
  await page.close();
});

test('console: an expired token and an unreachable tenant get clear messages, no crash', async () => {
  const { page, errors } = await openPage('/');
  await page.locator('#tenant-status.ok').waitFor();
  await page.getByLabel('Token endpoint (your back end)').fill('/token?expired=1');
  await page.getByRole('button', { name: 'Connect' }).click();
  await page.locator('#tenant-status', { hasText: 'already expired' }).waitFor();
  await page.getByRole('button', { name: 'Set agent-0001 to IDLE' }).click();
  await page.locator('tr[data-agent="agent-0001"] .result', { hasText: 'expired token' }).waitFor();

  await page.getByLabel('Token endpoint (your back end)').fill('/token');
  await page.getByLabel('API base URL').fill('http://127.0.0.1:9');
  await page.getByRole('button', { name: 'Connect' }).click();
  await page.locator('#tenant-status.ok').waitFor();
  await page.getByRole('button', { name: 'Set agent-0001 to IDLE' }).click();
  await page.locator('tr[data-agent="agent-0001"] .result', { hasText: 'Retrying' }).waitFor();
  await page.locator('tr[data-agent="agent-0001"] .result', { hasText: 'could not be reached' }).waitFor({ timeout: 40_000 });
  assert.deepEqual(errors, []);
  await page.close();
});

test('package in Chromium: calls made before the module has loaded keep their order; close() refuses later ones', async () => {
  // simulate.html does not load the engine module: the package is imported fresh here.
  const { page, errors } = await openPage('/simulate.html');
  const result = await page.evaluate(async () => {
    const m = await import('/node_modules/cxone-agent-state/index.js');
    const applied = [];
    let first = true;
    const json = (body) => new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } });
    const fetch = async (url, init) => {
      const path = new URL(url).pathname;
      if (path.includes('/schedules/')) return json({ status: 'ACTIVE' });
      if (path.includes('/breaks/')) return json({ mandatoryBreakRequired: false });
      if (first) {
        first = false;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      applied.push(JSON.parse(init.body).state);
      return json({});
    };
    const manager = new m.AgentStateManager(
      { getAccessToken: async () => ({ accessToken: 't', expiresIn: 3600 }) },
      undefined,
      { baseUrl: 'https://tenant.example', fetch, rateLimitPerMinute: 60000 },
    );
    const calls = ['READY', 'PAUSED', 'IDLE'].map((s) => manager.transitionState('a1', s));
    const results = await Promise.all(calls);
    await manager.close();
    const after = await manager.transitionState('a1', 'READY').catch((e) => e.code);
    return { applied, results: results.map((r) => r.newState), after };
  });
  assert.deepEqual(result, { applied: ['READY', 'PAUSED', 'IDLE'], results: ['READY', 'PAUSED', 'IDLE'], after: 'CLOSED' });
  assert.deepEqual(errors, []);
  await page.close();
});

test('simulation: a 1,000-agent day runs in a worker, every chart is drawn, figures match the package', async () => {
  const params = { agents: 1000, hours: 8, breakEvery: 2, breakMinutes: 15, faults: 2, rate: 100, seed: 42 };
  const { page, errors, consoleErrors } = await openPage(`/simulate.html?${new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]))}`);
  const status = page.locator('#sim-status[data-ms]');
  await status.waitFor({ timeout: 60_000 });
  const ms = Number(await status.getAttribute('data-ms'));
  console.log(`# simulated 1,000 agents × 8 h in Chromium in ${ms} ms`);
  for (const chart of ['timeline', 'utilization', 'idle', 'violations', 'latency', 'retries']) {
    const drawn = await page.locator(`svg[data-chart="${chart}"] rect`).count();
    assert.ok(drawn >= 4, `${chart}: ${drawn} shapes`);
    const heights = await page.locator(`svg[data-chart="${chart}"] rect`).evaluateAll((rs) => rs.map((r) => Number(r.getAttribute('height'))));
    assert.ok(heights.some((h) => h > 1), `${chart} draws something visible`);
  }
  // The same day computed by the package in Node must give the same figures.
  const m = await import(join(root, 'bindings-wasm', 'pkg', 'node.mjs'));
  const day = m.simulateDay({ agents: 1000, hours: 8, seed: 42, faults: 0.02, rateLimitPerMinute: 100, breakEveryHours: 2, breakMinutes: 15 });
  for (const key of ['totalTransitions', 'successCount', 'failureCount', 'violationCount', 'averageLatencyMs']) {
    const shown = await page.locator(`#report dd[data-key="${key}"]`).getAttribute('data-value');
    assert.equal(Number(shown), day.report[key], key);
  }
  assert.equal(await page.locator('#per-state tbody tr').count(), Object.keys(day.report.perState).length);
  assert.equal(await page.locator('#failures tbody tr').count(), Object.keys(day.report.failuresByCode).length);
  const firstState = await page.locator('#per-state tbody tr').first().locator('td').first().innerText();
  assert.equal(Number(firstState), Object.values(day.report.perState)[0].attempts);
  assert.equal(Number(await page.locator('#truth td[data-key="readyAcceptedDuringBreak"]').innerText()), 0);
  assert.equal(Number(await page.locator('#truth td[data-key="requestsReceived"]').innerText()), day.groundTruth.totalRequests);
  const marks = await assertAdherence(page, day);
  assert.ok(marks > 0, 'exceptions are marked on the timeline');
  await page.screenshot({ path: join(out, 'simulate.png'), fullPage: true });
  assert.deepEqual(errors, []);
  assert.deepEqual(consoleErrors, []);
  await page.close();
});

test('simulation: the profile selector runs the day on cxone — agentIds, the profile shown, 0 READY during breaks', async () => {
  const { page, errors, consoleErrors } = await openPage('/simulate.html');
  await page.getByLabel('Agents', { exact: true }).fill('400');
  await page.getByLabel('Shift length (hours)').fill('6');
  await page.getByLabel('API profile').selectOption('cxone');
  await page.getByRole('button', { name: 'Run simulation' }).click();
  const status = page.locator('#sim-status[data-ms]');
  await status.waitFor({ timeout: 60_000 });
  // What ran is what was chosen: the summary's own profile, in the status, the table and the share link.
  assert.equal(await status.getAttribute('data-profile'), 'cxone');
  assert.match(await status.innerText(), /on the cxone profile[\s\S]* 0 READY accepted during a break\.$/);
  assert.equal(await page.locator('#truth td[data-key="profile"]').innerText(), 'cxone');
  assert.match(page.url(), /[?&]profile=cxone(&|$)/);
  assert.equal(Number(await page.locator('#truth td[data-key="readyAcceptedDuringBreak"]').innerText()), 0);
  // On cxone the engine names agents by their numeric agentId: so do the timeline's labels.
  const labels = await page.locator('svg[data-chart="timeline"] text').allTextContents();
  assert.ok(labels.some((t) => /^\d{4,}$/.test(t.trim())), `timeline labels: ${labels.slice(0, 5).join(', ')}`);
  assert.ok(!labels.some((t) => t.startsWith('#')), 'no seed user ids (shown as #0001)');
  // The same day computed by the package in Node on cxone gives the same figures.
  const m = await import(join(root, 'bindings-wasm', 'pkg', 'node.mjs'));
  const day = m.simulateDay({ agents: 400, hours: 6, seed: 42, faults: 0.02, rateLimitPerMinute: 100, breakEveryHours: 2, breakMinutes: 15, profile: 'cxone' });
  for (const key of ['totalTransitions', 'successCount', 'violationCount']) {
    assert.equal(Number(await page.locator(`#report dd[data-key="${key}"]`).getAttribute('data-value')), day.report[key], key);
  }
  assert.equal(Number(await page.locator('#truth td[data-key="requestsReceived"]').innerText()), day.groundTruth.totalRequests);
  await page.screenshot({ path: join(out, 'simulate-cxone.png'), fullPage: true });
  assert.deepEqual(errors, []);
  assert.deepEqual(consoleErrors, []);
  await page.close();
});

test('simulation on cxone: the tenant\'s own activity, observed — accuracy with observation off and on, as the package computes it', async () => {
  const { page, errors, consoleErrors } = await openPage('/simulate.html');
  const activity = page.getByRole('group', { name: 'The tenant\'s own activity (cxone)' });
  // Seed has no agent states to read: the fieldset is disabled until cxone is chosen.
  assert.equal(await activity.evaluate((f) => f.disabled), true);
  assert.equal(await page.getByLabel('Observe agent states').isDisabled(), true);
  await page.getByLabel('Agents', { exact: true }).fill('200');
  await page.getByLabel('Shift length (hours)').fill('4');
  await page.getByLabel('API profile').selectOption('cxone');
  assert.equal(await activity.evaluate((f) => f.disabled), false);
  await page.getByLabel('Agent changes per agent-hour').fill('4');
  await page.getByLabel('Contacts per agent-hour').fill('6');
  await page.getByLabel('Supervisor changes per agent-hour').fill('0.5');
  await page.getByLabel('Observe agent states').check();
  await page.getByRole('button', { name: 'Run simulation' }).click();
  const status = page.locator('#sim-status[data-ms]');
  await status.waitFor({ timeout: 120_000 });
  assert.match(await status.innerText(), /on the cxone profile, observing agent states,[\s\S]* 0 READY accepted during a break\.$/);
  assert.equal(await page.locator('#progress').evaluate((p) => p.value), 1);
  const url = new URL(page.url());
  assert.deepEqual(['agentChanges', 'contacts', 'supervisorChanges', 'logInOut', 'observe'].map((k) => url.searchParams.get(k)),
    ['4', '6', '0.5', 'false', 'true']);
  assert.equal(await page.locator('#accuracy-section').isVisible(), true);
  const cell = (key, run) => page.locator(`#accuracy td[data-key="${key}"][data-run="${run}"]`);
  // The same day computed by the package in Node, with observation on and off.
  const m = await import(join(root, 'bindings-wasm', 'pkg', 'node.mjs'));
  const options = {
    agents: 200, hours: 4, seed: 42, faults: 0.02, rateLimitPerMinute: 100, breakEveryHours: 2, breakMinutes: 15, profile: 'cxone',
    activity: { agentChangesPerHour: 4, contactsPerHour: 6, supervisorChangesPerHour: 0.5, logInOut: false },
  };
  const on = m.simulateDay({ ...options, observe: true }).accuracy;
  const off = m.simulateDay({ ...options, observe: false }).accuracy;
  assert.equal(on.observed, true);
  assert.equal(off.observed, false);
  assert.equal(await cell('agentsWithinBound', 'on').innerText(), `${on.agentsWithinBound} / 200`);
  assert.equal(await cell('agentsWithinBound', 'off').innerText(), `${off.agentsWithinBound} / 200`);
  // Observing, every agent's working and idle time is within one poll interval per true change.
  assert.equal(await cell('agentsWithinBound', 'on').innerText(), '200 / 200');
  for (const key of ['meanUtilizationError', 'maxUtilizationError', 'meanIdleErrorMs', 'maxIdleErrorMs']) {
    assert.equal(Number(await cell(key, 'on').getAttribute('data-value')), on[key], `${key} on`);
    assert.equal(Number(await cell(key, 'off').getAttribute('data-value')), off[key], `${key} off`);
  }
  const meanOn = Number(await cell('meanUtilizationError', 'on').getAttribute('data-value'));
  const meanOff = Number(await cell('meanUtilizationError', 'off').getAttribute('data-value'));
  assert.ok(meanOff > meanOn, `mean utilization error off ${meanOff} > on ${meanOn}`);
  assert.match(await cell('meanUtilizationError', 'on').innerText(), /^\d+\.\d{2}$/);
  assert.equal(await page.locator('#accuracy-agents tbody tr').count(), 5);
  assert.equal(await page.locator('#accuracy-agents-cap').innerText(), 'The 5 agents furthest off (observation on)');
  await page.screenshot({ path: join(out, 'simulate-accuracy.png'), fullPage: true });

  // Without observation only the "off" column is filled.
  await page.getByLabel('Observe agent states').uncheck();
  await page.getByRole('button', { name: 'Run simulation' }).click();
  await page.locator('#sim-status[data-ms]:not(:has-text("observing"))').waitFor({ timeout: 60_000 });
  assert.equal(await cell('agentsWithinBound', 'off').innerText(), `${off.agentsWithinBound} / 200`);
  assert.equal(await cell('agentsWithinBound', 'on').innerText(), '—');
  // Back on seed, the fieldset is disabled again.
  await page.getByLabel('API profile').selectOption('seed');
  assert.equal(await activity.evaluate((f) => f.disabled), true);
  assert.deepEqual(errors, []);
  assert.deepEqual(consoleErrors, []);
  await page.close();
});

test('console on cxone: bases and tokens from the page\'s back end (no secret, no discovery), agents by agentId', async () => {
  const { page, errors } = await openPage('/');
  await page.locator('#tenant-status.ok').waitFor();
  const wellKnown = [];
  page.on('request', (r) => {
    if (/well-known|auth\/token/.test(r.url())) wellKnown.push(r.url());
  });
  await page.getByLabel('API profile').selectOption('cxone');
  assert.equal(await page.getByLabel('Token endpoint (your back end)').inputValue(), '/token?profile=cxone');
  await page.getByRole('button', { name: 'Connect' }).click();
  await page.locator('#tenant-status.ok', { hasText: 'cxone profile' }).waitFor();
  await page.getByRole('button', { name: 'Set 1001 to NOT_READY' }).click();
  await page.locator('tr[data-agent="1001"] .result', { hasText: 'Changed to NOT_READY' }).waitFor();
  await page.locator('tr[data-agent="1001"] .state .badge', { hasText: 'NOT_READY' }).waitFor();
  // agent-0003 (agentId 1003) is in a break: READY is refused before anything is sent.
  await page.getByRole('button', { name: 'Set 1003 to READY' }).click();
  await page.locator('tr[data-agent="1003"] .result', { hasText: 'Refused' }).waitFor();
  // The console observes on cxone: the first poll's observation records come first in the log.
  assert.match(await page.locator('#audit tbody tr', { hasText: 'accepted' }).last().innerText(), /1001[\s\S]*NOT_READY[\s\S]*accepted/);
  assert.deepEqual(wellKnown, [], 'the page did no discovery and no grant');
  assert.deepEqual(errors, []);
  await page.close();
});

/** The console on cxone, observing every second (stale after 3 s without a successful poll). */
async function observingConsole() {
  const opened = await openPage('/?observeMs=1000&staleMs=3000');
  const { page } = opened;
  await page.locator('#tenant-status.ok').waitFor();
  await page.getByLabel('API profile').selectOption('cxone');
  await page.getByRole('button', { name: 'Connect' }).click();
  await page.locator('#tenant-status.ok', { hasText: 'cxone profile' }).waitFor();
  await page.locator('#observe-status[data-stale="false"]', { hasText: 'live' }).waitFor({ timeout: 15_000 });
  return opened;
}

/** An admin call to the console's local sim-server. */
async function simAdmin(path, body) {
  const { baseUrl } = await fetch(`${base}/config`).then((r) => r.json());
  const res = await fetch(baseUrl + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(res.status, 200, `${path}: ${res.status}`);
  return res.json();
}

test('console on cxone: a supervisor\'s change made elsewhere shows up live, marked external', async () => {
  const { page, errors } = await observingConsole();
  const row = page.locator('tr[data-agent="1004"]');
  assert.equal(await row.locator('.badge.source').count(), 0, 'nothing external before the change');
  // agent-0004 is agentId 1004 (team A, which has a Lunch code).
  await simAdmin('/admin/agents/agent-0004/tenant-state', { state: 'Unavailable', code: 'Lunch', source: 'supervisor' });
  const entry = page.locator('#feed li[data-agent="1004"][data-source="external"]');
  await entry.waitFor({ timeout: 15_000 });
  assert.match(await entry.innerText(), /1004: \S+ → NOT_READY \(Unavailable · Lunch\)\s*external/);
  await row.locator('.state .badge.NOT_READY').waitFor();
  assert.equal(await row.locator('.state .badge.source').innerText(), 'external');
  assert.match(await row.locator('.result').innerText(), /Changed elsewhere to NOT_READY \(Lunch\)/);
  // The observation is in the audit log as a record of its own, chained and verified.
  assert.match(await page.locator('#audit tbody tr', { hasText: 'observed (external)' }).filter({ hasText: '1004' }).first().innerText(),
    /1004[\s\S]*NOT_READY[\s\S]*observed \(external\)[\s\S]*✓ linked, hash verified/);
  // Our own change is not marked external.
  await page.getByRole('button', { name: 'Set 1004 to READY' }).click();
  await row.locator('.result', { hasText: 'Changed to READY' }).waitFor();
  assert.equal(await row.locator('.badge.source').count(), 0);
  await page.screenshot({ path: join(out, 'console-observe.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});

test('console on cxone: "stale" with the lag while the tenant refuses the poll (503), cleared once it answers', async () => {
  const { page, errors } = await observingConsole();
  const status = page.locator('#observe-status');
  await simAdmin('/admin/faults', { endpoint: 'agentStates', fault: { kind: 'status', status: 503 }, times: 100_000 });
  try {
    await page.locator('#observe-status[data-stale="true"]').waitFor({ timeout: 20_000 });
    assert.match(await status.innerText(), /stale: agent states last confirmed \d+ s ago/);
    await page.screenshot({ path: join(out, 'console-stale.png'), fullPage: true });
  } finally {
    await simAdmin('/admin/faults/clear', {});
  }
  await page.locator('#observe-status[data-stale="false"]').waitFor({ timeout: 30_000 });
  assert.match(await status.innerText(), /live: observed \d+ s ago/);
  assert.doesNotMatch(await status.innerText(), /stale/);
  assert.deepEqual(errors, []);
  await page.close();
});

test('simulation on cxone: schedule adherence — team figures, the team curve, every agent, exceptions on the timeline', async () => {
  const params = {
    agents: 200, hours: 6, breakEvery: 2, breakMinutes: 15, faults: 2, rate: 100, seed: 42, profile: 'cxone',
    agentChanges: 4, contacts: 6, supervisorChanges: 0.5, logInOut: true, observe: false,
  };
  const { page, errors, consoleErrors } = await openPage(`/simulate.html?${new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]))}`);
  // Nothing to show before a day has run.
  assert.equal(await page.locator('#adherence-section').isVisible(), false);
  await page.locator('#sim-status[data-ms]').waitFor({ timeout: 60_000 });
  const m = await import(join(root, 'bindings-wasm', 'pkg', 'node.mjs'));
  const day = m.simulateDay({
    agents: 200, hours: 6, seed: 42, faults: 0.02, rateLimitPerMinute: 100, breakEveryHours: 2, breakMinutes: 15, profile: 'cxone',
    activity: { agentChangesPerHour: 4, contactsPerHour: 6, supervisorChangesPerHour: 0.5, logInOut: true }, observe: false,
  });
  const a = day.report.adherence;
  // The tenant's own activity puts agents out of adherence in breaks and has them work outside their shifts.
  assert.ok(Object.keys(a.team.outByActivityMs).length >= 2, `time out by activity: ${JSON.stringify(a.team.outByActivityMs)}`);
  assert.ok(a.team.workOutsideShiftMs > 0);
  const marks = await assertAdherence(page, day);
  assert.ok(marks > 0, 'exceptions are marked on the timeline');
  const breakMark = page.locator('svg[data-chart="timeline"] rect.exception title', { hasText: 'during scheduled Break' });
  const inBreaks = day.charts.timelines.some((t) => a.agents.find((x) => x.userId === t.userId).exceptions.some((e) => e.activity === 'Break'));
  assert.equal(await breakMark.count() > 0, inBreaks);
  await page.locator('#adherence-section').screenshot({ path: join(out, 'simulate-adherence.png') });

  // Sorting: by exceptions, the most first; again, the fewest first; the agents stay the same.
  const column = (key) => page.locator(`#adherence-agents tbody td[data-key="${key}"]`).evaluateAll((tds) => tds.map((td) => Number(td.dataset.value)));
  const most = Math.max(...a.agents.map((x) => x.exceptions.length));
  const fewest = Math.min(...a.agents.map((x) => x.exceptions.length));
  assert.ok(most > fewest, 'agents differ in exceptions');
  await page.getByRole('button', { name: 'Exceptions', exact: true }).click();
  assert.equal(await page.locator('#adherence-agents th[data-sort="exceptions"]').getAttribute('aria-sort'), 'descending');
  assert.equal(await page.locator('#adherence-agents th[data-sort="adherence"]').getAttribute('aria-sort'), null);
  let counts = await column('exceptions');
  assert.equal(counts.length, a.agents.length);
  assert.equal(counts[0], most);
  assert.ok(counts.every((c, i) => i === 0 || counts[i - 1] >= c), 'descending exceptions');
  await page.getByRole('button', { name: 'Exceptions', exact: true }).click();
  assert.equal(await page.locator('#adherence-agents th[data-sort="exceptions"]').getAttribute('aria-sort'), 'ascending');
  counts = await column('exceptions');
  assert.equal(counts[0], fewest);
  assert.ok(counts.every((c, i) => i === 0 || counts[i - 1] <= c), 'ascending exceptions');
  assert.deepEqual(errors, []);
  assert.deepEqual(consoleErrors, []);
  await page.close();
});

test('charts: the adherence curve skips hours without a figure; the timeline marks only exceptions in its range, and works without', async () => {
  const { page, errors } = await openPage('/simulate.html');
  const r = await page.evaluate(async () => {
    const { shareCurve, timeline } = await import('/charts.js');
    const svg = (h) => {
      const s = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
      s.setAttribute('viewBox', `0 0 600 ${h}`);
      return s;
    };
    const H = 3_600_000;
    const curveSvg = svg(220);
    const drawn = shareCurve(curveSvg, [
      { fromMs: 0, toMs: H, value: 0.5 }, { fromMs: H, toMs: 2 * H, value: null }, { fromMs: 2 * H, toMs: 3 * H, value: 1 },
      { fromMs: 3 * H, toMs: 4 * H, value: undefined }, { fromMs: 4 * H, toMs: 4.5 * H, value: 0.25 },
    ], 0, 4.5 * H);
    const tl = [{ userId: 'a', segments: [[0, 'READY'], [H, 'NOT_READY']] }, { userId: 'b', segments: [[0, 'IDLE']] }];
    const ex = (startMs, endMs) => ({ startMs, endMs, durationMs: endMs - startMs, scheduled: 'work', actual: 'unavailable', code: 'GENERAL' });
    const plain = svg(260);
    timeline(plain, tl, 0, 2 * H);
    const marked = svg(260);
    const marks = timeline(marked, tl, 0, 2 * H, new Map([
      ['a', [ex(-H, -1), ex(-60_000, 60_000), ex(30 * 60_000, 45 * 60_000), ex(2 * H, 3 * H)]],
      ['c', [ex(0, H)]],
    ]));
    const xs = [...marked.querySelectorAll('rect.exception')].map((m) => [Number(m.getAttribute('x')), Number(m.getAttribute('width'))]);
    return {
      drawn,
      points: [...curveSvg.querySelectorAll('circle.point')].map((c) => Number(c.dataset.value)),
      path: curveSvg.querySelector('path').getAttribute('d'),
      plainRects: plain.querySelectorAll('rect').length,
      plainMarks: plain.querySelectorAll('.exception').length,
      marks,
      markCount: marked.querySelectorAll('rect.exception').length,
      xs,
      firstAgentX: Number(marked.querySelector('rect:not(.exception)').getAttribute('x')),
      titles: [...marked.querySelectorAll('rect.exception title')].map((t) => t.textContent),
    };
  });
  assert.equal(r.drawn, 3);
  assert.deepEqual(r.points, [0.5, 1, 0.25]);
  // Three separate stretches: each point starts its own (a null breaks the line), and no NaN.
  assert.equal((r.path.match(/M/g) ?? []).length, 3);
  assert.doesNotMatch(r.path, /NaN/);
  // Without exceptions the timeline is as before: one rect per segment, no marks.
  assert.equal(r.plainRects, 3);
  assert.equal(r.plainMarks, 0);
  // Only the two of agent a's exceptions that overlap [0, 2 h) are marked (agent c is not on the chart);
  // the one that starts before the range is clipped to its start.
  assert.equal(r.marks, 2);
  assert.equal(r.markCount, 2);
  assert.equal(r.xs[0][0], r.firstAgentX);
  assert.ok(r.xs[1][0] > r.firstAgentX && r.xs[1][1] > 1);
  assert.deepEqual(r.titles, ['a out of adherence: unavailable (GENERAL) during scheduled work, 2.0 min from 23:59',
    'a out of adherence: unavailable (GENERAL) during scheduled work, 15.0 min from 00:30']);
  assert.deepEqual(errors, []);
  await page.close();
});

test('simulation: a negative agent count gets a clear message and nothing runs', async () => {
  const { page, errors, consoleErrors } = await openPage('/simulate.html');
  await page.getByLabel('Agents', { exact: true }).fill('-5');
  await page.getByRole('button', { name: 'Run simulation' }).click();
  await page.locator('#form-error', { hasText: 'Agent count must be a whole number from 1' }).waitFor();
  assert.equal(await page.getByLabel('Agents', { exact: true }).getAttribute('aria-invalid'), 'true');
  assert.equal(await page.locator('svg[data-chart="latency"] rect').count(), 0);
  assert.deepEqual(errors, []);
  assert.deepEqual(consoleErrors, []);
  await page.close();
});
