// The package against the native sim-server over real HTTP, with the real global fetch.
import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { join } from 'node:path';
import { pkgDir, startSimServer, credentials, onShift } from './helpers.mjs';

const { AgentStateManager } = await import(join(pkgDir, 'node.mjs'));

let sim;
before(async () => {
  sim = await startSimServer(['--agents', '120', '--rate-limit', '6000', '--burst', '100', '--latency-ms', '2']);
});
after(async () => sim.stop());

const fast = { rateLimitPerMinute: 6000, retry: { maxRetries: 3, baseMs: 100, jitterMs: 50, capMs: 2000 } };
const manager = (options = {}) => new AgentStateManager(credentials, undefined, { baseUrl: sim.baseUrl, seed: 1, ...fast, ...options });
const truth = () => sim.admin('/admin/ground-truth');

/** A webhook receiver on loopback (real HTTP): records what it gets, answers 204. */
async function startReceiver() {
  const got = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      res.writeHead(204).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${server.address().port}/hooks`, got, close: () => server.close() };
}

test('happy path: READY with records and events in order, the audit hash chain, a webhook, and the tenant updated', async () => {
  const receiver = await startReceiver();
  const m = new AgentStateManager(credentials, receiver.url, { baseUrl: sim.baseUrl, seed: 1, ...fast });
  const seen = [];
  for (const type of ['statechange', 'audit', 'intent', 'webhook', 'violation']) m.addEventListener(type, (e) => seen.push([type, e.detail]));
  const delivered = new Promise((resolve) => m.addEventListener('webhookdelivered', (e) => resolve(e.detail)));
  const r = await m.transitionState('agent-0001', 'READY');
  assert.equal(r.success, true);
  assert.equal(typeof r.latency, 'number');
  assert.equal(r.latency, r.latencyMs);
  assert.equal(r.reasonCode, 'WORKING');
  assert.equal(r.newState, 'READY');
  assert.deepEqual(seen.map(([t]) => t), ['intent', 'webhook', 'audit', 'statechange']);
  const audit = seen[2][1];
  assert.match(audit.hash, /^[0-9a-f]{64}$/);
  assert.equal(audit.prevHash, '0'.repeat(64));
  assert.equal(audit.success, true);
  assert.equal(audit.idempotencyKey, seen[0][1].idempotencyKey);
  const payload = seen[1][1];
  assert.equal(payload.event, 'AGENT_STATE_CHANGED');
  const d = await delivered;
  assert.equal(d.eventId, payload.eventId);
  assert.equal(receiver.got.length, 1);
  assert.equal(receiver.got[0].headers['x-event-id'], payload.eventId);
  assert.deepEqual(JSON.parse(receiver.got[0].body), payload);
  const agent = await sim.admin('/admin/agents/agent-0001');
  assert.equal(agent.state, 'READY');
  const report = m.getComplianceReport();
  assert.equal(report.totalTransitions, 1);
  assert.equal(report.successCount, 1);
  assert.equal(report.unknownOutcomeCount, 0);
  await m.close();
  receiver.close();
});

test('policy errors carry their codes; only policy refusals count as violations', async () => {
  const now = Date.now();
  await sim.admin('/admin/agents', [
    { userId: 'ghost', shifts: [], breaks: [] },
    onShift('on-break', [{ startMs: now - 60_000, endMs: now + 3_600_000 }]),
  ]);
  const m = manager();
  const violations = [];
  m.addEventListener('violation', (e) => violations.push(e.detail.code));
  await assert.rejects(m.transitionState('ghost', 'READY'), (e) => e instanceof Error && e.code === 'AGENT_NOT_SCHEDULED' && e.policyViolation === true);
  await assert.rejects(m.transitionState('on-break', 'READY'), (e) => e.code === 'MANDATORY_BREAK_VIOLATION');
  const ok = await m.transitionState('on-break', 'NOT_READY');
  assert.equal(ok.reasonCode, 'BREAK');
  await assert.rejects(m.transitionState('agent-0002', 'ready'), (e) => e.code === 'INVALID_STATE' && e.policyViolation === false);
  await assert.rejects(m.transitionState('../x', 'READY'), (e) => e.code === 'INVALID_USER_ID');
  assert.deepEqual(violations, ['AGENT_NOT_SCHEDULED', 'MANDATORY_BREAK_VIOLATION']);
  const report = m.getComplianceReport();
  assert.equal(report.violationCount, 2);
  assert.equal(report.failureCount, 4);
  await assert.rejects(m.validateStateChange('on-break', 'READY'), (e) => e.code === 'MANDATORY_BREAK_VIOLATION');
  assert.deepEqual(await m.validateStateChange('on-break', 'PAUSED'), { valid: true, reasonCode: 'ADHOC' });
  await m.close();
});

test('a supervisor override passes the break rule, is audited as an override and never as a violation', async () => {
  const now = Date.now();
  await sim.admin('/admin/agents', [
    onShift('held', [{ startMs: now - 60_000, endMs: now + 3_600_000 }]),
  ]);
  const records = [];
  const m = manager({ persist: (r) => { if (!r.kind) records.push(r); } });
  await assert.rejects(m.transitionState('held', 'READY', { override: { actor: 'kim', reason: '' } }),
    (e) => e.code === 'INVALID_OVERRIDE');
  await assert.rejects(m.transitionState('held', 'READY', { actor: { role: 'boss' } }),
    (e) => e.code === 'INVALID_CONFIG' || e.code === 'INVALID_ACTOR');
  const ok = await m.transitionState('held', 'READY', { override: { actor: 'kim', reason: 'queue over SLA' } });
  assert.equal(ok.newState, 'READY');
  assert.equal((await sim.admin('/admin/agents/held')).state, 'READY');
  await m.transitionState('held', 'NOT_READY', { actor: { role: 'agent', id: 'held' } });
  assert.equal(records.length, 2, 'refused options audit nothing');
  assert.deepEqual(records[0].override, { actor: 'kim', overrode: 'MANDATORY_BREAK_VIOLATION', reason: 'queue over SLA' });
  assert.deepEqual(records[0].actor, { id: 'kim', role: 'supervisor' });
  assert.equal(records[0].policyViolation, false);
  assert.deepEqual(records[1].actor, { id: 'held', role: 'agent' });
  assert.ok(records.every((r) => r.source === 'console'), JSON.stringify(records));
  const report = m.getComplianceReport();
  assert.equal(report.violationCount, 0);
  assert.deepEqual(report.overridesByRule, { MANDATORY_BREAK_VIOLATION: 1 });
  await m.close();
});

test('a deferred READY waits for the break to end, then applies; another is cancelled', async () => {
  const now = Date.now();
  await sim.admin('/admin/agents', [
    onShift('short-break', [{ startMs: now - 60_000, endMs: now + 2_000 }]),
    onShift('long-break', [{ startMs: now - 60_000, endMs: now + 1_800_000 }]),
  ]);
  const during = (await truth()).readyAcceptedDuringBreak; // the override test's READY counts too
  const m = manager();
  const events = [];
  for (const name of ['deferred', 'deferredapplied', 'deferredcancelled']) {
    m.addEventListener(name, (e) => events.push([name, e.detail.userId, e.detail.cause]));
  }
  const applied = m.transitionState('short-break', 'READY', { defer: true });
  const cancelled = m.transitionState('long-break', 'READY', { defer: true });
  const caught = cancelled.catch((e) => e);
  while (events.filter(([n]) => n === 'deferred').length < 2) await new Promise((r) => setTimeout(r, 20));
  assert.equal((await sim.admin('/admin/agents/short-break')).state, null, 'held, nothing sent');
  assert.equal(await m.cancelDeferred('long-break'), true);
  assert.equal(await m.cancelDeferred('long-break'), false);
  assert.equal((await caught).code, 'DEFERRAL_CANCELLED');
  const ok = await applied;
  assert.equal(ok.newState, 'READY');
  assert.ok(Date.now() >= now + 2_000, 'not before the break ended');
  assert.equal((await sim.admin('/admin/agents/short-break')).state, 'READY');
  assert.equal((await truth()).readyAcceptedDuringBreak, during);
  assert.deepEqual(events.map(([n, u, c]) => [n, u, c ?? null]).sort(), [
    ['deferred', 'long-break', null], ['deferred', 'short-break', null],
    ['deferredapplied', 'short-break', null], ['deferredcancelled', 'long-break', 'cancelled'],
  ]);
  const report = m.getComplianceReport();
  assert.deepEqual(report.deferrals, { held: 2, applied: 1, failed: 0, expired: 0, cancelled: 1 });
  assert.equal(report.violationCount, 0);
  assert.equal(report.agentCounts['short-break'].deferredApplied, 1);
  assert.equal(report.adherence, undefined, 'adherence comes with detail');
  // With detail and the agent's schedule: out of adherence from the shift's start until READY.
  const shift = { startMs: now - 60_000, endMs: Date.now() + 60_000,
    activities: [{ name: 'Break', startMs: now - 60_000, endMs: now + 2_000, mandatoryBreak: true }] };
  const detail = m.getComplianceReport({ detail: true, schedules: { 'short-break': [shift] } });
  const agent = detail.adherence.agents.find((a) => a.userId === 'short-break');
  assert.ok(agent, JSON.stringify(detail.adherence));
  assert.ok(agent.scheduledWorkMs > 0 && agent.productiveMs > 0, JSON.stringify(agent));
  assert.ok(agent.adherence > 0 && agent.adherence <= 1, JSON.stringify(agent));
  assert.throws(() => m.getComplianceReport({ detail: true, schedules: { x: 'no' } }), (e) => e.code === 'INVALID_CONFIG');
  await m.close();
});

test('a 429 with Retry-After is honoured', async () => {
  const m = manager();
  await m.transitionState('agent-0003', 'READY'); // token and schedule cached
  await sim.admin('/admin/faults', { endpoint: 'setState', userId: 'agent-0003', fault: { kind: 'rateLimit', retryAfterS: 1 }, times: 1 });
  const retries = [];
  m.addEventListener('retry', (e) => retries.push(e.detail));
  const t = Date.now();
  const r = await m.transitionState('agent-0003', 'PAUSED');
  assert.ok(Date.now() - t >= 1000, `took ${Date.now() - t} ms`);
  assert.equal(r.success, true);
  assert.equal(retries.length, 1);
  assert.equal(retries[0].status, 429);
  assert.ok(retries[0].delayMs >= 1000);
  await m.close();
});

test('503s are retried three times: a lookup then fails UPSTREAM_UNAVAILABLE, a sent change OUTCOME_UNKNOWN', async () => {
  const m = manager();
  await m.transitionState('agent-0004', 'READY');
  await sim.admin('/admin/faults', { endpoint: 'setState', userId: 'agent-0004', fault: { kind: 'status', status: 503 }, times: 4 });
  const before = (await truth()).requestsByEndpoint.setState;
  // A 503 may come from a proxy that forwarded the change: it may have been applied.
  await assert.rejects(m.transitionState('agent-0004', 'IDLE'), (e) => e.code === 'OUTCOME_UNKNOWN' && e.policyViolation === false);
  assert.equal((await truth()).requestsByEndpoint.setState - before, 4);
  await sim.admin('/admin/faults', { endpoint: 'schedule', userId: 'agent-0009', fault: { kind: 'status', status: 503 }, times: 4 });
  await assert.rejects(m.transitionState('agent-0009', 'IDLE'), (e) => e.code === 'UPSTREAM_UNAVAILABLE');
  const report = m.getComplianceReport();
  assert.equal(report.violationCount, 0, 'an outage is not a violation');
  assert.equal(report.unknownOutcomeCount, 1);
  await m.close();
});

test('a 401 refreshes the token once and the change succeeds', async () => {
  const m = manager();
  await m.transitionState('agent-0005', 'READY');
  const issued = (await truth()).tokensIssued;
  await sim.admin('/admin/revoke-tokens', {});
  const r = await m.transitionState('agent-0005', 'NOT_READY');
  assert.equal(r.success, true);
  assert.equal((await truth()).tokensIssued - issued, 1);
  await m.close();
});

test('50 concurrent transitions make exactly one token request', async () => {
  const m = manager();
  const issued = (await truth()).tokensIssued;
  const users = Array.from({ length: 50 }, (_, i) => `agent-${String(i + 60).padStart(4, '0')}`);
  const results = await Promise.all(users.map((u) => m.transitionState(u, 'NOT_READY')));
  assert.ok(results.every((r) => r.success));
  assert.equal((await truth()).tokensIssued - issued, 1);
  await m.close();
});

test('getAccessToken: the page never holds a secret; the back end hands out tokens', async () => {
  let asked = 0;
  const getAccessToken = async () => {
    asked += 1;
    // What a console's back end does: client credentials on the server side.
    const res = await fetch(`${sim.baseUrl}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials&client_id=sim-client&client_secret=sim-secret',
    });
    const t = await res.json();
    return { accessToken: t.access_token, expiresIn: t.expires_in };
  };
  const m = new AgentStateManager({ getAccessToken }, undefined, { baseUrl: sim.baseUrl, ...fast });
  const results = await Promise.all(['agent-0110', 'agent-0111', 'agent-0112'].map((u) => m.transitionState(u, 'READY')));
  assert.ok(results.every((r) => r.success));
  assert.equal(asked, 1);
  await m.close();
});
