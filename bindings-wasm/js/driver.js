// The JS host of the cxone-agent-state engine: one async loop over `fetch` and `setTimeout`.
// All decisions (policy, retries, pacing, tokens, audit) are made in the WebAssembly core; this file only
// moves requests, answers, timers and events between the core and the world.
import {
  Engine,
  Outbox,
  errorCodes as wasmErrorCodes,
  reasonCodeForState,
  tenantBaseUrl,
  verifyAuditRecord as wasmVerifyAuditRecord,
} from './glue.js';
import {
  SimulationRun,
  simulateDay as wasmSimulateDay,
  throughputWorkload as wasmThroughputWorkload,
} from './sim_glue.js';

// Two modules: the console module (engine + webhook outbox) and the simulation module, which only
// simulation pages load.
const modules = {
  engine: { ready: false, loading: null, load: null },
  sim: { ready: false, loading: null, load: null },
};

/** @internal The entry point says how each module is loaded (`loaded`: already loaded synchronously). */
export function setLoader(which, load, loaded = false) {
  modules[which].load = load;
  modules[which].ready = loaded;
}

function initModule(which, source) {
  const m = modules[which];
  if (m.ready) return Promise.resolve();
  if (!m.loading) {
    m.loading = Promise.resolve()
      .then(() => m.load(source))
      .then(
        () => {
          m.ready = true;
        },
        (e) => {
          m.loading = null;
          throw e;
        },
      );
  }
  return m.loading;
}

/**
 * Loads the engine's WebAssembly module. Node entry points load it on import; in a browser, await this once
 * before calling synchronous functions (the async methods of `AgentStateManager` call it themselves).
 */
export function initAsync(source) {
  return initModule('engine', source);
}

/** Loads the simulation module (only simulation pages need it; Node loads it on import). */
export function initSimulation(source) {
  return initModule('sim', source);
}

/** An `Error` with a stable `code` (the same codes as in Rust and in the audit log). */
export class CxoneError extends Error {
  constructor(code, message, details) {
    super(message);
    this.name = 'CxoneError';
    this.code = code;
    if (details) Object.assign(this, details);
  }
}

function requireReady(which = 'engine') {
  if (!modules[which].ready) {
    const how = which === 'engine' ? 'await initAsync()' : 'await initSimulation()';
    throw new CxoneError(
      'NOT_INITIALIZED',
      `the cxone-agent-state ${which} module is not loaded yet: \`${how}\` first`,
    );
  }
}

/** Rethrows what the core threw (already an Error with `code`) as a CxoneError. */
function rethrow(e) {
  if (e && typeof e === 'object' && typeof e.code === 'string') {
    throw new CxoneError(e.code, e.message);
  }
  throw e;
}

/** An event dispatched by `AgentStateManager`; `detail` carries the engine's event. */
export class CxoneEvent extends Event {
  constructor(type, detail) {
    super(type);
    this.detail = detail;
  }
}

function isBrowser() {
  return (
    (typeof window !== 'undefined' && typeof window.document !== 'undefined') ||
    (typeof self !== 'undefined' && typeof importScripts === 'function') ||
    (typeof WorkerGlobalScope !== 'undefined')
  );
}

function randomSeed() {
  const c = globalThis.crypto;
  if (c && typeof c.getRandomValues === 'function') {
    const a = new Uint32Array(2);
    c.getRandomValues(a);
    return (a[0] * 2 ** 21 + (a[1] >>> 11)) % Number.MAX_SAFE_INTEGER;
  }
  return Math.floor(Math.random() * Number.MAX_SAFE_INTEGER);
}

const EVENT_NAMES = {
  stateChanged: 'statechange',
  policyViolation: 'violation',
  auditRecord: 'audit',
  webhook: 'webhook',
  retryScheduled: 'retry',
  transitionFailed: 'failure',
  changeIntent: 'intent',
};

/**
 * Changes agent states through CXone with compliance enforced — the reference module's
 * `AgentStateManager`, with its bugs fixed, running the Rust core in WebAssembly.
 */
export class AgentStateManager extends EventTarget {
  #engine = null;
  #outbox = null;
  #config;
  #domain = null;
  #outboxConfig = null;
  #fetch;
  #now;
  #getAccessToken;
  #timer = null;
  #outboxTimer = null;
  #waiting = new Map();
  #closed = false;

