// Node entry (import): both modules are loaded synchronously from disk, so everything works right after
// import.
import { readFileSync } from 'node:fs';
import { initSync as initEngine } from './glue.js';
import { initSync as initSim } from './sim_glue.js';
import { setLoader } from './driver.js';

const here = (name) => readFileSync(new URL(name, import.meta.url));
initEngine({ module: here('./cxone_agent_state_bg.wasm') });
initSim({ module: here('./cxone_agent_state_sim_bg.wasm') });
setLoader('engine', () => undefined, true);
setLoader('sim', () => undefined, true);

export * from './driver.js';
