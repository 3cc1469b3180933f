// `make types`: proves the package's TypeScript types match the Rust types.
//
//   cargo run -q -p cxone-agent-state-wasm --features sim --example wire_samples > samples.json
//   node bindings-wasm/test/types/drift.mjs samples.json
//
// The samples are real values the Rust types serialized (every output, event, record and input kind, the
// report, a simulated day, the configuration). This script
// 1. refuses samples that miss a variant Rust has (serde's own list, printed with them), so a new kind cannot
//    slip by untested;
// 2. writes them into a .ts file as typed constants (`const outputs: EngineOutput[] = [...]`) against the
//    built package's .d.ts, with checks that each union lists exactly Rust's variants, and compiles it with
//    `tsc --noEmit --strict`: a member Rust writes that the types lack is an excess property, a member the
//    types require that Rust does not write is a missing one;
// 3. proves the check bites: the same file with one member added, and with one removed, must fail.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const tsc = join(root, 'bindings-wasm', 'node_modules', '.bin', 'tsc');
const pkgTypes = join(root, 'bindings-wasm', 'pkg', 'index.js');
const out = join(root, 'bindings-wasm', 'build', 'types-drift');

const file = process.argv[2];
if (!file) throw new Error('usage: node drift.mjs <samples.json from the wire_samples example>');
const { variants, samples } = JSON.parse(readFileSync(file, 'utf8'));

// ---- 1. coverage ---------------------------------------------------------------------------------------------

const outputs = samples.outputs;
const events = outputs.filter((o) => o.type === 'event').map((o) => o.value);
const records = outputs.filter((o) => o.type === 'persist').map((o) => o.value);
const checkpoints = [...samples.checkpoints, ...records.filter((r) => r.kind === 'checkpoint')];
const problems = [];
const cover = (what, rust, seen) => {
  const missing = rust.filter((v) => !seen.has(v));
  if (missing.length > 0) problems.push(`no sample of ${what} ${missing.join(', ')}`);
};
cover('output', variants.output, new Set(outputs.map((o) => o.type)));
cover('event', variants.event, new Set(events.map((e) => e.type)));
cover('record kind', variants.record, new Set(records.map((r) => r.kind)));
cover('input', variants.input, new Set(samples.inputs.map((i) => i.type)));
const need = (what, ok) => {
  if (!ok) problems.push(`no sample of ${what}`);
};
need('an audit record (no kind)', records.some((r) => r.kind === undefined));
need('an audit record that settles another', records.some((r) => r.kind === undefined && r.settles));
for (const kind of ['intent', undefined]) need(`a ${kind ?? 'audit'} record with a reference`, records.some((r) => r.kind === kind && r.reference));
for (const type of ['stateChanged', 'transitionFailed']) need(`a ${type} with a reference`, events.some((e) => e.type === type && e.reference));
need('a refusal with a break window', events.some((e) => e.error?.breakWindow));
need('a valid and an invalid validation', ['true', 'false'].every((v) => events.some((e) => e.type === 'validationCompleted' && String(e.valid) === v)));
need('a timeout with and without a deadline', outputs.some((o) => o.type === 'timeout' && o.value === null) && outputs.some((o) => o.type === 'timeout' && o.value !== null));
need('a token handed in, and a token source failure', samples.inputs.some((i) => i.type === 'accessToken' && i.accessToken !== null) && samples.inputs.some((i) => i.type === 'accessToken' && i.accessToken === null));
for (const part of ['open', 'outbox', 'deadLetters']) need(`a checkpoint with ${part}`, checkpoints.some((c) => c[part].length > 0));
need('an open change with an OUTCOME_UNKNOWN record', checkpoints.some((c) => c.open.some((o) => o.unknownRecord !== null)));
need('restored changes, abandoned ones, dead letters', ['resumed', 'abandoned'].every((k) => samples.restored.some((r) => r[k] > 0)));
need('a dead letter entry', samples.deadLetters.length > 0);
need('a report with logs and agents', samples.complianceReports.some((r) => r.logs.length > 0 && r.agents.length > 0));
need('a configuration with a webhook', samples.engineConfigs.some((c) => c.webhook !== null));
// The `cxone` profile.
const transmits = outputs.filter((o) => o.type === 'transmit').map((o) => o.value);
need('a transmit to the WFM host', transmits.some((t) => t.target === 'wfm'));
need('a cxone SetAgentState transmit', transmits.some((t) => t.target === 'api' && /\/inContactAPI\/services\/v\d+\.0\/agents\/\d+\/state/.test(t.request.url)));
for (const kind of ['directory', 'unavailableCodes', 'scheduleExport']) need(`a retry of a ${kind} request`, events.some((e) => e.type === 'retryScheduled' && e.kind === kind));
need('an intent with an outStateId', records.some((r) => r.kind === 'intent' && r.outStateId !== undefined));
need('an accessToken input with the cxone bases', samples.inputs.some((i) => i.type === 'accessToken' && i.apiBase && i.wfmBase));
need('a cxone configuration and a cxone day', samples.engineConfigs.some((c) => c.profile === 'cxone') && samples.daySummaries.some((d) => d.config.profile === 'cxone'));
// Observation (`cxone`).
for (const source of ['ours', 'external']) need(`a stateObserved from ${source}`, events.some((e) => e.type === 'stateObserved' && e.observation.source === source));
need('an observation with a code and an outStateId', events.some((e) => e.type === 'stateObserved' && e.observation.code && e.observation.outStateId !== undefined));
need('a heartbeat that succeeded and one with an error', events.some((e) => e.type === 'observationHeartbeat' && e.ok) && events.some((e) => e.type === 'observationHeartbeat' && e.error));
need('an outcome settled applied and one not applied', ['true', 'false'].every((v) => events.some((e) => e.type === 'outcomeSettled' && String(e.applied) === v)));
need('an outcome settled with a reference', events.some((e) => e.type === 'outcomeSettled' && e.reference));
need('an observation record and one that relies on it', records.some((r) => r.kind === undefined && r.observation) && records.some((r) => r.kind === undefined && r.reliesOn));
need('a retry of an agentStates poll', events.some((e) => e.type === 'retryScheduled' && e.kind === 'agentStates'));
need('a report with observedBySource', samples.complianceReports.some((r) => r.observedBySource));
need('agent snapshots from every source', ['ours', 'external'].every((s) => samples.agentSnapshots.some((a) => a.source === s)) && samples.agentSnapshots.some((a) => a.observedAgoMs !== undefined));
if (problems.length > 0) {
  console.error(`types: the samples do not cover every wire type (extend bindings-wasm/examples/wire_samples.rs):\n  ${problems.join('\n  ')}`);
  process.exit(1);
}

