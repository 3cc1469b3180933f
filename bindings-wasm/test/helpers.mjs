// Shared helpers of the JS suite: the built package, the native sim-server over real HTTP.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';

const here = dirname(fileURLToPath(import.meta.url));
export const root = join(here, '..', '..');
export const pkgDir = join(root, 'bindings-wasm', 'pkg');
export const binary = process.env.CXONE_BIN ?? join(root, 'target', 'debug', 'cxone-agent-state');

/** Starts `cxone-agent-state sim-server` on a free loopback port; it exits when `stop()` closes its stdin. */
export async function startSimServer(flags = []) {
  const child = spawn(binary, ['sim-server', '--listen', '127.0.0.1:0', '--exit-on-stdin-eof', ...flags], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const [first] = await once(lines, 'line');
  const m = /^sim-server listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(first);
  if (!m) throw new Error(`unexpected sim-server output: ${first}`);
  const baseUrl = m[1];
  return {
    baseUrl,
    async admin(path, body) {
      const res = await fetch(baseUrl + path, body === undefined
        ? {}
        : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return res.json();
    },
    async stop() {
      child.stdin.end();
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}

export const credentials = { clientId: 'sim-client', clientSecret: 'sim-secret' };

/** An agent on shift from an hour ago for a day (real time). */
export function onShift(userId, breaks = []) {
  const now = Date.now();
  return { userId, shifts: [{ startMs: now - 3_600_000, endMs: now + 23 * 3_600_000 }], breaks };
}
