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

/** A command's refusal (`BUSY`, `CLOSED`) is part of the story: the transcript records only the outputs. */
function command(fn) {
  try {
    fn();
  } catch (e) {
    if (!['BUSY', 'CLOSED'].includes(e.code)) throw e;
  }
}

/** Hands one recorded action to the engine through the binding's typed methods. */
function feed(engine, action) {
  if (action.command) {
    const { now: { monoMs, unixMs }, command: c } = action.command;
    switch (c.command) {
      case 'transition':
        return command(() => engine.transition(monoMs, unixMs, c.userId, c.state));
      case 'transitionWith':
        return command(() =>
          engine.transition(monoMs, unixMs, c.userId, c.state, c.options));
      case 'validate':
        return command(() => engine.validate(monoMs, unixMs, c.userId, c.state));
      case 'replayDeadLetters':
        return engine.replayDeadLetters(monoMs, unixMs, c.eventId);
      case 'close':
        return engine.close(monoMs, unixMs);
      case 'startObserving':
        return command(() => engine.startObserving(monoMs, unixMs));
      case 'stopObserving':
        return engine.stopObserving();
      default:
        throw new Error(`unknown command ${c.command}`);
    }
  }
  const input = action.input;
  const { monoMs, unixMs } = input.now;
  switch (input.type) {
    case 'response':
      return engine.handleResponse(monoMs, unixMs, input.id, input.response.status, input.response.headers.flat(), input.response.body);
    case 'transportError':
      return engine.handleTransportError(monoMs, unixMs, input.id, input.kind);
    case 'accessToken':
      return engine.handleAccessToken(monoMs, unixMs, input.id, input.accessToken, input.expiresInMs ?? 0, input.error,
        input.apiBase, input.wfmBase);
    case 'timeout':
      return engine.handleTimeout(monoMs, unixMs);
    default:
      throw new Error(`unknown input ${input.type}`);
  }
}

test('transcripts.json: every output equals the native one', () => {
  const transcripts = vector('transcripts.json');
  assert.ok(transcripts.length >= 10, `only ${transcripts.length} transcripts`);
  const seen = new Set();
  for (const t of transcripts) {
    const engine = new m.Engine(t.config);
    t.steps.forEach((step, i) => {
      feed(engine, step.action);
      assert.deepEqual(engine.drain(), step.outputs, `${t.id}: step ${i}`);
      for (const o of step.outputs) seen.add(o.type === 'persist' ? `persist:${o.value.kind ?? 'audit'}` : o.type === 'event' ? `event:${o.value.type}` : o.type);
      seen.add(step.action.command ? `command:${step.action.command.command.command}` : `input:${step.action.input.type}`);
    });
    engine.free();
  }
  // The replay must have exercised the whole vocabulary it claims to cover.
  for (const kind of ['command:transition', 'command:validate', 'command:replayDeadLetters', 'command:close',
    'input:response', 'input:transportError', 'input:timeout', 'transmit', 'timeout', 'persist:audit',
    'persist:intent', 'persist:webhook', 'persist:delivered', 'persist:deadLetter', 'persist:replayed',
    'persist:checkpoint', 'event:stateChanged', 'event:transitionFailed', 'event:validationCompleted',
    'event:policyViolation', 'event:retryScheduled', 'event:webhookDelivered', 'event:webhookDeadLettered',
    'command:startObserving', 'command:stopObserving', 'event:stateObserved', 'event:observationHeartbeat',
    'event:outcomeSettled']) {
    assert.ok(seen.has(kind), `no transcript covers ${kind}`);
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

/** Numbers within 1e-9 (the ratios), everything else exactly: the same comparison as the native replay. */
function sameFigure(got, want) {
  if (typeof want === 'number') return typeof got === 'number' && Math.abs(got - want) <= 1e-9;
  if (Array.isArray(want)) return Array.isArray(got) && got.length === want.length && want.every((w, i) => sameFigure(got[i], w));
  if (want && typeof want === 'object') {
    return got !== null && typeof got === 'object' && Object.keys(got).length === Object.keys(want).length
      && Object.entries(want).every(([k, w]) => sameFigure(got[k], w));
  }
  return got === want;
}

test('adherence.json: hand-computed adherence and conformance, through computeAdherence', () => {
  const file = vector('adherence.json');
  assert.ok(file.cases.length >= 10);
  for (const c of file.cases) {
    const got = m.computeAdherence(c.input);
    for (const [key, want] of Object.entries(c.expect)) {
      assert.ok(sameFigure(got[key], want), `${c.id}: ${key}: got ${JSON.stringify(got[key])}, expected ${JSON.stringify(want)}`);
    }
  }
  // The comparison can fail: a figure off by a minute is caught.
  assert.equal(sameFigure(900001, 900000), false);
  // Bad input is refused with the stable code, naming the field.
  assert.throws(() => m.computeAdherence({ fromMs: 0, toMs: 1 }), (e) => e.code === 'INVALID_CONFIG' && /nowMs/.test(e.message));
  assert.throws(() => m.computeAdherence({ fromMs: 0, toMs: 1, nowMs: 1, timeline: [{ atMs: 0, category: 'asleep' }] }),
    (e) => e.code === 'INVALID_CONFIG' && /asleep/.test(e.message));
});
