// The package loads by `import` and by `require`, and both expose the same API.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pkgDir } from './helpers.mjs';

const API = [
  'AgentStateManager', 'CxoneError', 'CxoneEvent', 'Engine', 'SimulationRun', 'computeAdherence', 'createSimulation',
  'errorCodes', 'getReasonCodeForState', 'initAsync', 'initSimulation', 'simulateDay', 'throughputWorkload',
  'verifyAuditRecord',
];

test('import (ESM, Node condition) loads the module at once', async () => {
  const m = await import(join(pkgDir, 'node.mjs'));
  for (const name of API) assert.equal(typeof m[name], 'function', name);
  assert.equal(m.getReasonCodeForState('NOT_READY'), 'BREAK');
  await m.initAsync(); // already loaded: resolves at once
});

test('require (CommonJS) loads the module at once', () => {
  const require = createRequire(import.meta.url);
  const m = require(join(pkgDir, 'node.cjs'));
  for (const name of API) assert.equal(typeof m[name], 'function', name);
  assert.equal(m.getReasonCodeForState('IDLE'), 'SYSTEM_IDLE');
  assert.equal(m.getReasonCodeForState('TRAINING'), 'GENERAL');
});

test('package.json routes each condition to its entry', async () => {
  const { readFile } = await import('node:fs/promises');
  const pkg = JSON.parse(await readFile(join(pkgDir, 'package.json'), 'utf8'));
  assert.equal(pkg.name, 'cxone-agent-state');
  assert.deepEqual(pkg.exports['.'].node, { import: './node.mjs', require: './node.cjs' });
  assert.equal(pkg.exports['.'].browser, './index.js');
  assert.equal(pkg.exports['.'].types, './index.d.ts');
  for (const f of pkg.files) {
    await readFile(join(pkgDir, f)); // every listed file exists
  }
});

test('errors are real Errors with stable codes, the same as in Rust', async () => {
  const m = await import(join(pkgDir, 'node.mjs'));
  assert.throws(() => m.getReasonCodeForState('ready'), (e) => e instanceof Error && e.code === 'INVALID_STATE');
  const codes = m.errorCodes();
  for (const c of ['AGENT_NOT_SCHEDULED', 'MANDATORY_BREAK_VIOLATION', 'RATE_LIMITED', 'UPSTREAM_UNAVAILABLE',
    'UNAUTHORIZED', 'AUTH_FAILED', 'BAD_RESPONSE', 'INVALID_USER_ID', 'TOKEN_EXPIRED', 'CLIENT_SECRET_IN_BROWSER',
    'OUTCOME_UNKNOWN', 'BUSY', 'CLOSED']) {
    assert.ok(codes.includes(c), c);
  }
  assert.throws(() => m.simulateDay({ agents: -5 }), (e) => e instanceof Error && e.code === 'INVALID_CONFIG' && /agents/.test(e.message));
});

test('the Engine binding: commands throw coded Errors (BUSY, CLOSED), and close() ends open changes', async () => {
  const m = await import(join(pkgDir, 'node.mjs'));
  const engine = new m.Engine({
    baseUrl: 'https://t.example', credentials: { clientId: 'i', clientSecret: 's' }, maxOpenChanges: 1,
  });
  assert.equal(engine.transition(1, 1_767_600_000_000, 'a1', 'READY'), 1);
  const [first] = engine.drain();
  assert.equal(first.type, 'transmit');
  assert.equal(first.value.target, 'token');
  assert.throws(() => engine.transition(2, 1_767_600_000_001, 'a2', 'READY'), (e) => e instanceof Error && e.code === 'BUSY');
  engine.close(3, 1_767_600_000_002);
  const outputs = engine.drain();
  assert.deepEqual(outputs.map((o) => o.type), ['persist', 'event', 'timeout']);
  assert.equal(outputs[0].value.errorCode, 'CLOSED');
  assert.equal(outputs[1].value.type, 'transitionFailed');
  assert.equal(outputs[1].value.error.code, 'CLOSED');
  assert.equal(outputs[2].value, null);
  assert.equal(engine.isClosed(), true);
  assert.throws(() => engine.validate(4, 1_767_600_000_003, 'a1', 'IDLE'), (e) => e instanceof Error && e.code === 'CLOSED');
  assert.throws(() => engine.restore(5, 1_767_600_000_004, [{ kind: 'nonsense' }]), (e) => e.code === 'AUDIT_LOG_CORRUPT');
  engine.free();
});
