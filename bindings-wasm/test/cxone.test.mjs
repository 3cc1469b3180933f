// The `cxone` profile through the package: the driver against sim-server's CXone API over real HTTP (discovery,
// the password grant, the directory, unavailable codes, schedule exports on the WFM base), explicit reason
// codes, a page's token source that hands in the bases, browser safety, and simulated days on `cxone`.
import test, { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pkgDir, startSimServer, credentials } from './helpers.mjs';

const { AgentStateManager, simulateDay } = await import(join(pkgDir, 'node.mjs'));

const ACCESS_KEY = { accessKeyId: 'js-access-key', accessKeySecret: 'js=secret&with%odd' };

let sim;
before(async () => {
  sim = await startSimServer(['--profile', 'cxone', '--agents', '6', '--rate-limit', '6000', '--burst', '100',
    '--wfm-rate-limit', '6000', '--latency-ms', '2', '--access-key-id', ACCESS_KEY.accessKeyId,
    '--access-key-secret', ACCESS_KEY.accessKeySecret]);
});
after(async () => sim?.stop());

const fast = { rateLimitPerMinute: 6000, wfmRateLimitPerMin: 6000, retry: { maxRetries: 3, baseMs: 50, jitterMs: 10, capMs: 500 } };

/** A `fetch` that records every URL it was asked for. */
function recording() {
  const urls = [];
  const fetch = (url, init) => {
    urls.push(`${init?.method ?? 'GET'} ${url}`);
    return globalThis.fetch(url, init);
  };
  return { fetch, urls };
}

/** A manager with the access key: discovery from the server, the WFM base set to it (the announced one does
 * not resolve). */
function keyed(options = {}) {
  const r = recording();
  const m = new AgentStateManager({ ...credentials, ...ACCESS_KEY }, undefined, {
    profile: 'cxone', authBase: sim.baseUrl, wfmBaseUrl: sim.baseUrl, seed: 5, fetch: r.fetch, ...fast, ...options,
  });
  return { m, urls: r.urls };
}

const stateCalls = (urls) => urls.filter((u) => /\/agents\/\d+\/state/.test(u));

test('cxone over HTTP: discovery, the password grant, then { reason: "Lunch" } is sent as the team\'s outStateId', async () => {
  const { m, urls } = keyed();
  // agent-0001 is agentId 1001 (team A: Lunch is outState 2); agent-0002 is 1002 (team B: Lunch is 22).
  const a = await m.transitionState('1001', 'NOT_READY', { reason: 'Lunch' });
  assert.equal(a.success, true);
  assert.equal(a.newState, 'NOT_READY');
  const b = await m.transitionState('1002', 'NOT_READY', { reason: 'lunch' });
  assert.equal(b.success, true);
  const ready = await m.transitionState('1001', 'READY');
  assert.equal(ready.newState, 'READY');
  const sets = stateCalls(urls);
  assert.equal(sets.length, 3);
  assert.match(sets[0], /^POST .*\/inContactAPI\/services\/v34\.0\/agents\/1001\/state\?state=Unavailable&outStateId=2$/);
  assert.match(sets[1], /\/agents\/1002\/state\?state=Unavailable&outStateId=22$/);
  assert.match(sets[2], /\/agents\/1001\/state\?state=Available$/);
  assert.ok(urls.some((u) => u.includes('/.well-known/openid-configuration')), 'discovered the token endpoint');
  assert.ok(urls.some((u) => u.startsWith(`POST ${sim.baseUrl}/schedules/export`)), 'schedule exports on the WFM base');
  assert.equal((await sim.admin('/admin/agents/agent-0001')).state, 'READY');
  assert.equal((await sim.admin('/admin/ground-truth')).readyAcceptedDuringBreak, 0);
  await m.close();
});

test('cxone: an unknown code name and an unknown agent fail before any state change is sent', async () => {
  const { m, urls } = keyed();
  await assert.rejects(m.transitionState('1003', 'PAUSED', { reason: 'Nap' }),
    (e) => e.code === 'UNKNOWN_REASON_CODE' && /Nap/.test(e.message));
  await assert.rejects(m.transitionState('424242', 'READY'), (e) => e.code === 'UNKNOWN_AGENT');
  assert.deepEqual(stateCalls(urls), []);
  await m.close();
});