// ---- 2. typed constants ----------------------------------------------------------------------------------------

/** A value's shape, with the values of discriminating members kept: one sample per shape is enough. */
const KEEP = new Set(['type', 'kind', 'target', 'method', 'code', 'errorCode', 'tokenSource', 'profile', 'event']);
function shape(v, key = '') {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `[${[...new Set(v.map((x) => shape(x)))].sort().join('|')}]`;
  if (typeof v === 'object') return `{${Object.keys(v).sort().map((k) => `${k}:${shape(v[k], k)}`).join(',')}}`;
  return KEEP.has(key) ? JSON.stringify(v) : typeof v;
}
function distinct(xs) {
  const seen = new Set();
  return xs.filter((x) => {
    const s = shape(x);
    return seen.has(s) ? false : (seen.add(s), true);
  });
}

const constants = [
  ['outputs', 'EngineOutput[]', distinct(outputs)],
  ['inputs', 'EngineInput[]', distinct(samples.inputs)],
  ['checkpoints', 'Checkpoint[]', distinct(samples.checkpoints)],
  ['deadLetters', 'DeadLetterEntry[]', distinct(samples.deadLetters)],
  ['restored', 'Restored[]', distinct(samples.restored)],
  ['webhookPayloads', 'WebhookPayload[]', distinct(samples.webhookPayloads)],
  ['chainHeads', 'ChainHead[]', samples.chainHeads],
  ['agentSnapshots', 'AgentSnapshot[]', distinct(samples.agentSnapshots)],
  ['complianceReports', 'ComplianceReport[]', distinct(samples.complianceReports)],
  ['agentMetrics', '(AgentMetrics | null)[]', distinct(samples.agentMetrics)],
  ['engineConfigs', 'EngineConfig[]', distinct(samples.engineConfigs)],
  ['daySummaries', 'DaySummary[]', samples.daySummaries],
  ['errorCodes', 'ErrorCode[]', samples.errorCodes],
];
const union = (xs) => xs.map((x) => JSON.stringify(x)).join(' | ');
const unions = [
  ['output', "EngineOutput['type']"],
  ['event', "EngineEvent['type']"],
  ['record', "Exclude<LogRecord['kind'], undefined>"],
  ['input', "EngineInput['type']"],
  ['target', 'Target'],
  ['transportErrorKind', 'TransportErrorKind'],
  ['requestKind', "RetryScheduled['kind']"],
  ['tokenSource', "NonNullable<EngineConfig['tokenSource']>"],
  ['errorCode', 'ErrorCode'],
];
const types = ['AgentMetrics', 'AgentSnapshot', 'ChainHead', 'Checkpoint', 'ComplianceReport', 'DaySummary', 'DeadLetterEntry', 'EngineConfig',
  'EngineEvent', 'EngineInput', 'EngineOutput', 'ErrorCode', 'LogRecord', 'Restored', 'RetryScheduled', 'Target',
  'TransportErrorKind', 'WebhookPayload'];

