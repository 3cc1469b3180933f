// The package loads by `import` and by `require`, and both expose the same API.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pkgDir } from './helpers.mjs';

const API = [
  'AgentStateManager', 'CxoneError', 'CxoneEvent', 'Engine', 'Outbox', 'SimulationRun', 'createSimulation',
  'errorCodes', 'getReasonCodeForState', 'initAsync', 'initSimulation', 'simulateDay', 'throughputWorkload',
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
    'UNAUTHORIZED', 'AUTH_FAILED', 'BAD_RESPONSE', 'INVALID_USER_ID', 'TOKEN_EXPIRED', 'CLIENT_SECRET_IN_BROWSER']) {
    assert.ok(codes.includes(c), c);
  }
  assert.throws(() => m.simulateDay({ agents: -5 }), (e) => e instanceof Error && e.code === 'INVALID_CONFIG' && /agents/.test(e.message));
});
