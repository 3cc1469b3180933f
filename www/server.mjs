// `make www`: serves the pages on localhost, next to a token endpoint, and starts a local sim-server with a
// demo roster so the console works on a fresh machine with nothing configured.
//
//   node www/server.mjs [--port 8080] [--sim-url URL] [--exit-on-stdin-eof]
//
// The page never sees a client secret: /token fetches a token from the tenant with client credentials on
// the server side and hands the page only { accessToken, expiresIn }. `/token?profile=cxone` signs in with the
// access key instead (the CXone password grant, server side) and adds the bases the page should use,
// { accessToken, expiresIn, apiBase, wfmBase }, so the page needs no discovery and holds no secret.
import { createServer } from 'node:http';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream, existsSync, statSync, realpathSync } from 'node:fs';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const port = Number(flag('--port', process.env.PORT ?? '8080'));
const clientId = process.env.CXONE_CLIENT_ID ?? 'sim-client';
const clientSecret = process.env.CXONE_CLIENT_SECRET ?? 'sim-secret';
// sim-server's default access key (`cxone`): its secret holds `=`, `&` and `%`.
const accessKeyId = process.env.CXONE_ACCESS_KEY_ID ?? 'sim-access-key';
const accessKeySecret = process.env.CXONE_ACCESS_KEY_SECRET ?? 'sim-access-secret=&%';
const binary = process.env.CXONE_BIN ?? join(root, 'target', 'debug', 'cxone-agent-state');

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** A roster that shows what the library does: breaks now and soon, one agent off shift. */
function roster(now) {
  const shift = [{ startMs: now - 2 * HOUR, endMs: now + 6 * HOUR }];
  const agent = (userId, breaks = [], shifts = shift) => ({ userId, shifts, breaks });
  return [
    agent('agent-0001'),
    agent('agent-0002'),
    agent('agent-0003', [{ startMs: now - 5 * MINUTE, endMs: now + 40 * MINUTE }]),
    agent('agent-0004'),
    agent('agent-0005', [{ startMs: now + 3 * MINUTE, endMs: now + 18 * MINUTE }]),
    agent('agent-0006'),
    agent('agent-0007'),
    agent('agent-0008', [{ startMs: now + 2 * HOUR, endMs: now + 2 * HOUR + 30 * MINUTE }]),
    agent('agent-0009'),
    agent('agent-0010', [], []),
  ];
}

async function startSim() {
  const child = spawn(binary, ['sim-server', '--listen', '127.0.0.1:0', '--agents', '10', '--rate-limit', '600',
    '--burst', '20', '--latency-ms', '40', '--exit-on-stdin-eof'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const [line] = await once(createInterface({ input: child.stdout }), 'line');
  const url = /listening on (\S+)/.exec(line)?.[1];
  if (!url) throw new Error(`sim-server did not start: ${line}`);
  await fetch(`${url}/admin/agents`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(roster(Date.now())),
  });
  return { url, child };
}

const sim = flag('--sim-url') ? { url: flag('--sim-url'), child: null } : await startSim();

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.wasm': 'application/wasm', '.json': 'application/json', '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/** Maps a URL path to a file under www/ (or the installed package); refuses anything outside them. */
function resolveFile(pathname) {
  const rel = normalize(decodeURIComponent(pathname)).replace(/^([/\\])+/, '');
  if (rel.split(sep).includes('..')) return null;
  const bases = rel.startsWith(`node_modules${sep}cxone-agent-state${sep}`) ? [here] : [join(here, 'public')];
  for (const base of bases) {
    const file = join(base, rel === '' ? 'index.html' : rel);
    if (!existsSync(file)) continue;
    const real = realpathSync(file);
    const allowed = [realpathSync(join(here, 'public')), realpathSync(join(here, 'node_modules', 'cxone-agent-state'))];
    if (!allowed.some((a) => real === a || real.startsWith(a + sep))) return null;
    if (statSync(real).isFile()) return real;
  }
  return null;
}

async function token(res, expired, cxone) {
  try {
    const form = cxone
      ? { grant_type: 'password', username: accessKeyId, password: accessKeySecret, client_id: clientId, client_secret: clientSecret }
      : { grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret };
    const r = await fetch(`${sim.url}${cxone ? '/auth/token' : '/oauth2/token'}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form),
    });
    const t = await r.json();
    if (!r.ok) throw new Error(t.error ?? `token endpoint answered ${r.status}`);
    // `?expired=1` hands out an already expired token, to show how the console reports it.
    const body = { accessToken: t.access_token, expiresIn: expired ? 0 : t.expires_in };
    // sim-server serves the ACD API and the schedule export itself (the WFM host it announces does not resolve).
    send(res, 200, cxone ? { ...body, apiBase: sim.url, wfmBase: sim.url } : body);
  } catch (e) {
    send(res, 502, { error: 'token_unavailable', message: String(e.message ?? e) });
  }
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/token') {
    return void token(res, url.searchParams.get('expired') === '1', url.searchParams.get('profile') === 'cxone');
  }
  if (url.pathname === '/config') {
    return send(res, 200, {
      baseUrl: sim.url, tokenUrl: '/token', agents: roster(0).map((a) => a.userId),
      // On `cxone` the same agents are named by their agentIds (sim-server numbers them from 1001).
      cxone: { tokenUrl: '/token?profile=cxone', agents: roster(0).map((_, i) => String(1001 + i)) },
    });
  }
  const file = resolveFile(url.pathname);
  if (!file) {
    res.writeHead(404, { 'content-type': 'text/plain' });
    return void res.end('not found');
  }
  res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-cache' });
  createReadStream(file).pipe(res);
});
server.listen(port, '127.0.0.1', () => {
  const { port: actual } = server.address();
  console.log(`www listening on http://127.0.0.1:${actual}/ (console) and http://127.0.0.1:${actual}/simulate.html; tenant ${sim.url}`);
});

const stop = () => {
  server.close();
  sim.child?.stdin.end();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
if (args.includes('--exit-on-stdin-eof')) {
  process.stdin.on('end', stop);
  process.stdin.resume();
}
