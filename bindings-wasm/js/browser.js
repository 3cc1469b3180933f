// Browser (and bundler) entry: ES module; each .wasm file is fetched from next to this file when first
// needed (`initAsync()` for the engine, `initSimulation()` for simulated days).
import initEngine from './glue.js';
import initSim from './sim_glue.js';
import { setLoader } from './driver.js';

setLoader('engine', (source) =>
  initEngine({ module_or_path: source ?? new URL('./cxone_agent_state_bg.wasm', import.meta.url) }),
);
setLoader('sim', (source) =>
  initSim({ module_or_path: source ?? new URL('./cxone_agent_state_sim_bg.wasm', import.meta.url) }),
);

export * from './driver.js';
