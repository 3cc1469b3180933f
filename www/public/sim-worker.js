// Runs a simulated day off the main thread, in slices, reporting progress. A day that observes agent states
// is run a second time without observing, so the page can show what observation buys.
import { createSimulation, initSimulation } from '/node_modules/cxone-agent-state/index.js';

const SLICE_MS = 20 * 60_000; // virtual time per progress report

/**
 * Runs one day to its end (with the report's CSV when `csv`); its progress is reported as
 * `from + share × progress`, so two runs fill one bar once.
 */
function runDay(options, from, share, csv) {
  const started = performance.now();
  const run = createSimulation(options);
  try {
    while (!run.done) {
      run.advance(SLICE_MS);
      self.postMessage({ type: 'progress', progress: from + share * run.progress });
    }
    const summary = run.summary();
    const ms = performance.now() - started;
    return { summary, ms, csv: csv ? run.reportCsv() : undefined };
  } finally {
    run.free();
  }
}

self.onmessage = async (e) => {
  try {
    await initSimulation();
    const observe = e.data.observe === true;
    const share = observe ? 0.5 : 1;
    const { summary, csv, ms } = runDay(e.data, 0, share, true);
    if (!observe) {
      self.postMessage({ type: 'done', summary, csv, ms });
      return;
    }
    const off = runDay({ ...e.data, observe: false }, share, share, false);
    self.postMessage({ type: 'done', summary, csv, ms, without: off.summary.accuracy, withoutMs: off.ms });
  } catch (err) {
    self.postMessage({ type: 'error', code: err?.code ?? 'ERROR', message: String(err?.message ?? err) });
  }
};
