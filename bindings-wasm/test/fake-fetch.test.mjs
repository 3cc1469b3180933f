// Transport failures, browser safety, token sources, webhooks, clocks, ordering, persistence and close,
// through an injected fake fetch.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import { pkgDir, credentials } from './helpers.mjs';

const { AgentStateManager } = await import(join(pkgDir, 'node.mjs'));

const HOUR = 3_600_000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const json = (status, body, headers = {}) =>
  new Response(typeof body === 'string' ? body : JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
const next = (target, type) => new Promise((resolve) => target.addEventListener(type, (e) => resolve(e.detail), { once: true }));

/** A fake tenant: routes by path; `api` decides API answers (default: on shift, no break, accepted). */
function fakeTenant(api = () => undefined) {
  const calls = [];
  const fetch = async (url, init) => {
    const path = new URL(url).pathname;
    calls.push({ url, path, init });
    if (path === '/oauth2/token') return json(200, { access_token: 'tok-1', expires_in: 3600 });
    const answer = await api(path, init, calls);
    if (answer) return answer;
    if (path.includes('/schedules/')) return json(200, { status: 'ACTIVE' });
    if (path.includes('/breaks/')) return json(200, { mandatoryBreakRequired: false });
    return json(200, {});
  };
  return { fetch, calls, sets: () => calls.filter((c) => c.path.endsWith('/state')) };
}

const fast = {
  baseUrl: 'https://tenant.example',
  rateLimitPerMinute: 60_000,
  retry: { maxRetries: 3, baseMs: 10, jitterMs: 5, capMs: 100 },
  seed: 3,
};

test('a connection that keeps failing ends in UPSTREAM_UNAVAILABLE after three retries', async () => {
  const t = fakeTenant(() => Promise.reject(new TypeError('fetch failed')));
  const m = new AgentStateManager(credentials, undefined, { ...fast, fetch: t.fetch });
  await assert.rejects(m.transitionState('a1', 'READY'), (e) => e.code === 'UPSTREAM_UNAVAILABLE');
  assert.equal(t.calls.filter((c) => c.path.includes('/schedules/')).length, 4);
  await m.close();
});

test('an answer that never comes times out and is retried', async () => {
  let n = 0;
  const t = fakeTenant((path, init) => {
    n += 1;
    if (n === 1) {
      return new Promise((_, reject) => init.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))));
    }
    return undefined;
  });
  const m = new AgentStateManager(credentials, undefined, { ...fast, fetch: t.fetch, requestTimeoutMs: 50 });
  const retries = [];
  m.addEventListener('retry', (e) => retries.push(e.detail));
  const r = await m.transitionState('a1', 'PAUSED');
  assert.equal(r.success, true);
  assert.equal(retries.length, 1);
  assert.equal(retries[0].status, null);
  await m.close();
});

test('a malformed body gives BAD_RESPONSE and no change is sent', async () => {
  const t = fakeTenant(() => json(200, '{"status": "ACT'));
  const m = new AgentStateManager(credentials, undefined, { ...fast, fetch: t.fetch });
  await assert.rejects(m.transitionState('a1', 'READY'), (e) => e.code === 'BAD_RESPONSE');
  assert.equal(t.sets().length, 0);
  await m.close();
});

test('each change keeps one Idempotency-Key across its retries', async () => {
  let sets = 0;
  const t = fakeTenant((path) => {
    if (!path.endsWith('/state')) return undefined;
    sets += 1;
    return sets < 3 ? json(503, { error: 'busy' }) : undefined;
  });
  const m = new AgentStateManager(credentials, undefined, { ...fast, fetch: t.fetch });
  await m.transitionState('a1', 'IDLE');
  const keys = t.sets().map((c) => new Headers(c.init.headers).get('idempotency-key'));
  assert.equal(keys.length, 3);
  assert.equal(new Set(keys).size, 1);
  await m.close();
});

