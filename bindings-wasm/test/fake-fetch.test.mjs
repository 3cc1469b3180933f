// Transport failures, browser safety, token sources and webhooks, through an injected fake fetch.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import { pkgDir, credentials } from './helpers.mjs';

const { AgentStateManager } = await import(join(pkgDir, 'node.mjs'));

const json = (status, body, headers = {}) =>
  new Response(typeof body === 'string' ? body : JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });

/** A fake tenant: routes by path; `api` decides API answers. Records every call. */
function fakeTenant(api) {
  const calls = [];
  const fetch = async (url, init) => {
    const path = new URL(url).pathname;
    calls.push({ path, init });
    if (path === '/oauth2/token') return json(200, { access_token: 'tok-1', expires_in: 3600 });
    return api(path, init, calls);
  };
  return { fetch, calls };
}

const fast = { baseUrl: 'https://tenant.example', retry: { maxRetries: 3, baseMs: 10, jitterMs: 5, capMs: 100 }, seed: 3 };

test('a connection that keeps failing ends in UPSTREAM_UNAVAILABLE after three retries', async () => {
  const t = fakeTenant(() => Promise.reject(new TypeError('fetch failed')));
  const m = new AgentStateManager(credentials, undefined, { ...fast, fetch: t.fetch });
  await assert.rejects(m.transitionState('a1', 'READY'), (e) => e.code === 'UPSTREAM_UNAVAILABLE');
  assert.equal(t.calls.filter((c) => c.path.includes('/schedules/')).length, 4);
  m.close();
});

test('an answer that never comes times out (AbortController) and is retried', async () => {
  let n = 0;
  const t = fakeTenant((path, init) => {
    n += 1;
    if (n === 1) {
      return new Promise((_, reject) => init.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))));
    }
    if (path.includes('/schedules/')) return json(200, { status: 'ACTIVE' });
    return json(200, {});
  });
  const m = new AgentStateManager(credentials, undefined, { ...fast, fetch: t.fetch, requestTimeoutMs: 50 });
  const retries = [];
  m.addEventListener('retry', (e) => retries.push(e.detail));
  const r = await m.transitionState('a1', 'PAUSED');
  assert.equal(r.success, true);
  assert.equal(retries.length, 1);
  assert.equal(retries[0].status, null);
  m.close();
});

test('a malformed body gives BAD_RESPONSE and no change is sent', async () => {
  const t = fakeTenant(() => json(200, '{"status": "ACT'));
  const m = new AgentStateManager(credentials, undefined, { ...fast, fetch: t.fetch });
  await assert.rejects(m.transitionState('a1', 'READY'), (e) => e.code === 'BAD_RESPONSE');
  assert.equal(t.calls.filter((c) => c.path.endsWith('/state')).length, 0);
  m.close();
});

test('each change keeps one Idempotency-Key across its retries', async () => {
  let sets = 0;
  const t = fakeTenant((path) => {
    if (path.includes('/schedules/')) return json(200, { status: 'ACTIVE' });
    sets += 1;
    return sets < 3 ? json(503, { error: 'busy' }) : json(200, {});
  });
  const m = new AgentStateManager(credentials, undefined, { ...fast, fetch: t.fetch });
  await m.transitionState('a1', 'IDLE');
  const keys = t.calls.filter((c) => c.path.endsWith('/state')).map((c) => new Headers(c.init.headers).get('idempotency-key'));
  assert.equal(keys.length, 3);
  assert.equal(new Set(keys).size, 1);
  m.close();
});

test('a browser page may not hold a client secret unless it opts in by name', () => {
  globalThis.window = { document: {} };
  try {
    assert.throws(
      () => new AgentStateManager(credentials, undefined, { baseUrl: 'https://t.example' }),
      (e) => e instanceof Error && e.code === 'CLIENT_SECRET_IN_BROWSER' && /getAccessToken/.test(e.message),
    );
    const opted = new AgentStateManager({ ...credentials, allowClientSecretInBrowser: true }, undefined, { baseUrl: 'https://t.example' });
    opted.close();
    const safe = new AgentStateManager({ getAccessToken: async () => ({ accessToken: 'x', expiresIn: 60 }) }, undefined, { baseUrl: 'https://t.example' });
    safe.close();
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
  expired.close();
  failing.close();
});

test('bad configuration is refused with a clear, coded error', () => {
  assert.throws(() => new AgentStateManager(credentials, 'http://hooks.example/x', { baseUrl: 'https://t.example' }), (e) => e.code === 'INVALID_WEBHOOK_URL');
  assert.throws(() => new AgentStateManager({ clientId: 'x' }, undefined, { baseUrl: 'https://t.example' }), (e) => e.code === 'INVALID_CONFIG');
  assert.throws(() => new AgentStateManager(credentials, undefined, {}), (e) => e.code === 'INVALID_CONFIG' && /domain/.test(e.message));
  assert.throws(() => new AgentStateManager({ ...credentials, domain: 'acme.evil/x' }), (e) => e.code === 'INVALID_CONFIG');
  assert.throws(() => new AgentStateManager(credentials, undefined, { baseUrl: 'ftp://t.example' }), (e) => e.code === 'INVALID_CONFIG' && /base_url/.test(e.message));
});

test('webhooks are delivered at least once, signed, with X-Event-Id, and retried until 2xx', async () => {
  const hooks = [];
  let refuse = 2;
  const t = fakeTenant((path) => {
    if (path.includes('/schedules/')) return json(200, { status: 'ACTIVE' });
    if (path.includes('/breaks/')) return json(200, { mandatoryBreakRequired: false });
    return json(200, {});
  });
  const fetch = async (url, init) => {
    if (url.startsWith('https://hooks.example')) {
      if (refuse-- > 0) return json(503, {});
      hooks.push({ headers: new Headers(init.headers), body: init.body });
      return new Response(null, { status: 204 });
    }
    return t.fetch(url, init);
  };
  const m = new AgentStateManager(credentials, 'https://hooks.example/wfm', {
    ...fast, fetch, webhookSecret: 'hook-secret',
  });
  const delivered = new Promise((resolve) => m.addEventListener('webhookdelivered', resolve));
  const r = await m.transitionState('a1', 'READY');
  assert.equal(r.success, true, 'the transition does not wait for the webhook');
  await delivered;
  assert.equal(hooks.length, 1);
  const [{ headers, body }] = hooks;
  const payload = JSON.parse(body);
  assert.equal(payload.event, 'AGENT_STATE_CHANGED');
  assert.equal(headers.get('x-event-id'), payload.eventId);
  const mac = createHmac('sha256', 'hook-secret').update(body).digest('hex');
  assert.equal(headers.get('x-signature-256'), `sha256=${mac}`);
  assert.equal(m.pendingWebhooks, 0);
  m.close();
});
