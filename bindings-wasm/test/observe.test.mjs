// Observing agent states changed elsewhere (`cxone`), through the package against sim-server over real HTTP:
// a supervisor's change arrives as an `observed` event marked `external`, our own change as `ours`,
// `getAgents()` tells the two apart, the heartbeat goes stale while the poll is refused and recovers, an
// unknown outcome is settled by what the tenant shows, and `seed` refuses to observe.
import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pkgDir, startSimServer, credentials } from './helpers.mjs';

const { AgentStateManager, errorCodes } = await import(join(pkgDir, 'node.mjs'));

const ACCESS_KEY = { accessKeyId: 'obs-access-key', accessKeySecret: 'obs-secret' };

let sim;
before(async () => {
  sim = await startSimServer(['--profile', 'cxone', '--agents', '6', '--rate-limit', '6000', '--burst', '100',
    '--wfm-rate-limit', '6000', '--latency-ms', '2', '--access-key-id', ACCESS_KEY.accessKeyId,
    '--access-key-secret', ACCESS_KEY.accessKeySecret]);
});
after(async () => sim?.stop());

// A poll every second, stale after three without a success; retries quick enough for a test.
const OBSERVE = { intervalMs: 1000, staleAfterMs: 3000 };
const fast = { rateLimitPerMinute: 6000, wfmRateLimitPerMin: 6000, retry: { maxRetries: 3, baseMs: 50, jitterMs: 10, capMs: 500 } };

const open = [];
after(() => Promise.all(open.map((m) => m.close())));

/** A manager on `cxone` that observes (closed after the file, should a test fail half-way). */
function observer(options = {}) {
  return track(new AgentStateManager({ ...credentials, ...ACCESS_KEY }, undefined, {
    profile: 'cxone', authBase: sim.baseUrl, wfmBaseUrl: sim.baseUrl, seed: 21, observe: OBSERVE, ...fast, ...options,
  }));
}

function track(m) {
  open.push(m);
  return m;
}

/** Resolves with the first `type` event's detail that `match` accepts (events before the call are missed). */
function next(m, type, match = () => true, timeoutMs = 15_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      m.removeEventListener(type, on);
      reject(new Error(`no matching '${type}' event within ${timeoutMs} ms`));
    }, timeoutMs);
    function on(e) {
      if (!match(e.detail)) return;
      clearTimeout(timer);
      m.removeEventListener(type, on);
      resolve(e.detail);
    }
    m.addEventListener(type, on);
  });
}

const agent = (m, userId) => m.getAgents().find((a) => a.userId === userId);

test('observe: a supervisor\'s change arrives as `observed` from `external`, and getAgents() shows it', async () => {
  const m = observer();
  // The first poll reads every agent.
  const first = await next(m, 'heartbeat', (h) => h.ok);
  assert.equal(m.observing, true);
  assert.ok(first.agents >= 6, `the first poll saw ${first.agents} agents`);
  assert.equal(first.stale, false);
  const seen = next(m, 'observed', (o) => o.userId === '1001' && o.observation.code === 'Lunch');
  const ok = await sim.admin('/admin/agents/agent-0001/tenant-state', { state: 'Unavailable', code: 'Lunch', source: 'supervisor' });
  assert.deepEqual(ok, { ok: true });
  const o = await seen;
  assert.equal(o.observation.source, 'external');
  assert.equal(o.observation.tenantState, 'Unavailable');
  assert.equal(o.state, 'NOT_READY');
  assert.match(o.recordId, /^[0-9a-f-]{36}$/);
  const a = agent(m, '1001');
  assert.equal(a.state, 'NOT_READY');
  assert.equal(a.source, 'external');
  assert.equal(a.code, 'Lunch');
  assert.equal(a.tenantState, 'Unavailable');
  assert.equal(a.stale, false);
  // The observation is an audit record of its own, counted apart in the report.
  const report = m.getComplianceReport();
  assert.ok(report.observedBySource.external >= 1, JSON.stringify(report.observedBySource));
  await m.stopObserving();
  assert.equal(m.observing, false);
  await m.close();
});

