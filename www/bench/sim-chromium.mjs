// `make bench`: a 1,000-agent, 8-hour simulated day on the simulation page, in headless Chromium.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const server = spawn('node', [join(root, 'www', 'server.mjs'), '--port', '0', '--exit-on-stdin-eof'], { stdio: ['pipe', 'pipe', 'inherit'] });
const [line] = await once(createInterface({ input: server.stdout }), 'line');
const base = /(http:\/\/127\.0\.0\.1:\d+)\//.exec(line)[1];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run'],
});
const times = [];
try {
  for (let i = 0; i < 3; i++) {
    const page = await browser.newPage();
    await page.goto(`${base}/simulate.html?agents=1000&hours=8&breakEvery=2&breakMinutes=15&faults=2&rate=100&seed=${42 + i}`);
    const status = page.locator('#sim-status[data-ms]');
    await status.waitFor({ timeout: 60_000 });
    times.push(Number(await status.getAttribute('data-ms')));
    await page.close();
  }
} finally {
  await browser.close();
  server.stdin.end();
}
times.sort((a, b) => a - b);
const median = times[1];
console.log(`== simulation page in headless Chromium ==`);
console.log(`1,000 agents × 8 h in a Web Worker: median ${(median / 1000).toFixed(2)} s of ${times.map((t) => (t / 1000).toFixed(2)).join(', ')} s   [target < 2 s: ${median < 2000 ? 'MET' : 'NOT MET'}]`);