test('a fetch wrapper that spreads init.headers works: headers are a plain object', async () => {
  const t = fakeTenant();
  const wrapped = (url, init) => t.fetch(url, { ...init, headers: { ...init.headers, 'x-trace-id': 'trace-1' } });
  const m = new AgentStateManager(credentials, undefined, { ...fast, fetch: wrapped });
  const r = await m.transitionState('a1', 'READY');
  assert.equal(r.success, true);
  const [set] = t.sets();
  assert.equal(Object.getPrototypeOf(set.init.headers), Object.prototype);
  assert.equal(set.init.headers['x-trace-id'], 'trace-1');
  assert.equal(set.init.headers.Authorization, 'Bearer tok-1');
  assert.match(set.init.headers['Idempotency-Key'], /^[0-9a-f-]{36}$/);
  await m.close();
});

test('changes for one agent reach the tenant in call order, though the first is delayed and refused once', async () => {
  let first = true;
  const t = fakeTenant(async (path) => {
    if (!path.endsWith('/state') || !first) return undefined;
    first = false;
    await sleep(150);
    return json(503, { error: 'busy' });
  });
  const m = new AgentStateManager(credentials, undefined, { ...fast, fetch: t.fetch });
  const done = [];
  const calls = ['READY', 'PAUSED', 'IDLE', 'NOT_READY'].map((s) => m.transitionState('a1', s).then((r) => done.push(r.newState)));
  await Promise.all(calls);
  const applied = t.sets().map((c) => JSON.parse(c.init.body).state);
  assert.deepEqual(applied, ['READY', 'READY', 'PAUSED', 'IDLE', 'NOT_READY']);
  assert.deepEqual(done, ['READY', 'PAUSED', 'IDLE', 'NOT_READY']);
  await m.close();
});

test('wall-clock steps: timers neither stall nor fire at once, and records follow the wall clock', async () => {
  let offset = 0;
  const now = () => Date.now() + offset;
  let sets = 0;
  let midFlight = null;
  const t = fakeTenant(async (path) => {
    if (!path.endsWith('/state')) return undefined;
    sets += 1;
    if (sets === 1) {
      // The first change meets a 503; while its retry waits, the wall clock jumps back an hour.
      setTimeout(() => { offset = -HOUR; }, 5);
      return json(503, { error: 'busy' });
    }
    if (sets === 3) {
      // The second change is on the wire when the wall clock jumps forward an hour.
      await new Promise((resolve) => { midFlight = resolve; });
    }
    return undefined;
  });
  const m = new AgentStateManager(credentials, undefined, {
    ...fast, fetch: t.fetch, now, requestTimeoutMs: 2_000, retry: { ...fast.retry, baseMs: 200, jitterMs: 1, capMs: 1_000 },
  });
  const audits = [];
  const retries = [];
  m.addEventListener('audit', (e) => audits.push(e.detail));
  m.addEventListener('retry', (e) => retries.push(e.detail));
  let t0 = performance.now();
  const r1 = await m.transitionState('a1', 'NOT_READY');
  const waited = performance.now() - t0;
  assert.equal(retries.length, 1);
  assert.ok(waited >= 400 && waited < 2_000, `the retry waited ${waited} ms (backoff 400 ms), not an hour, not zero`);
  assert.ok(r1.latencyMs >= 400 && r1.latencyMs < 2_000, `latency ${r1.latencyMs} ms is monotonic time`);
  assert.ok(Math.abs(Date.parse(audits[0].timestamp) - (Date.now() - HOUR)) < 5_000, audits[0].timestamp);

  t0 = performance.now();
  const p2 = m.transitionState('a1', 'READY');
  while (!midFlight) await sleep(5);
  offset = +HOUR;
  await sleep(300);
  midFlight();
  const r2 = await p2;
  assert.equal(retries.length, 1, 'the request in flight did not time out when the wall clock jumped');
  assert.equal(r2.attempts, 2, 'break check and change, each sent once');
  assert.ok(r2.latencyMs >= 300 && r2.latencyMs < 2_000, `latency ${r2.latencyMs} ms`);
  assert.ok(Math.abs(Date.parse(audits[1].timestamp) - (Date.now() + HOUR)) < 5_000, audits[1].timestamp);
  assert.ok(Math.abs(r2.atMs - (Date.now() + HOUR)) < 5_000);
  await m.close();
});

