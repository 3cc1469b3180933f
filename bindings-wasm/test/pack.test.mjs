// `npm pack` makes a tarball that installs into a fresh project and works there by require and by import.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pkgDir } from './helpers.mjs';

test('the tarball installs into a fresh project and works there', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cxone-pack-'));
  try {
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', dir], { cwd: pkgDir, encoding: 'utf8' });
    const [info] = JSON.parse(out);
    const shipped = info.files.map((f) => f.path).sort();
    for (const f of ['cxone_agent_state_bg.wasm', 'cxone_agent_state_sim_bg.wasm', 'index.d.ts', 'index.js', 'node.cjs', 'node.mjs', 'package.json']) {
      assert.ok(shipped.includes(f), `${f} missing from the tarball`);
    }
    assert.ok(!shipped.some((f) => f.includes('node_modules') || f.endsWith('.rs')), shipped.join(','));
    const project = join(dir, 'app');
    execFileSync('mkdir', ['-p', project]);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'app', private: true }));
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--offline', join(dir, info.filename)], { cwd: project, stdio: 'pipe' });
    assert.ok(readdirSync(join(project, 'node_modules', 'cxone-agent-state')).includes('node.cjs'));
    const script = (kind) => `
      ${kind === 'cjs' ? "const m = require('cxone-agent-state');" : "const m = await import('cxone-agent-state');"}
      const day = m.simulateDay({ agents: 20, seed: 5 });
      if (day.groundTruth.readyAcceptedDuringBreak !== 0) throw new Error('READY during a break');
      const fetch = async (url) => new Response(JSON.stringify(url.endsWith('/oauth2/token')
        ? { access_token: 't', expires_in: 3600 } : url.includes('/schedules/') ? { status: 'ACTIVE' } : {}),
        { status: 200, headers: { 'content-type': 'application/json' } });
      const mgr = new m.AgentStateManager({ clientId: 'i', clientSecret: 's' }, undefined, { baseUrl: 'https://t.example', fetch });
      const r = await mgr.transitionState('a1', 'PAUSED');
      await mgr.close();
      console.log(JSON.stringify({ ok: r.success, reason: r.reasonCode, transitions: day.report.totalTransitions }));
    `;
    writeFileSync(join(project, 'use.cjs'), `(async () => { ${script('cjs')} })().catch((e) => { console.error(e); process.exit(1); });`);
    writeFileSync(join(project, 'use.mjs'), script('esm'));
    for (const file of ['use.cjs', 'use.mjs']) {
      const result = JSON.parse(execFileSync('node', [file], { cwd: project, encoding: 'utf8' }));
      assert.equal(result.ok, true, file);
      assert.equal(result.reason, 'ADHOC', file);
      assert.ok(result.transitions > 20, file);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
