// The shared JSON vectors replayed from JS through the package, plus an independent SHA-256 check of the
// audit chain with node:crypto.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pkgDir, root } from './helpers.mjs';

const m = await import(join(pkgDir, 'node.mjs'));
const vector = (name) => JSON.parse(readFileSync(join(root, 'tests', 'vectors', name), 'utf8'));

test('reason_codes.json', () => {
  const file = vector('reason_codes.json');
  for (const c of file.cases.filter((c) => !c.custom)) {
    if (c.error) {
      assert.throws(() => m.getReasonCodeForState(c.state), (e) => e.code === c.error, c.id);
    } else {
      assert.equal(m.getReasonCodeForState(c.state), c.reasonCode, c.id);
    }
  }
  const custom = new m.Engine({ baseUrl: 'https://t.example', credentials: { clientId: 'i', clientSecret: 's' }, reasonCodes: file.customTable });
  for (const c of file.cases.filter((c) => c.custom)) assert.equal(custom.reasonCodeFor(c.state), c.reasonCode, c.id);
  custom.free();
});

/** Feeds one recorded input to the engine through the binding's typed methods. */
function feed(engine, at, input) {
  switch (input.type) {
    case 'command':
      return input.command === 'validate'
        ? engine.validate(at, input.userId, input.state)
        : engine.transition(at, input.userId, input.state);
    case 'response':
      return engine.handleResponse(at, input.id, input.status, input.headers.flat(), input.body);
    case 'transportError':
      return engine.handleTransportError(at, input.id, input.kind);
    case 'timeout':
      return engine.handleTimeout(at);
    default:
      throw new Error(`unknown input ${input.type}`);
  }
}

test('transcripts.json: every output equals the native one', () => {
  for (const t of vector('transcripts.json')) {
    const engine = new m.Engine(t.config);
    t.steps.forEach((step, i) => {
      feed(engine, step.atMs, step.input);
      assert.deepEqual(engine.drain(), step.outputs, `${t.id}: step ${i}`);
    });
    engine.free();
  }
});

test('audit_chain.json: canonical encodings and SHA-256 hashes check out independently', () => {
  for (const v of vector('audit_chain.json')) {
    let prev = '0'.repeat(64);
    v.records.forEach((r, i) => {
      assert.equal(r.prevHash, prev, `${v.id}: record ${i} links`);
      const { hash, ...rest } = r;
      const canonical = JSON.stringify(Object.fromEntries(Object.entries(rest).sort(([a], [b]) => (a < b ? -1 : 1))));
      assert.equal(canonical, v.canonical[i], `${v.id}: record ${i} canonical`);
      assert.equal(createHash('sha256').update(canonical).digest('hex'), hash, `${v.id}: record ${i} hash`);
      prev = hash;
    });
  }
});