test('a browser page may not hold a client secret unless it opts in by name', async () => {
  globalThis.window = { document: {} };
  try {
    assert.throws(
      () => new AgentStateManager(credentials, undefined, { baseUrl: 'https://t.example' }),
      (e) => e instanceof Error && e.code === 'CLIENT_SECRET_IN_BROWSER' && /getAccessToken/.test(e.message),
    );
    const opted = new AgentStateManager({ ...credentials, allowClientSecretInBrowser: true }, undefined, { baseUrl: 'https://t.example' });
    await opted.close();
    const safe = new AgentStateManager({ getAccessToken: async () => ({ accessToken: 'x', expiresIn: 60 }) }, undefined, { baseUrl: 'https://t.example' });
    await safe.close();
  } finally {
    delete globalThis.window;
  }
});

test('a token that has already expired fails with TOKEN_EXPIRED; a failing source with AUTH_FAILED', async () => {
  const t = fakeTenant(() => json(200, { status: 'ACTIVE' }));
  const expired = new AgentStateManager({ getAccessToken: async () => ({ accessToken: 'old', expiresIn: 0 }) }, undefined, { ...fast, fetch: t.fetch });
  await assert.rejects(expired.transitionState('a1', 'READY'), (e) => e.code === 'TOKEN_EXPIRED');
  const failing = new AgentStateManager({ getAccessToken: async () => { throw new Error('back end down'); } }, undefined, { ...fast, fetch: t.fetch });
  await assert.rejects(failing.transitionState('a1', 'READY'), (e) => e.code === 'AUTH_FAILED' && /back end down/.test(e.message));
  assert.equal(t.calls.length, 0, 'nothing reached the tenant without a token');
  await expired.close();
  await failing.close();
});

test('bad configuration is refused with a clear, coded error', () => {
  assert.throws(() => new AgentStateManager(credentials, 'http://hooks.example/x', { baseUrl: 'https://t.example' }), (e) => e.code === 'INVALID_WEBHOOK_URL');
  assert.throws(() => new AgentStateManager({ clientId: 'x' }, undefined, { baseUrl: 'https://t.example' }), (e) => e.code === 'INVALID_CONFIG');
  assert.throws(() => new AgentStateManager(credentials, undefined, {}), (e) => e.code === 'INVALID_CONFIG' && /domain/.test(e.message));
  assert.throws(() => new AgentStateManager({ ...credentials, domain: 'acme.evil/x' }), (e) => e.code === 'INVALID_CONFIG');
  assert.throws(() => new AgentStateManager(credentials, undefined, { baseUrl: 'ftp://t.example' }), (e) => e.code === 'INVALID_CONFIG' && /base_url/.test(e.message));
  assert.throws(() => new AgentStateManager(credentials, undefined, { baseUrl: 'http://t.example' }), (e) => e.code === 'INVALID_CONFIG' && /loopback/.test(e.message));
  assert.throws(
    () => new AgentStateManager(credentials, 'https://hooks.example/x', { baseUrl: 'https://t.example', webhook: { maxInFlight: 0 } }),
    (e) => e.code === 'INVALID_CONFIG' && /max_in_flight/.test(e.message),
  );
});

/** A webhook receiver in front of a fake tenant: `answer(eventId, n)` decides each delivery's status. */
function withReceiver(t, answer) {
  const deliveries = [];
  const fetch = async (url, init) => {
    if (!url.startsWith('https://hooks.example')) return t.fetch(url, init);
    const headers = new Headers(init.headers);
    const eventId = headers.get('x-event-id');
    const n = deliveries.filter((d) => d.eventId === eventId).length + 1;
    const status = answer(eventId, n);
    deliveries.push({ url, eventId, headers, body: init.body, status });
    return new Response(null, { status });
  };
  return { fetch, deliveries, accepted: () => deliveries.filter((d) => d.status < 300) };
}