function source(values, dir) {
  const lines = [
    '// Generated by bindings-wasm/test/types/drift.mjs from real samples of the Rust types: do not edit.',
    `import type { ${types.join(', ')} } from '${relative(dir, pkgTypes).split('\\').join('/')}';`,
    '',
    '/** `true` when the unions are equal; otherwise an object type naming what only one side has. */',
    'type Same<Ts, Rust> = [Exclude<Ts, Rust>] extends [never]',
    '  ? [Exclude<Rust, Ts>] extends [never] ? true : { onlyInRust: Exclude<Rust, Ts> }',
    '  : { onlyInTypes: Exclude<Ts, Rust> };',
    '',
  ];
  for (const [name, type, value] of values) lines.push(`export const ${name}: ${type} = ${JSON.stringify(value, null, 1)};`, '');
  for (const [name, ts] of unions) lines.push(`export const ${name}Variants: Same<${ts}, ${union(variants[name])}> = true;`);
  return `${lines.join('\n')}\n`;
}

function compile(name, values) {
  const dir = join(out, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'wire.ts'), source(values, dir));
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022', 'DOM'], strict: true,
      noEmit: true, skipLibCheck: false, types: [],
    },
    files: ['wire.ts'],
  }, null, 2));
  try {
    execFileSync(tsc, ['-p', join(dir, 'tsconfig.json')], { encoding: 'utf8', stdio: 'pipe' });
    return { ok: true, output: '' };
  } catch (e) {
    return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

const real = compile('samples', constants);
if (!real.ok) {
  console.error(`types: index.d.ts does not match the Rust types (samples from ${file}):\n${real.output}`);
  process.exit(1);
}

// ---- 3. the check bites ------------------------------------------------------------------------------------------

const mutate = (edit) => constants.map(([name, type, value]) => [name, type, name === 'outputs' ? edit(structuredClone(value)) : value]);
const firstEvent = (xs, type) => xs.find((o) => o.type === 'event' && o.value.type === type).value;
const extra = compile('extra-member', mutate((xs) => {
  firstEvent(xs, 'stateChanged').driftProbe = 1;
  return xs;
}));
const missing = compile('missing-member', mutate((xs) => {
  delete firstEvent(xs, 'transitionFailed').attempts;
  return xs;
}));
if (extra.ok || !/driftProbe/.test(extra.output) || missing.ok || !/attempts/.test(missing.output)) {
  console.error('types: the drift check does not catch an added or a removed member (are the types `any`?)');
  console.error(extra.output, missing.output);
  process.exit(1);
}
const counts = constants.map(([name, , value]) => `${value.length} ${name}`).join(', ');
console.log(`types: index.d.ts matches the Rust types (${counts}; ${unions.length} unions equal to Rust's variants)`);