  constructor(authConfig, webhookUrl, options = {}) {
    super();
    if (!authConfig || typeof authConfig !== 'object') {
      throw new CxoneError('INVALID_CONFIG', 'authConfig must be an object');
    }
    const external = typeof authConfig.getAccessToken === 'function';
    if (!external && !(authConfig.clientId && authConfig.clientSecret)) {
      throw new CxoneError(
        'INVALID_CONFIG',
        'authConfig needs getAccessToken() or clientId and clientSecret',
      );
    }
    if (authConfig.clientSecret && isBrowser() && authConfig.allowClientSecretInBrowser !== true) {
      throw new CxoneError(
        'CLIENT_SECRET_IN_BROWSER',
        'a browser page must not hold a client secret: pass getAccessToken() backed by your own server, ' +
          'or set allowClientSecretInBrowser: true if you really mean it',
      );
    }
    if (!options.baseUrl && !authConfig.domain) {
      throw new CxoneError('INVALID_CONFIG', 'set options.baseUrl or authConfig.domain');
    }
    // The core turns a domain into the base URL (and refuses a malformed one) when the engine starts.
    this.#domain = options.baseUrl ? null : String(authConfig.domain);
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== 'function') {
      throw new CxoneError('INVALID_CONFIG', 'no fetch: pass options.fetch');
    }
    this.#fetch = options.fetch ? fetchImpl : fetchImpl.bind(globalThis);
    this.#now = typeof options.now === 'function' ? options.now : Date.now;
    this.#getAccessToken = external ? authConfig.getAccessToken : null;
    const config = {
      baseUrl: options.baseUrl ?? '',
      tokenUrl: options.tokenUrl ?? null,
      tokenSource: external ? 'external' : 'clientCredentials',
      credentials: {
        clientId: authConfig.clientId ?? '',
        clientSecret: external ? '' : authConfig.clientSecret,
      },
      seed: options.seed ?? randomSeed(),
    };
    if (options.rateLimitPerMinute !== undefined) {
      config.rateLimit = { perMinute: options.rateLimitPerMinute, burst: options.rateLimitBurst ?? null };
    }
    if (options.retry) config.retry = options.retry;
    if (options.requestTimeoutMs !== undefined) config.requestTimeoutMs = options.requestTimeoutMs;
    if (options.scheduleTtlMs !== undefined) config.scheduleTtlMs = options.scheduleTtlMs;
    if (options.tokenRefreshMarginMs !== undefined) config.tokenRefreshMarginMs = options.tokenRefreshMarginMs;
    if (options.reasonCodes) config.reasonCodes = options.reasonCodes;
    this.#config = config;
    if (webhookUrl) {
      this.#outboxConfig = {
        url: webhookUrl,
        secret: options.webhookSecret ?? null,
        seed: (config.seed + 1) % Number.MAX_SAFE_INTEGER,
      };
    }
    // Where the module is already loaded (Node), configuration errors surface right here.
    if (modules.engine.ready) this.#start();
  }

  #start() {
    if (this.#engine) return;
    if (this.#closed) throw new CxoneError('INVALID_CONFIG', 'this manager was closed');
    try {
      if (this.#domain !== null) this.#config.baseUrl = tenantBaseUrl(this.#domain);
      // Outbox() checks the webhook URL itself (INVALID_WEBHOOK_URL).
      if (this.#outboxConfig) this.#outbox = new Outbox(this.#outboxConfig);
      this.#engine = new Engine(this.#config);
    } catch (e) {
      rethrow(e);
    }
  }

  async #ready() {
    await initAsync();
    this.#start();
  }

  #sync() {
    requireReady();
    this.#start();
    return this.#engine;
  }

  /** Changes an agent's state. Resolves `{ success: true, latency, … }`; rejects with a coded error. */
  async transitionState(userId, targetState) {
    await this.#ready();
    const id = this.#engine.transition(this.#now(), String(userId), String(targetState));
    const done = new Promise((resolve, reject) => this.#waiting.set(id, { resolve, reject }));
    this.#pump();
    return done;
  }

  /** Checks policy without changing anything. Resolves `{ valid: true, reasonCode }`; rejects with a coded error. */
  async validateStateChange(userId, targetState) {
    await this.#ready();
    const id = this.#engine.validate(this.#now(), String(userId), String(targetState));
    const done = new Promise((resolve, reject) => this.#waiting.set(id, { resolve, reject }));
    this.#pump();
    return done;
  }

  /** The reason code a state is sent with (READY → WORKING, …, others → GENERAL). */
  getReasonCodeForState(state) {
    try {
      return this.#sync().reasonCodeFor(String(state));
    } catch (e) {
      return rethrow(e);
    }
  }

  /** The agent's current idle stretch in ms (IDLE, PAUSED or NOT_READY), 0 otherwise. */
  calculateIdleTime(userId) {
    return this.#sync().idleTime(String(userId), this.#now());
  }

  /** Idle time, time per state and utilization of one agent, or `null`. */
  getAgentMetrics(userId) {
    return this.#sync().agentMetrics(String(userId), this.#now());
  }

  /** The compliance report: the reference's fields plus counts, percentiles and per-agent metrics. */
  getComplianceReport() {
    return this.#sync().complianceReport(this.#now());
  }

  /** The compliance report as `section,key,value` CSV (the layout of `cxone-agent-state report --csv`). */
  getComplianceReportCsv() {
    return this.#sync().complianceReportCsv(this.#now());
  }

  /** Webhook payloads accepted and not yet delivered. */
  get pendingWebhooks() {
    return this.#outbox ? this.#outbox.pending() : 0;
  }

  /** Stops timers and frees the engine. Pending promises reject with `AUDIT_LOG_UNAVAILABLE`. */
  close() {
    this.#closed = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#outboxTimer);
    for (const { reject } of this.#waiting.values()) {
      reject(new CxoneError('AUDIT_LOG_UNAVAILABLE', 'the manager was closed'));
    }
    this.#waiting.clear();
    this.#engine?.free();
    this.#outbox?.free();
    this.#engine = null;
    this.#outbox = null;
  }

  #pump() {
    if (!this.#engine) return;
    for (const out of this.#engine.drain()) {
      if (out.type === 'transmit') this.#send(out.value);
      else if (out.type === 'event') this.#event(out.value);
      else this.#arm(out.value);
    }
  }

  #arm(deadline) {
    clearTimeout(this.#timer);
    this.#timer = null;
    if (deadline === null || deadline === undefined) return;
    const delay = Math.max(0, deadline - this.#now());
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (!this.#engine) return;
      this.#engine.handleTimeout(this.#now());
      this.#pump();
    }, delay);
  }

  #perform(req, onAnswer, onFailure) {
    const ctrl = new AbortController();
    const timer = req.timeoutMs > 0 ? setTimeout(() => ctrl.abort(), req.timeoutMs) : null;
    const init = { method: req.method, headers: req.headers, signal: ctrl.signal };
    if (req.body !== null && req.body !== undefined) init.body = req.body;
    let call;
    try {
      call = Promise.resolve(this.#fetch(req.url, init));
    } catch (e) {
      call = Promise.reject(e);
    }
    call
      .then(async (res) => {
        const body = await res.text();
        const flat = [];
        res.headers.forEach((value, name) => flat.push(name, value));
        clearTimeout(timer);
        onAnswer(res.status, flat, body);
      })
      .catch((e) => {
        clearTimeout(timer);
        const kind = ctrl.signal.aborted || e?.name === 'AbortError' || e?.name === 'TimeoutError'
          ? 'timeout'
          : e instanceof TypeError
            ? 'connect'
            : 'other';
        onFailure(kind);
      });
  }

  #send(req) {
    this.#perform(
      req,
      (status, headers, body) => {
        if (!this.#engine) return;
        this.#engine.handleResponse(this.#now(), req.id, status, headers, body);
        this.#pump();
      },
      (kind) => {
        if (!this.#engine) return;
        this.#engine.handleTransportError(this.#now(), req.id, kind);
        this.#pump();
      },
    );
  }

  #settle(id, fn) {
    const w = this.#waiting.get(id);
    if (w) {
      this.#waiting.delete(id);
      fn(w);
    }
  }

  #event(e) {
    switch (e.type) {
      case 'stateChanged':
        this.#settle(e.transitionId, (w) =>
          w.resolve({
            success: true,
            latency: e.latencyMs,
            latencyMs: e.latencyMs,
            userId: e.userId,
            previousState: e.previousState,
            newState: e.newState,
            reasonCode: e.reasonCode,
            attempts: e.attempts,
            transitionId: e.transitionId,
          }),
        );
        break;
      case 'transitionFailed':
        this.#settle(e.transitionId, (w) =>
          w.reject(
            new CxoneError(e.error.code, e.error.message, {
              userId: e.userId,
              state: e.requestedState,
              transitionId: e.transitionId,
              latencyMs: e.latencyMs,
              policyViolation: e.policyViolation,
              breakWindow: e.error.breakWindow ?? null,
            }),
          ),
        );
        break;
      case 'validationCompleted':
        this.#settle(e.transitionId, (w) =>
          e.valid
            ? w.resolve({ valid: true, reasonCode: e.reasonCode })
            : w.reject(
                new CxoneError(e.error.code, e.error.message, {
                  userId: e.userId,
                  state: e.state,
                  breakWindow: e.error.breakWindow ?? null,
                }),
              ),
        );
        return;
      case 'tokenRequested':
        this.#token(e.requestId);
        return;
      case 'webhook':
        if (this.#outbox) {
          this.#outbox.enqueue(this.#now(), e.eventId, JSON.stringify(stripType(e)));
          this.#pumpOutbox();
        }
        break;
      default:
        break;
    }
    const name = EVENT_NAMES[e.type];
    if (name) this.dispatchEvent(new CxoneEvent(name, stripType(e)));
  }

  #token(requestId) {
    Promise.resolve()
      .then(() => this.#getAccessToken())
      .then(
        (t) => {
          if (!this.#engine) return;
          if (!t || typeof t.accessToken !== 'string') {
            this.#engine.handleAccessTokenError(this.#now(), requestId, 'getAccessToken() returned no accessToken');
          } else {
            const ms = Number(t.expiresIn) * 1000;
            this.#engine.handleAccessToken(this.#now(), requestId, t.accessToken, Number.isFinite(ms) ? ms : 0);
          }
          this.#pump();
        },
        (err) => {
          if (!this.#engine) return;
          this.#engine.handleAccessTokenError(this.#now(), requestId, String(err?.message ?? err));
          this.#pump();
        },
      );
  }

  #pumpOutbox() {
    const box = this.#outbox;
    if (!box) return;
    for (let req = box.pollTransmit(this.#now()); req; req = box.pollTransmit(this.#now())) {
      this.#perform(
        req,
        (status, headers) => {
          if (!this.#outbox) return;
          this.#outbox.handleResponse(this.#now(), req.id, status, headers);
          this.#pumpOutbox();
        },
        () => {
          if (!this.#outbox) return;
          this.#outbox.handleTransportError(this.#now(), req.id);
          this.#pumpOutbox();
        },
      );
    }
    for (let ev = box.pollEvent(); ev; ev = box.pollEvent()) {
      this.dispatchEvent(new CxoneEvent(ev.type === 'delivered' ? 'webhookdelivered' : 'webhookretry', ev));
    }
    clearTimeout(this.#outboxTimer);
    const next = box.nextDeadline();
    if (next !== undefined && next !== null) {
      this.#outboxTimer = setTimeout(() => {
        if (!this.#outbox) return;
        this.#outbox.handleTimeout(this.#now());
        this.#pumpOutbox();
      }, Math.max(0, next - this.#now()));
    }
  }
}

function stripType(e) {
  const { type, ...rest } = e;
  return rest;
}

/**
 * Runs a whole simulated day (simulated tenant + engine, in WebAssembly, on virtual time) and returns its
 * summary: `{ report, groundTruth, charts, … }`. Throws `INVALID_CONFIG` on bad options.
 */
export function simulateDay(options = {}) {
  requireReady('sim');
  try {
    return wasmSimulateDay(options);
  } catch (e) {
    return rethrow(e);
  }
}

/** A simulated day run in slices (for progress reporting from a Web Worker). */
export function createSimulation(options = {}) {
  requireReady('sim');
  try {
    return new SimulationRun(options);
  } catch (e) {
    return rethrow(e);
  }
}

/** The reason code of a state with the reference's default table; throws `INVALID_STATE`. */
export function getReasonCodeForState(state) {
  requireReady();
  try {
    return reasonCodeForState(String(state));
  } catch (e) {
    return rethrow(e);
  }
}

/** Whether an audit record's `hash` matches its content (the chain's canonical encoding, SHA-256). */
export function verifyAuditRecord(record) {
  requireReady();
  try {
    return wasmVerifyAuditRecord(record);
  } catch (e) {
    return rethrow(e);
  }
}

/** Every stable error code. */
export function errorCodes() {
  requireReady();
  return wasmErrorCodes();
}

/** @internal A fixed engine workload for speed comparisons with native code; returns a checksum. */
export function throughputWorkload(agents, perAgent) {
  requireReady('sim');
  return wasmThroughputWorkload(agents, perAgent);
}

export { Engine, Outbox, SimulationRun };