test('webhooks are made by the core: delivered at least once, signed, with X-Event-Id, retried until 2xx', async () => {
  let refuse = 2;
  const hooks = withReceiver(fakeTenant(), () => (refuse-- > 0 ? 503 : 204));
  const m = new AgentStateManager(credentials, 'https://hooks.example/wfm', {
    ...fast, fetch: hooks.fetch, webhookSecret: 'hook-secret', webhook: { retry: { baseMs: 10, jitterMs: 5, capMs: 50 } },
  });
  const retried = [];
  m.addEventListener('webhookretry', (e) => retried.push(e.detail));
  const payloads = [];
  m.addEventListener('webhook', (e) => payloads.push(e.detail));
  const delivered = next(m, 'webhookdelivered');
  const r = await m.transitionState('a1', 'READY');
  assert.equal(r.success, true, 'the transition does not wait for the webhook');
  const d = await delivered;
  assert.equal(d.attempts, 3);
  assert.deepEqual(retried.map((x) => x.status), [503, 503]);
  const [{ headers, body }] = hooks.accepted();
  const payload = JSON.parse(body);
  assert.equal(payload.event, 'AGENT_STATE_CHANGED');
  assert.equal(payload.data.newState, 'READY');
  assert.deepEqual(payloads, [payload], 'the webhook event carries the payload as sent');
  assert.equal(headers.get('x-event-id'), payload.eventId);
  assert.equal(d.eventId, payload.eventId);
  const mac = createHmac('sha256', 'hook-secret').update(body).digest('hex');
  assert.equal(headers.get('x-signature-256'), `sha256=${mac}`);
  assert.equal(m.pendingWebhooks, 0);
  await m.close();
});

test('dead letters: a refused payload is set aside, later ones flow, and a replay delivers it', async () => {
  let refused = null;
  let receiverFixed = false;
  const hooks = withReceiver(fakeTenant(), (eventId) => {
    refused ??= eventId;
    return eventId === refused && !receiverFixed ? 422 : 204;
  });
  const m = new AgentStateManager(credentials, 'https://hooks.example/wfm', {
    ...fast, fetch: hooks.fetch, webhook: { deadLetterAfterRefusals: 2, retry: { baseMs: 10, jitterMs: 5, capMs: 50 } },
  });
  const deadLettered = next(m, 'webhookdeadletter');
  await m.transitionState('a1', 'READY');
  const dead = await deadLettered;
  assert.equal(dead.eventId, refused);
  assert.equal(dead.lastStatus, 422);
  assert.equal(dead.attempts, 2);
  assert.equal(dead.deadLetters, 1);
  assert.deepEqual(m.getDeadLetters().map((l) => l.entry.eventId), [refused]);

  const second = next(m, 'webhookdelivered');
  await m.transitionState('a2', 'READY');
  const d2 = await second;
  assert.notEqual(d2.eventId, refused, 'a later payload is delivered while the first is a dead letter');

  receiverFixed = true;
  const replayed = next(m, 'webhookdelivered');
  assert.equal(await m.replayDeadLetters(), 1);
  assert.equal((await replayed).eventId, refused);
  assert.deepEqual(m.getDeadLetters(), []);
  assert.equal(m.pendingWebhooks, 0);
  const accepted = hooks.accepted().map((x) => JSON.parse(x.body).data.userId);
  assert.deepEqual(accepted, ['a2', 'a1']);
  await m.close();
});

test('a payload accepted for an earlier receiver URL goes to that receiver, or is set aside, on the next start', async () => {
  let down = true;
  const hooks = withReceiver(fakeTenant(), () => (down ? 503 : 204));
  const log = [];
  const first = new AgentStateManager(credentials, 'https://hooks.example/old', {
    ...fast, fetch: hooks.fetch, persist: (r) => log.push(r), webhook: { retry: { baseMs: 10, jitterMs: 5, capMs: 50 } },
  });
  await first.transitionState('a1', 'READY');
  while (hooks.deliveries.length === 0) await sleep(5);
  await first.close();
  const [entry] = log.filter((r) => r.kind === 'webhook');
  assert.equal(entry.url, 'https://hooks.example/old');
  assert.match(entry.receiver, /^[0-9a-f]{16}$/);

  down = false;
  const second = new AgentStateManager(credentials, 'https://hooks.example/new', {
    ...fast, fetch: hooks.fetch, records: log, persist: (r) => log.push(r),
  });
  assert.equal(second.restored.webhooksToOriginalReceiver, 1);
  const delivered = await next(second, 'webhookdelivered');
  assert.equal(delivered.eventId, entry.eventId);
  assert.deepEqual(hooks.accepted().map((d) => d.url), ['https://hooks.example/old'], 'the driver sends where the core says');
  await second.close();

  // The same log under the dead-letter policy: nothing is sent, the payload is a dead letter.
  const records = log.filter((r) => r.kind !== 'delivered');
  const sent = hooks.deliveries.length;
  const third = new AgentStateManager(credentials, 'https://hooks.example/new', {
    ...fast, fetch: hooks.fetch, records, webhook: { onReceiverChange: 'deadLetter' },
  });
  assert.equal(third.restored.webhooksDeadLetteredReceiverChanged, 1);
  assert.deepEqual(third.getDeadLetters().map((l) => l.entry.eventId), [entry.eventId]);
  await sleep(30);
  assert.equal(hooks.deliveries.length, sent);
  await third.close();
});

