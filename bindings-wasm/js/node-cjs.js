// Node entry (require): bundled to CommonJS; the .wasm files are read from next to the bundle.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { initSync as initEngine } from './glue.js';
import { initSync as initSim } from './sim_glue.js';
import { setLoader } from './driver.js';

// eslint-disable-next-line no-undef
const here = (name) => readFileSync(join(__dirname, name));
initEngine({ module: here('cxone_agent_state_bg.wasm') });
initSim({ module: here('cxone_agent_state_sim_bg.wasm') });
setLoader('engine', () => undefined, true);
setLoader('sim', () => undefined, true);

export * from './driver.js';