test('observe: our own transitionState is observed as `ours`', async () => {
  const m = observer({ observe: { ...OBSERVE, autoStart: false } });
  assert.equal(m.observing, false);
  await m.startObserving();
  assert.equal(m.observing, true);
  await next(m, 'heartbeat', (h) => h.ok);
  const seen = next(m, 'observed', (o) => o.userId === '1004' && o.state === 'PAUSED');
  const done = await m.transitionState('1004', 'PAUSED');
  assert.equal(done.newState, 'PAUSED');
  const o = await seen;
  assert.equal(o.observation.source, 'ours');
  const a = agent(m, '1004');
  assert.equal(a.state, 'PAUSED');
  assert.equal(a.source, 'ours');
  assert.equal(a.stale, false);
  assert.ok(a.observedAgoMs >= 0);
  await m.close();
});

test('observe: the heartbeat goes stale while the poll is refused (503), and fresh again once it answers', async () => {
  const m = observer();
  await next(m, 'heartbeat', (h) => h.ok);
  await sim.admin('/admin/faults', { endpoint: 'agentStates', fault: { kind: 'status', status: 503 }, times: 100_000 });
  try {
    const failed = await next(m, 'heartbeat', (h) => !h.ok && h.stale);
    assert.equal(failed.error.code, 'UPSTREAM_UNAVAILABLE');
    assert.ok(failed.lagMs > OBSERVE.staleAfterMs, `lag ${failed.lagMs} ms`);
    assert.ok(m.getAgents().every((a) => a.stale), 'every snapshot is stale');
  } finally {
    await sim.admin('/admin/faults/clear', {});
  }
  const fresh = await next(m, 'heartbeat', (h) => h.ok);
  assert.equal(fresh.stale, false);
  assert.ok(m.getAgents().every((a) => !a.stale));
  await m.close();
});

test('observe: a change whose answers were lost (OUTCOME_UNKNOWN) is `settled` as applied from what the tenant shows', async () => {
  const m = observer();
  await next(m, 'heartbeat', (h) => h.ok);
  // The tenant applies the change, but no answer reaches us, four times over.
  await sim.admin('/admin/faults', { endpoint: 'agentState', userId: 'agent-0005', fault: { kind: 'dropAfter' }, times: 4 });
  const settled = next(m, 'settled', (s) => s.userId === '1005');
  await assert.rejects(m.transitionState('1005', 'IDLE', { reference: 'obs-1' }), (e) => e.code === 'OUTCOME_UNKNOWN');
  const s = await settled;
  assert.equal(s.applied, true);
  assert.equal(s.requestedState, 'IDLE');
  assert.equal(s.reference, 'obs-1');
  assert.equal(m.unsettledOutcomes, 0);
  assert.equal(m.getComplianceReport().settledCount, 1);
  await m.close();
});

test('observe on seed: the constructor option and startObserving() are refused with OBSERVE_UNSUPPORTED', async () => {
  assert.ok(errorCodes().includes('OBSERVE_UNSUPPORTED') && errorCodes().includes('NOT_APPLIED'));
  const seed = { baseUrl: 'https://tenant.example', fetch: async () => { throw new Error('no network here'); } };
  assert.throws(() => new AgentStateManager(credentials, undefined, { ...seed, observe: true }),
    (e) => e.code === 'OBSERVE_UNSUPPORTED' && /cxone/.test(e.message));
  const m = track(new AgentStateManager(credentials, undefined, seed));
  await assert.rejects(m.startObserving(), (e) => e.name === 'CxoneError' && e.code === 'OBSERVE_UNSUPPORTED');
  assert.equal(m.observing, false);
  assert.deepEqual(m.getAgents(), []);
  await m.close();
  await assert.rejects(m.startObserving(), (e) => e.code === 'CLOSED');
});