test('persist: every record is awaited before any later request or event', async () => {
  const log = [];
  const t = fakeTenant(async (path) => {
    log.push(`send ${path.split('/').pop()}`);
    return undefined;
  });
  const persist = async (r) => {
    await sleep(5);
    log.push(`persisted ${r.kind ?? 'audit'}`);
  };
  const m = new AgentStateManager(credentials, 'https://hooks.example/wfm', {
    ...fast, fetch: withReceiver(t, () => 204).fetch, persist,
  });
  m.addEventListener('statechange', () => log.push('statechange'));
  await m.transitionState('a1', 'READY');
  const at = (entry) => log.indexOf(entry);
  assert.ok(at('persisted intent') < at('send state'), log.join(', '));
  assert.ok(at('persisted webhook') < at('persisted audit'), log.join(', '));
  assert.ok(at('persisted audit') < at('statechange'), log.join(', '));
  await m.close();
});

test('a log that cannot be written stops the manager: AUDIT_LOG_UNAVAILABLE, and nothing is sent after it', async () => {
  const t = fakeTenant();
  const m = new AgentStateManager(credentials, undefined, {
    ...fast, fetch: t.fetch, persist: async () => { throw new Error('disk full'); },
  });
  await assert.rejects(m.transitionState('a1', 'READY'), (e) => e.code === 'AUDIT_LOG_UNAVAILABLE' && /disk full/.test(e.message));
  assert.equal(t.sets().length, 0, 'the change was not sent before its intent was durable');
  await assert.rejects(m.transitionState('a1', 'IDLE'), (e) => e.code === 'AUDIT_LOG_UNAVAILABLE');
  await m.close();
});

test('BUSY when the bounded queue of open changes is full', async () => {
  const t = fakeTenant();
  const m = new AgentStateManager(credentials, undefined, { ...fast, fetch: t.fetch, maxOpenChanges: 2 });
  const results = await Promise.allSettled(['a1', 'a2', 'a3'].map((u) => m.transitionState(u, 'IDLE')));
  assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'rejected']);
  assert.equal(results[2].reason.code, 'BUSY');
  assert.ok(results[2].reason instanceof Error);
  await m.close();
});

test('stopAccepting(): later calls reject CLOSED, changes already taken finish, then it resolves', async () => {
  const t = fakeTenant(async (path) => {
    if (path.endsWith('/state')) await sleep(50);
    return undefined;
  });
  const m = new AgentStateManager(credentials, undefined, { ...fast, fetch: t.fetch });
  const taken = m.transitionState('a1', 'READY');
  const stopped = m.stopAccepting();
  await assert.rejects(m.transitionState('a2', 'READY'), (e) => e.code === 'CLOSED');
  await stopped;
  assert.equal(m.openChanges, 0);
  assert.equal((await taken).newState, 'READY');
  await m.close();
});

