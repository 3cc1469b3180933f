// The JS host of the cxone-agent-state engine: one async loop over a queue of inputs (commands, `fetch`
// answers, token answers, the timer). Each turn hands the queued inputs to the WebAssembly core, drains its
// outputs and acts on them in order. Every decision (policy, retries, pacing, tokens, audit records, webhook
// bodies, signatures and event ids) is made in the core; this file moves requests, answers, timers, records
// and events between the core and the world.
import {
  Engine,
  computeAdherence as wasmComputeAdherence,
  cxoneReasonCodes,
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

// Two modules: the console module (the engine) and the simulation module, which only simulation pages load.
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

/** What the core threw (already an Error with `code`) as a CxoneError. */
function coded(e) {
  return e && typeof e === 'object' && typeof e.code === 'string' && !(e instanceof CxoneError)
    ? new CxoneError(e.code, e.message)
    : e;
}

function rethrow(e) {
  throw coded(e);
}

/** An event dispatched by `AgentStateManager`; `detail` carries the engine's event or record. */
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

/** Engine events → listener names (`tokenRequested` is answered here, not dispatched). */
const EVENT_NAMES = {
  stateChanged: 'statechange',
  transitionFailed: 'failure',
  validationCompleted: 'validation',
  policyViolation: 'violation',
  retryScheduled: 'retry',
  webhookDelivered: 'webhookdelivered',
  webhookRetryScheduled: 'webhookretry',
  webhookDeadLettered: 'webhookdeadletter',
  stateObserved: 'observed',
  observationHeartbeat: 'heartbeat',
  outcomeSettled: 'settled',
  deferred: 'deferred',
  deferredApplied: 'deferredapplied',
  deferredCancelled: 'deferredcancelled',
};

/** The longest delay `setTimeout` takes (a later deadline is simply re-armed: early timeouts are harmless). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Errors that prove a request never left (the engine then knows a state change cannot have been applied).
 * Anything else — a browser's bare `TypeError`, a reset — may have reached the tenant.
 */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

function transportErrorKind(e) {
  if (e?.name === 'AbortError' || e?.name === 'TimeoutError') return 'timeout';
  const code = e?.cause?.code ?? e?.code;
  if (CONNECT_CODES.has(code)) return 'connect';
  return code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' ? 'reset' : 'other';
}

/** Request headers as a plain object (wrappers of `fetch` may spread them). */
function headerObject(pairs) {
  const out = {};
  for (const [name, value] of pairs) out[name] = name in out ? `${out[name]}, ${value}` : value;
  return out;
}

/** Rejects a caller with the core's error, its details, and the break window (or `null`). */
function rejectWith(waiter, error, details) {
  waiter.reject(new CxoneError(error.code, error.message, { ...details, breakWindow: error.breakWindow ?? null }));
}

const closedError = () => new CxoneError('CLOSED', 'the manager was closed');

/** `CXONE_REASON_CODES` as an object: `{ NOT_READY: 'Break' }` (entries on top of the defaults, `'*'` the
 * fallback) becomes the same text the setting takes; `{ codes, fallback }` is a whole table. */
function reasonTable(codes) {
  if (codes === null || typeof codes !== 'object' || 'codes' in codes) return codes;
  return Object.entries(codes).map(([state, name]) => {
    if (/[,=]/.test(state) || /,/.test(String(name))) {
      throw new CxoneError('INVALID_CONFIG', `reasonCodes: entry ${JSON.stringify(state)} has a ',' or '='`);
    }
    return `${state}=${name}`;
  }).join(',');
}

/** Which activities are breaks: `'Break, Lunch'`, `['Break', 'Lunch']` or `{ titles, nonWorkIsBreak }`. */
function breakRule(rule) {
  if (typeof rule === 'string') rule = rule.split(',');
  if (Array.isArray(rule)) return { titles: rule.map((t) => String(t).trim()).filter(Boolean), nonWorkIsBreak: false };
  return rule;
}

/** The engine's `cxone` settings from the manager's options (the core checks every value). */
function cxoneConfig(options, accessKeyId, accessKeySecret) {
  const c = { ...options.cxone, accessKeyId: accessKeyId ?? '', accessKeySecret: accessKeySecret ?? '' };
  const set = (key, value) => {
    if (value !== undefined) c[key] = value;
  };
  set('authBase', options.authBase);
  set('apiBase', options.apiBaseUrl);
  set('wfmBase', options.wfmBaseUrl);
  const v = options.apiVersion;
  set('versions', typeof v === 'number' || typeof v === 'string'
    ? { agents: Number(v), unavailableCodes: Number(v), setState: Number(v), agentStates: Number(v), stateHistory: Number(v) }
    : v);
  set('clientAuth', options.clientAuth);
  set('setStateEncoding', options.setStateEncoding);
  set('reasonCodes', options.reasonCodes === undefined ? undefined : reasonTable(options.reasonCodes));
  set('breakActivities', options.breakActivities === undefined ? undefined : breakRule(options.breakActivities));
  if (options.wfmRateLimitPerMin !== undefined) {
    c.wfmRateLimit = { perMinute: options.wfmRateLimitPerMin, burst: options.wfmRateLimitBurst ?? null };
  }
  set('scheduleTtlMs', options.scheduleTtlMs);
  return c;
}

/**
 * Changes agent states through CXone with compliance enforced — the reference module's
 * `AgentStateManager`, with its bugs fixed, running the Rust core in WebAssembly.
 */
export class AgentStateManager extends EventTarget {
  #engine = null;
  #config;
  #domain = null;
  #records;
  #restored = null;
  #fetch;
  #monoNow;
  #wallNow;
  #getAccessToken;
  #persist;
  #queue = [];
  #wake = null;
  #loop = null;
  #timer = null;
  #waiting = new Map();
  #idle = [];
  // 'open' → 'closing' (close() called: commands are refused) → 'closed' (the loop has stopped).
  #state = 'open';
  #failure = null;
  #closed = null;

  constructor(authConfig, webhookUrl, options = {}) {
    super();
    if (!authConfig || typeof authConfig !== 'object') {
      throw new CxoneError('INVALID_CONFIG', 'authConfig must be an object');
    }
    const external = typeof authConfig.getAccessToken === 'function';
    // The access key (the `cxone` profile's password grant) may be given with the other credentials or
    // among the options.
    const accessKeyId = authConfig.accessKeyId ?? options.accessKeyId;
    const accessKeySecret = authConfig.accessKeySecret ?? options.accessKeySecret;
    // As with CXONE_PROFILE: unset, an access key means `cxone`.
    const profile = options.profile ?? (accessKeyId || accessKeySecret ? 'cxone' : 'seed');
    if (profile !== 'seed' && profile !== 'cxone') {
      throw new CxoneError('INVALID_CONFIG', `options.profile must be 'seed' or 'cxone' (got ${JSON.stringify(profile)})`);
    }
    const cxone = profile === 'cxone';
    if (!external && !(authConfig.clientId && authConfig.clientSecret)) {
      throw new CxoneError(
        'INVALID_CONFIG',
        'authConfig needs getAccessToken() or clientId and clientSecret',
      );
    }
    if (!external && cxone && !(accessKeyId && accessKeySecret)) {
      throw new CxoneError(
        'INVALID_CONFIG',
        "the 'cxone' profile needs getAccessToken(), or accessKeyId and accessKeySecret with the client app's clientId and clientSecret",
      );
    }
    if ((authConfig.clientSecret || accessKeySecret) && isBrowser() && authConfig.allowClientSecretInBrowser !== true) {
      throw new CxoneError(
        'CLIENT_SECRET_IN_BROWSER',
        'a browser page must not hold a client secret or an access key secret: pass getAccessToken() backed by ' +
          'your own server, or set allowClientSecretInBrowser: true if you really mean it',
      );
    }
    // `cxone` discovers its bases (or is given them: apiBaseUrl, wfmBaseUrl, or by the token source).
    if (!cxone && !options.baseUrl && !authConfig.domain) {
      throw new CxoneError('INVALID_CONFIG', 'set options.baseUrl or authConfig.domain');
    }
    // The core turns a domain into the base URL (and refuses a malformed one) when the engine starts.
    this.#domain = options.baseUrl || cxone ? null : String(authConfig.domain);
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== 'function') {
      throw new CxoneError('INVALID_CONFIG', 'no fetch: pass options.fetch');
    }
    this.#fetch = options.fetch ? fetchImpl : fetchImpl.bind(globalThis);
    // Deadlines run on a monotonic clock; only records carry wall-clock time.
    this.#monoNow = typeof options.monoNow === 'function' ? options.monoNow : () => performance.now();
    this.#wallNow = typeof options.now === 'function' ? options.now : Date.now;
    this.#getAccessToken = external ? authConfig.getAccessToken : null;
    this.#persist = typeof options.persist === 'function' ? options.persist : null;
    this.#records = options.records ?? null;
    const config = {
      baseUrl: options.baseUrl ?? '',
      tokenUrl: options.tokenUrl ?? null,
      tokenSource: external ? 'external' : 'clientCredentials',
      credentials: {
        clientId: authConfig.clientId ?? '',
        clientSecret: external ? '' : authConfig.clientSecret,
      },
      seed: options.seed ?? randomSeed(),
      // Audit records say where changes came from: an agent console unless the embedder says otherwise.
      source: options.source ?? 'console',
      webhook: webhookUrl
        ? { ...options.webhook, url: webhookUrl, secret: options.webhookSecret ?? options.webhook?.secret ?? null }
        : null,
    };
    if (options.rateLimitPerMinute !== undefined) {
      config.rateLimit = { perMinute: options.rateLimitPerMinute, burst: options.rateLimitBurst ?? null };
    }
    // On `cxone`, the reason codes and the schedule TTL are the profile's own (unavailable-code names, the
    // schedule export's life).
    const passed = ['retry', 'requestTimeoutMs', 'tokenRefreshMarginMs', 'policyMaxAgeMs', 'commitWindowMs',
      'maxOpenChanges', 'checkpointEvery', 'reportLogCapacity'];
    if (!cxone) passed.push('scheduleTtlMs', 'reasonCodes');
    for (const key of passed) {
      if (options[key] !== undefined) config[key] = options[key];
    }
    if (cxone) {
      config.profile = 'cxone';
      config.cxone = cxoneConfig(options, external ? '' : accessKeyId, external ? '' : accessKeySecret);
    }
    // `observe: true`, or the poll's settings: observe agent states changed elsewhere from the start.
    const observe = options.observe;
    if (observe && !cxone) {
      throw new CxoneError('OBSERVE_UNSUPPORTED', "options.observe needs the 'cxone' profile: 'seed' has no endpoint to read agent states from");
    }
    if (observe && typeof observe === 'object') {
      const { autoStart, ...settings } = observe;
      config.observe = settings;
    }
    this.#config = config;
    // Where the module is already loaded (Node), configuration errors surface right here.
    if (modules.engine.ready) this.#start();
    if (observe && observe.autoStart !== false) this.#push({ type: 'startObserving', resolve() {}, reject() {}, ...this.#clock() });
  }

  #start() {
    if (this.#engine) return;
    if (this.#state !== 'open') throw this.#refusal();
    try {
      if (this.#domain !== null) this.#config.baseUrl = tenantBaseUrl(this.#domain);
      // The CXONE_REASON_CODES text becomes its table (the core parses it: defaults, checks).
      const cx = this.#config.cxone;
      if (typeof cx?.reasonCodes === 'string') cx.reasonCodes = cxoneReasonCodes(cx.reasonCodes);
      this.#engine = new Engine(this.#config);
      if (this.#records) {
        const { mono, unix } = this.#clock();
        this.#restored = this.#engine.restore(mono, unix, this.#records);
        this.#records = null;
        this.#kick();
      }
    } catch (e) {
      rethrow(e);
    }
  }

  #sync() {
    requireReady();
    this.#start();
    return this.#engine;
  }

  #clock() {
    return { mono: this.#monoNow(), unix: this.#wallNow() };
  }

  #refusal() {
    return this.#failure ?? closedError();
  }

  // ---- commands -------------------------------------------------------------------------------------------

  /**
   * Changes an agent's state. Resolves `{ success: true, latency, … }`; rejects with a coded error.
   * `options.reference`: the caller's reference of the change (1–128 printable ASCII characters, e.g. a
   * ticket number), kept in its records and outcome, never sent to the tenant (`INVALID_REFERENCE` otherwise).
   */
  transitionState(userId, targetState, options = {}) {
    const o = {};
    if (options?.reference != null) o.reference = String(options.reference);
    if (options?.reason != null) o.reason = String(options.reason);
    if (options?.actor != null) o.actor = options.actor;
    if (options?.override != null) o.override = options.override;
    if (options?.defer) o.defer = true;
    return this.#ask('transition', { userId: String(userId), state: String(targetState), options: o });
  }

  /** Checks policy without changing anything. Resolves `{ valid: true, reasonCode }`; rejects with a coded error. */
  validateStateChange(userId, targetState) {
    return this.#ask('validate', { userId: String(userId), state: String(targetState) });
  }

  /**
   * `cxone`: starts observing agent states changed elsewhere (a paced poll of the tenant's `agents/states`):
   * `observed`, `heartbeat` and `settled` events follow. Resolves once the engine has taken it; rejects with
   * `OBSERVE_UNSUPPORTED` on `seed`, `CLOSED` once closed. Starting twice is harmless.
   */
  startObserving() {
    return this.#ask('startObserving');
  }

  /** Stops observing (a poll in flight is ignored when it comes back). Resolves once the engine has taken it. */
  stopObserving() {
    return this.#state === 'open' ? this.#ask('stopObserving') : Promise.resolve();
  }

  /**
   * Cancels the agent's deferred change (`transitionState(…, { defer: true })` held until its break ends):
   * its promise rejects with `DEFERRAL_CANCELLED`. Resolves with whether there was one.
   */
  cancelDeferred(userId) {
    return this.#ask('cancelDeferred', { userId: String(userId) });
  }

  /** Puts dead letters back in line for delivery: the one with `eventId`, or all. Resolves with how many. */
  replayDeadLetters(eventId) {
    return this.#ask('replay', { eventId: eventId ?? undefined });
  }

  /**
   * Stops taking commands (later ones reject with `CLOSED`); changes already taken run to their end.
   * Resolves once none is open.
   */
  stopAccepting() {
    return this.#state === 'open' ? this.#ask('stopAccepting') : Promise.resolve();
  }

  /**
   * Closes the manager for good. Every open change ends now — `OUTCOME_UNKNOWN` if it may have reached the
   * tenant, `CLOSED` otherwise — audited and reported; later calls reject with `CLOSED`. Resolves once
   * those outcomes are persisted and delivered. Undelivered webhooks stay in the log for the next start.
   */
  close() {
    if (!this.#closed) {
      const running = this.#state === 'open' && (this.#engine || this.#loop);
      this.#closed = running ? this.#ask('close') : Promise.resolve();
      this.#state = running ? 'closing' : 'closed';
    }
    return this.#closed;
  }

  // Everything joins the queue at once, so commands reach the engine in call order (before the module has
  // loaded, too): changes for one agent are made in that order.
  #ask(type, fields) {
    return new Promise((resolve, reject) => {
      if (this.#state !== 'open') return reject(this.#refusal());
      this.#push({ type, ...fields, resolve, reject, ...this.#clock() });
    });
  }

  // ---- getters --------------------------------------------------------------------------------------------

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
    const { mono, unix } = this.#clock();
    return this.#sync().idleTime(String(userId), mono, unix);
  }

  /** Idle time, time per state and utilization of one agent, or `null`. */
  getAgentMetrics(userId) {
    const { mono, unix } = this.#clock();
    return this.#sync().agentMetrics(String(userId), mono, unix);
  }

  /** The compliance report: the reference's fields plus counts, percentiles and per-agent metrics. */
  getComplianceReport(options = {}) {
    const { mono, unix } = this.#clock();
    const engine = this.#sync();
    const report = engine.complianceReport(mono, unix);
    if (options?.detail) {
      report.adherence = engine.adherenceReport(mono, unix, options.schedules ?? undefined, options.rules ?? undefined);
    }
    return report;
  }

  /** The compliance report as `section,key,value` CSV (the layout of `cxone-agent-state report --csv`). */
  getComplianceReportCsv() {
    const { mono, unix } = this.#clock();
    return this.#sync().complianceReportCsv(mono, unix);
  }

  /**
   * Every known agent's current state: `{ userId, state, sinceMs, ageMs, source, tenantState?, code?,
   * observedAgoMs?, stale }`, `source` being `change` (our change, not yet seen by a poll), `ours` or
   * `external` (observed).
   */
  getAgents() {
    const { mono, unix } = this.#clock();
    return this.#sync().agents(mono, unix);
  }

  /** Whether the manager is observing agent states (`startObserving`). */
  get observing() {
    return this.#engine ? this.#engine.isObserving() : false;
  }

  /** `OUTCOME_UNKNOWN` changes that observation may still settle. */
  get unsettledOutcomes() {
    return this.#engine ? this.#engine.unsettledOutcomes() : 0;
  }

  /** The dead letters held, oldest first. */
  getDeadLetters() {
    return this.#sync().deadLetters();
  }

  /** Webhook payloads accepted and not yet delivered (dead letters excluded). */
  get pendingWebhooks() {
    return this.#engine ? this.#engine.pendingWebhooks() : 0;
  }

  /** Changes taken and not yet finished. */
  get openChanges() {
    return this.#engine ? this.#engine.openChanges() : 0;
  }

  /** What restoring `options.records` did (`null` without records, or before the module loaded). */
  get restored() {
    return this.#restored;
  }

  // ---- the loop -------------------------------------------------------------------------------------------

  #push(item) {
    this.#queue.push(item);
    this.#kick();
  }

  #kick() {
    if (this.#wake) {
      const wake = this.#wake;
      this.#wake = null;
      wake();
    } else if (!this.#loop) {
      this.#loop = this.#run();
    }
  }

  async #run() {
    try {
      await initAsync();
      this.#start();
    } catch (e) {
      return this.#stop(coded(e));
    }
    const engine = this.#engine;
    for (;;) {
      // 1. Hand in everything that happened.
      const after = [];
      for (const item of this.#queue.splice(0)) this.#handIn(engine, item, after);
      // 2. Drain and act in order: every record persisted before any later request or event.
      try {
        await this.#act(engine.drain());
      } catch (e) {
        const message = `the durable log could not be written, so no outcome can be reported safely; the manager stopped (${e?.message ?? e})`;
        return this.#stop(new CxoneError('AUDIT_LOG_UNAVAILABLE', message), after);
      }
      for (const done of after) done();
      if (this.#idle.length > 0 && engine.openChanges() === 0) {
        for (const resolve of this.#idle.splice(0)) resolve();
      }
      if (this.#state === 'closed') return undefined;
      // 3. Wait for the next input.
      if (this.#queue.length === 0) await new Promise((resolve) => (this.#wake = resolve));
    }
  }

  #handIn(engine, item, after) {
    const { mono, unix } = item;
    switch (item.type) {
      case 'transition':
      case 'validate':
        try {
          const id = item.type === 'transition'
            ? engine.transition(mono, unix, item.userId, item.state, item.options)
            : engine.validate(mono, unix, item.userId, item.state);
          this.#waiting.set(id, item);
        } catch (e) {
          item.reject(coded(e));
        }
        return;
      case 'response':
        return engine.handleResponse(mono, unix, item.id, item.status, item.headers, item.body);
      case 'transportError':
        return engine.handleTransportError(mono, unix, item.id, item.kind);
      case 'accessToken':
        return engine.handleAccessToken(
          mono, unix, item.id, item.token, item.expiresInMs, item.error, item.apiBase, item.wfmBase,
        );
      case 'timeout':
        return engine.handleTimeout(mono, unix);
      case 'startObserving':
        try {
          engine.startObserving(mono, unix);
          after.push(() => item.resolve());
        } catch (e) {
          item.reject(coded(e));
        }
        return;
      case 'stopObserving':
        engine.stopObserving();
        return after.push(() => item.resolve());
      case 'cancelDeferred': {
        const had = engine.cancelDeferred(mono, unix, item.userId);
        return after.push(() => item.resolve(had));
      }
      case 'replay': {
        const n = engine.replayDeadLetters(mono, unix, item.eventId);
        return after.push(() => item.resolve(n));
      }
      case 'stopAccepting':
        engine.stopAccepting();
        return this.#idle.push(item.resolve);
      case 'close':
        engine.close(mono, unix);
        return after.push(() => {
          if (this.#state !== 'closed') this.#stop(null);
          item.resolve();
        });
      default:
        throw new Error(`unknown input ${item.type}`);
    }
  }

  async #act(outputs) {
    for (const out of outputs) {
      const v = out.value;
      switch (out.type) {
        case 'persist':
          if (this.#persist) await this.#persist(v);
          this.#dispatchRecord(v);
          break;
        case 'transmit':
          // Every target ('api', 'wfm' — the `cxone` WFM host —, 'token', 'webhook') is one `fetch`.
          this.#send(v);
          break;
        case 'event':
          this.#report(v);
          break;
        default:
          this.#arm(v);
      }
    }
  }

  /**
   * The loop stops: after a close (`error` null), or because it cannot go on (the module or the
   * configuration failed, or a record could not be persisted). Whatever still waits is refused.
   */
  #stop(error, after = []) {
    this.#failure = error;
    this.#state = 'closed';
    clearTimeout(this.#timer);
    this.#timer = null;
    const refusal = this.#refusal();
    for (const w of this.#waiting.values()) w.reject(refusal);
    this.#waiting.clear();
    for (const item of this.#queue.splice(0)) {
      if (item.type === 'close') item.resolve();
      else item.reject?.(refusal);
    }
    for (const done of after) done();
    for (const resolve of this.#idle.splice(0)) resolve();
  }

  #arm(deadline) {
    clearTimeout(this.#timer);
    this.#timer = null;
    if (deadline === null || this.#state === 'closed') return;
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, Math.ceil(deadline - this.#monoNow())));
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#push({ type: 'timeout', ...this.#clock() });
    }, delay);
  }

  #answer(item) {
    if (this.#state !== 'closed') this.#push({ ...item, ...this.#clock() });
  }

  #send({ id, request }) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), request.timeoutMs);
    const init = { method: request.method, headers: headerObject(request.headers), signal: ctrl.signal };
    if (request.body !== null) init.body = request.body;
    new Promise((resolve) => resolve(this.#fetch(request.url, init)))
      .then(async (res) => {
        const body = await res.text();
        const headers = [];
        res.headers?.forEach?.((value, name) => headers.push(name, value));
        return { type: 'response', id, status: res.status, headers, body };
      })
      .catch((e) => ({ type: 'transportError', id, kind: ctrl.signal.aborted ? 'timeout' : transportErrorKind(e) }))
      .then((item) => {
        clearTimeout(timer);
        this.#answer(item);
      });
  }

  #fetchToken(id) {
    new Promise((resolve) => resolve(this.#getAccessToken()))
      .then(
        (t) => {
          if (!t || typeof t.accessToken !== 'string') return { error: 'getAccessToken() returned no accessToken' };
          // `expiresInMs`, or the OAuth-style `expiresIn` in seconds; on `cxone`, the bases it knows.
          const expiresInMs = t.expiresInMs != null ? Number(t.expiresInMs) : Number(t.expiresIn) * 1000;
          const base = (b) => (typeof b === 'string' && b !== '' ? b : undefined);
          return { token: t.accessToken, expiresInMs, apiBase: base(t.apiBase), wfmBase: base(t.wfmBase) };
        },
        (e) => ({ error: String(e?.message ?? e) }),
      )
      .then((answer) => this.#answer({ type: 'accessToken', id, ...answer }));
  }

  #settle(id, fn) {
    const w = this.#waiting.get(id);
    if (w) {
      this.#waiting.delete(id);
      fn(w);
    }
  }

  #report(e) {
    const { type, ...detail } = e;
    switch (type) {
      case 'stateChanged':
        this.#settle(e.transitionId, (w) => w.resolve({ success: true, latency: e.latencyMs, ...detail }));
        break;
      case 'transitionFailed':
        this.#settle(e.transitionId, (w) => {
          const { error, ...details } = detail;
          rejectWith(w, error, details);
        });
        break;
      case 'validationCompleted':
        this.#settle(e.transitionId, (w) =>
          e.valid
            ? w.resolve({ valid: true, reasonCode: e.reasonCode })
            : rejectWith(w, e.error, { transitionId: e.transitionId, userId: e.userId, state: e.state }),
        );
        break;
      case 'tokenRequested':
        this.#fetchToken(e.requestId);
        return;
      default:
        break;
    }
    const name = EVENT_NAMES[type];
    if (name) this.dispatchEvent(new CxoneEvent(name, detail));
  }

  /** Every record is dispatched under its kind in lower case ('audit' for audit records, which have none). */
  #dispatchRecord(r) {
    if (r.kind === undefined) return void this.dispatchEvent(new CxoneEvent('audit', r));
    const { kind, ...rest } = r;
    this.dispatchEvent(new CxoneEvent(kind.toLowerCase(), kind === 'webhook' ? JSON.parse(r.body) : rest));
  }
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

/**
 * One agent's schedule adherence and conformance over `[fromMs, min(nowMs, toMs))`, from its shifts and its
 * actual state changes; throws `INVALID_CONFIG` naming what is wrong with the input.
 */
export function computeAdherence(input) {
  requireReady();
  try {
    return wasmComputeAdherence(input);
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

export { Engine, SimulationRun };