test('cxone: reasonCodes as the CXONE_REASON_CODES text, JSON SetAgentState, and a bad table refused up front', async () => {
  const { m, urls } = keyed({ reasonCodes: 'NOT_READY=Meeting', setStateEncoding: 'json', apiVersion: 33 });
  // The reference's getReasonCodeForState answers for the profile in use: the unavailable code's name.
  assert.equal(m.getReasonCodeForState('NOT_READY'), 'Meeting');
  assert.equal(m.getReasonCodeForState('PAUSED'), 'ADHOC');
  const intents = [];
  m.addEventListener('intent', (e) => intents.push(e.detail));
  await m.transitionState('1004', 'NOT_READY');
  const [set] = stateCalls(urls);
  assert.match(set, /\/inContactAPI\/services\/v33\.0\/agents\/1004\/state$/);
  // Team A numbers its codes from 1: Break, Lunch, Meeting → 3.
  assert.equal(intents[0].outStateId, 3);
  await m.close();
  assert.throws(() => keyed({ reasonCodes: 'READY=Break' }), (e) => e.code === 'INVALID_CONFIG' && /CXONE_REASON_CODES/.test(e.message));
  assert.throws(() => keyed({ breakActivities: ' , ' }), (e) => e.code === 'INVALID_CONFIG' && /CXONE_BREAK_ACTIVITIES/.test(e.message));
  assert.throws(() => keyed({ profile: 'ccxone' }), (e) => e.code === 'INVALID_CONFIG' && /profile/.test(e.message));
});

test('cxone: a token source that returns apiBase and wfmBase works without discovery', async () => {
  // The page's back end: the password grant on the server side; the page gets the token and the bases.
  let backEndCalls = 0;
  const getAccessToken = async () => {
    backEndCalls += 1;
    const form = new URLSearchParams({
      grant_type: 'password', username: ACCESS_KEY.accessKeyId, password: ACCESS_KEY.accessKeySecret,
      client_id: credentials.clientId, client_secret: credentials.clientSecret,
    });
    const res = await fetch(`${sim.baseUrl}/auth/token`, { method: 'POST', body: form });
    const t = await res.json();
    return { accessToken: t.access_token, expiresInMs: t.expires_in * 1000, apiBase: sim.baseUrl, wfmBase: sim.baseUrl };
  };
  const r = recording();
  const m = new AgentStateManager({ getAccessToken }, undefined, { profile: 'cxone', fetch: r.fetch, seed: 2, ...fast });
  const out = await m.transitionState('1005', 'NOT_READY', { reason: 'Break' });
  assert.equal(out.success, true);
  assert.equal(backEndCalls, 1);
  assert.deepEqual(r.urls.filter((u) => /well-known|auth\/token/.test(u)), [], 'the page did no discovery and no grant');
  // 1005 is in team B, which numbers its codes from 21: Break → 21.
  assert.match(stateCalls(r.urls)[0], /\/agents\/1005\/state\?state=Unavailable&outStateId=21$/);
  await m.close();

  // Without bases from the source or the options, the change fails with DISCOVERY_FAILED and nothing is sent.
  const bare = recording();
  const lost = new AgentStateManager({ getAccessToken: async () => ({ accessToken: 't', expiresIn: 600 }) }, undefined,
    { profile: 'cxone', fetch: bare.fetch, ...fast });
  await assert.rejects(lost.transitionState('1005', 'READY'), (e) => e.code === 'DISCOVERY_FAILED' && /apiBaseUrl/.test(e.message));
  assert.deepEqual(bare.urls, []);
  await lost.close();
});