test('close(): a change on the wire ends OUTCOME_UNKNOWN, a waiting one CLOSED, later calls CLOSED', async () => {
  let release;
  const t = fakeTenant(async (path) => {
    if (path.endsWith('/state')) await new Promise((resolve) => { release = resolve; });
    return undefined;
  });
  const records = [];
  const m = new AgentStateManager(credentials, undefined, { ...fast, fetch: t.fetch, persist: (r) => records.push(r) });
  const onWire = m.transitionState('a1', 'READY');
  const waiting = m.transitionState('a1', 'PAUSED');
  while (!release) await sleep(5);
  await m.close();
  await assert.rejects(onWire, (e) => e.code === 'OUTCOME_UNKNOWN' && e.policyViolation === false);
  await assert.rejects(waiting, (e) => e.code === 'CLOSED');
  await assert.rejects(m.transitionState('a1', 'IDLE'), (e) => e.code === 'CLOSED' && e instanceof Error);
  await assert.rejects(m.validateStateChange('a1', 'IDLE'), (e) => e.code === 'CLOSED');
  const audits = records.filter((r) => r.kind === undefined).map((r) => r.errorCode);
  assert.deepEqual(audits, ['OUTCOME_UNKNOWN', 'CLOSED'], 'each is audited');
  release();
  await sleep(20);
  assert.equal(m.getComplianceReport().unknownOutcomeCount, 1);
});

test('restore: a change left OUTCOME_UNKNOWN is sent again with its key on the next start, and settled', async () => {
  let hold = true;
  let release;
  const t = fakeTenant(async (path) => {
    if (path.endsWith('/state') && hold) await new Promise((resolve) => { release = resolve; });
    return undefined;
  });
  const log = [];
  const first = new AgentStateManager(credentials, undefined, { ...fast, fetch: t.fetch, persist: (r) => log.push(r) });
  const lost = first.transitionState('a1', 'READY');
  while (!release) await sleep(5);
  await first.close();
  await assert.rejects(lost, (e) => e.code === 'OUTCOME_UNKNOWN');
  hold = false;
  release();

  const later = [];
  const second = new AgentStateManager(credentials, undefined, {
    ...fast, fetch: t.fetch, records: log, persist: (r) => later.push(r),
  });
  assert.deepEqual(second.restored, {
    resumed: 1, abandoned: 0, webhooks: 0, deadLetters: 0, webhooksToOriginalReceiver: 0, webhooksDeadLetteredReceiverChanged: 0, deferred: 0,
  });
  while (second.openChanges > 0) await sleep(5);
  const keys = t.sets().map((c) => c.init.headers['Idempotency-Key']);
  assert.equal(keys.length, 2);
  assert.equal(keys[0], keys[1], 'the resend carries the journaled key');
  const unknown = log.find((r) => r.errorCode === 'OUTCOME_UNKNOWN');
  const settled = later.find((r) => r.kind === undefined);
  assert.equal(settled.success, true);
  assert.equal(settled.settles, unknown.id);
  assert.equal(settled.seq, unknown.seq + 1, 'the audit chain goes on');
  assert.equal(second.getComplianceReport().settledCount, 1);
  await second.close();
});

test('a reference tags the change\'s records and outcome, never the tenant; a bad one rejects INVALID_REFERENCE', async () => {
  const t = fakeTenant((path) => (path.endsWith('/schedules/users/a2') ? json(200, { status: 'INACTIVE' }) : undefined));
  const records = [];
  const m = new AgentStateManager(credentials, undefined, { ...fast, fetch: t.fetch, persist: (r) => records.push(r) });
  const ok = await m.transitionState('a1', 'READY', { reference: 'ticket-1' });
  assert.equal(ok.reference, 'ticket-1');
  await assert.rejects(
    m.transitionState('a2', 'READY', { reference: 'ticket-2' }),
    (e) => e.code === 'AGENT_NOT_SCHEDULED' && e.reference === 'ticket-2',
  );
  await assert.rejects(m.transitionState('a1', 'IDLE', { reference: 'row\n3' }), (e) => e.code === 'INVALID_REFERENCE' && e instanceof Error);
  const plain = await m.transitionState('a1', 'PAUSED');
  assert.equal('reference' in plain, false);
  const tagged = records.filter((r) => r.kind === undefined || r.kind === 'intent').map((r) => [r.kind ?? 'audit', r.reference ?? null]);
  assert.deepEqual(tagged, [['intent', 'ticket-1'], ['audit', 'ticket-1'], ['audit', 'ticket-2'], ['intent', null], ['audit', null]]);
  for (const c of t.calls) assert.ok(!JSON.stringify([c.url, c.init]).includes('ticket-'), c.url);
  await m.close();
});
