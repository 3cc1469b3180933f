// `make bench` for the npm package: size, wasm-vs-native engine throughput, and simulateDay speed.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const pkg = join(root, 'bindings-wasm', 'pkg');
const m = await import(join(pkg, 'node.mjs'));

const size = (files) => {
  const raw = files.reduce((n, f) => n + readFileSync(join(pkg, f)).length, 0);
  const gz = files.reduce((n, f) => n + gzipSync(readFileSync(join(pkg, f)), { level: 9 }).length, 0);
  return { raw, gz };
};
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

console.log('== npm package cxone-agent-state ==');
const consoleBundle = size(['index.js', 'cxone_agent_state_bg.wasm']);
const simModule = size(['cxone_agent_state_sim_bg.wasm']);
console.log(`agent-console bundle (index.js + engine wasm): ${kb(consoleBundle.raw)} raw, ${kb(consoleBundle.gz)} gzipped   [target ≤ 60 KB gzipped: ${consoleBundle.gz <= 60 * 1024 ? 'MET' : 'NOT MET'}; Amazon Connect Streams ≈ 186 KB]`);
console.log(`simulation module (loaded only by simulateDay pages): ${kb(simModule.raw)} raw, ${kb(simModule.gz)} gzipped`);
const all = size(['index.js', 'cxone_agent_state_bg.wasm', 'cxone_agent_state_sim_bg.wasm']);
console.log(`whole browser package: ${kb(all.raw)} raw, ${kb(all.gz)} gzipped`);

// Throughput: the same workload natively and in wasm under Node, in the same run.
const [agents, perAgent] = [300, 8];
const native = execFileSync('cargo', ['run', '--release', '-q', '-p', 'cxone-agent-state-wasm', '--features', 'sim',
  '--example', 'throughput', '--', String(agents), String(perAgent), '7'], { cwd: root, encoding: 'utf8' });
const nativeMs = Number(/native-ms=([\d.]+)/.exec(native)[1]);
const nativeSum = Number(/checksum=(\d+)/.exec(native)[1]);
m.throughputWorkload(agents, 1); // warm up
const wasmTimes = [];
let wasmSum = 0;
for (let i = 0; i < 7; i++) {
  const t = performance.now();
  wasmSum = m.throughputWorkload(agents, perAgent);
  wasmTimes.push(performance.now() - t);
}
if (wasmSum !== nativeSum) throw new Error(`wasm and native disagree: ${wasmSum} vs ${nativeSum}`);
const wasmMs = median(wasmTimes);
const transitions = agents * perAgent;
const ratio = nativeMs / wasmMs;
console.log(`engine throughput: wasm ${(transitions / wasmMs * 1000).toFixed(0)} transitions/s, native ${(transitions / nativeMs * 1000).toFixed(0)} transitions/s (same workload, same outcome checksum)`);
console.log(`  wasm ÷ native = ${ratio.toFixed(2)}   [target ≥ 0.5: ${ratio >= 0.5 ? 'MET' : 'NOT MET'}]`);

// simulateDay: 1,000 agents × 8 hours in Node.
m.simulateDay({ agents: 50 }); // warm up
const dayTimes = [];
let day;
for (let i = 0; i < 3; i++) {
  const t = performance.now();
  day = m.simulateDay({ agents: 1000, hours: 8, seed: 42 });
  dayTimes.push(performance.now() - t);
}
const dayMs = median(dayTimes);
console.log(`simulateDay 1,000 agents × 8 h in Node: ${(dayMs / 1000).toFixed(2)} s (${day.report.totalTransitions} transitions, READY during breaks: ${day.groundTruth.readyAcceptedDuringBreak})   [target < 2 s: ${dayMs < 2000 ? 'MET' : 'NOT MET'}]`);