test('cxone in a browser: an access key secret is refused without the opt-in (CLIENT_SECRET_IN_BROWSER)', async () => {
  globalThis.window = { document: {} };
  try {
    assert.throws(
      () => new AgentStateManager({ ...credentials, ...ACCESS_KEY }, undefined, { profile: 'cxone' }),
      (e) => e.code === 'CLIENT_SECRET_IN_BROWSER' && /access key secret/.test(e.message),
    );
    // The access key given among the options is refused as well.
    assert.throws(
      () => new AgentStateManager({ getAccessToken: async () => ({ accessToken: 't', expiresIn: 60 }) }, undefined,
        { profile: 'cxone', accessKeySecret: 'k' }),
      (e) => e.code === 'CLIENT_SECRET_IN_BROWSER',
    );
    const opted = new AgentStateManager({ ...credentials, ...ACCESS_KEY, allowClientSecretInBrowser: true }, undefined,
      { authBase: sim.baseUrl });
    await opted.close();
    const page = new AgentStateManager({ getAccessToken: async () => ({ accessToken: 't', expiresIn: 60 }) }, undefined,
      { profile: 'cxone', apiBaseUrl: sim.baseUrl, wfmBaseUrl: sim.baseUrl });
    await page.close();
  } finally {
    delete globalThis.window;
  }
});

test('simulateDay on cxone: no READY during a break, agents named by agentId, the profile in the summary', () => {
  const day = simulateDay({ agents: 60, hours: 4, seed: 9, profile: 'cxone' });
  assert.equal(day.config.profile, 'cxone');
  assert.equal(day.groundTruth.readyAcceptedDuringBreak, 0);
  assert.ok(day.report.totalTransitions > 0);
  assert.ok(day.report.violationCount > 0, 'rule breakers were stopped');
  assert.ok(day.report.agents.every((a) => /^\d+$/.test(a.userId)), 'agentIds');
  assert.ok(Object.keys(day.groundTruth.requestsByEndpoint).some((k) => /export/i.test(k)), JSON.stringify(day.groundTruth.requestsByEndpoint));
  const seed = simulateDay({ agents: 60, hours: 4, seed: 9 });
  assert.equal(seed.config.profile, 'seed');
  assert.ok(seed.report.agents.every((a) => a.userId.startsWith('agent-')), seed.report.agents[0].userId);
  assert.throws(() => simulateDay({ profile: 'acme' }), (e) => e.code === 'INVALID_CONFIG' && /profile/.test(e.message));
});

test('simulateDay on cxone with the tenant\'s own activity: observation keeps utilization and idle time true', () => {
  const activity = { agentChangesPerHour: 4, contactsPerHour: 6, supervisorChangesPerHour: 0.5, logInOut: true };
  const options = { agents: 40, hours: 4, seed: 3, profile: 'cxone', activity };
  const on = simulateDay({ ...options, observe: true });
  const off = simulateDay({ ...options, observe: false });
  assert.equal(on.config.observe, true);
  assert.equal(on.config.activity.agentChangesPerHour, 4);
  assert.equal(on.accuracy.observed, true);
  assert.equal(off.accuracy.observed, false);
  assert.equal(on.accuracy.agents.length, 40);
  assert.ok(on.accuracy.agents.reduce((n, a) => n + a.truthChanges, 0) > 40 * 10, 'agents acted on their own');
  assert.equal(on.accuracy.agentsWithinBound, 40, JSON.stringify(on.accuracy.agents.filter((a) => Math.abs(a.idleMs - a.truthIdleMs) > a.boundMs)));
  assert.ok(off.accuracy.agentsWithinBound < 40, `${off.accuracy.agentsWithinBound}`);
  assert.ok(off.accuracy.meanUtilizationError > 5 * Math.max(on.accuracy.meanUtilizationError, 0.001),
    `off ${off.accuracy.meanUtilizationError} on ${on.accuracy.meanUtilizationError}`);
  assert.ok(off.accuracy.meanIdleErrorMs > on.accuracy.meanIdleErrorMs);
  // The same options give the same day.
  assert.deepEqual(simulateDay({ ...options, observe: true }).accuracy, on.accuracy);
  // Seed has nothing to observe with: the stable code, as in Rust and the CLI.
  assert.throws(() => simulateDay({ agents: 5, observe: true }), (e) => e.code === 'OBSERVE_UNSUPPORTED' && /cxone/.test(e.message));
  assert.throws(() => simulateDay({ agents: 5, profile: 'cxone', activity: { contactsPerHour: -1 } }), (e) => e.code === 'INVALID_CONFIG');
});
