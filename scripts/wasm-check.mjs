// Loads the bare core module, fails on any `env` import, runs one simulated day and prints its digest.
import { readFileSync } from 'node:fs';

const [file, agents, seed, expected] = process.argv.slice(2);
const module = new WebAssembly.Module(readFileSync(file));
const imports = WebAssembly.Module.imports(module);
const env = imports.filter((i) => i.module === 'env');
if (env.length > 0) {
  console.error(`FAIL: ${file} imports from env: ${env.map((i) => i.name).join(', ')}`);
  process.exit(1);
}
if (imports.length > 0) {
  console.error(`FAIL: ${file} has imports: ${JSON.stringify(imports)}`);
  process.exit(1);
}
const instance = await WebAssembly.instantiate(module, {});
const digest = instance.exports.probe_simulated_day(Number(agents), Number(seed)) >>> 0;
console.log(`wasm-digest=${digest} (size ${readFileSync(file).length} bytes, 0 imports)`);
if (expected !== undefined && String(digest) !== expected) {
  console.error(`FAIL: wasm digest ${digest} differs from native digest ${expected}`);
  process.exit(1);
}
if (digest >>> 31) {
  console.error('FAIL: the tenant accepted READY during a mandatory break');
  process.exit(1);
}
