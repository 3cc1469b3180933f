// Runs a simulated day off the main thread, in slices, reporting progress.
import { createSimulation, initSimulation } from '/node_modules/cxone-agent-state/index.js';

const SLICE_MS = 20 * 60_000; // virtual time per progress report

self.onmessage = async (e) => {
  try {
    await initSimulation();
    const started = performance.now();
    const run = createSimulation(e.data);
    while (!run.done) {
      run.advance(SLICE_MS);
      self.postMessage({ type: 'progress', progress: run.progress });
    }
    const summary = run.summary();
    const ms = performance.now() - started;
    const csv = run.reportCsv();
    run.free();
    self.postMessage({ type: 'done', summary, csv, ms });
  } catch (err) {
    self.postMessage({ type: 'error', code: err?.code ?? 'ERROR', message: String(err?.message ?? err) });
  }
};
