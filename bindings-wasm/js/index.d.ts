// Types of the `cxone-agent-state` package. Engine-level (wire) types come from the WebAssembly binding,
// where `make types` checks them against real samples of the Rust types.
import type {
  Abandoned,
  Actor,
  AdherenceReport,
  AgentCounts,
  RuleTable,
  ScheduledShift,
  Deferred,
  DeferredApplied,
  DeferredCancelled,
  AdherenceFigures,
  AdherenceInput,
  AgentMetrics,
  AgentSnapshot,
  AuditRecord,
  ChangeIntent,
  Checkpoint,
  ComplianceReport,
  CxoneConfig,
  DaySummary,
  DeadLetter,
  DeadLetterEntry,
  Delivered,
  EngineConfig,
  ErrorCode,
  LogRecord,
  ObservationHeartbeat,
  ObserveConfig,
  OutcomeSettled,
  PolicyViolation,
  Replayed,
  Restored,
  RetryPolicy,
  RetryScheduled,
  SimulateDayOptions,
  StateChanged,
  StateObserved,
  TransitionFailed,
  ValidationCompleted,
  WebhookConfig,
  WebhookDeadLettered,
  WebhookDelivered,
  WebhookPayload,
  WebhookRetryScheduled,
} from './wasm.js';
import { Engine } from './wasm.js';
import { SimulationRun } from './sim.js';

export type {
  Abandoned,
  Actor,
  AdherenceReport,
  AgentCounts,
  RuleTable,
  ScheduledShift,
  Deferred,
  DeferredApplied,
  DeferredCancelled,
  AdherenceFigures,
  AdherenceInput,
  AgentMetrics,
  AgentSnapshot,
  AuditRecord,
  ChainHead,
  ChangeIntent,
  Checkpoint,
  CodedError,
  ComplianceReport,
  CxoneConfig,
  DayCharts,
  DaySummary,
  DeadLetter,
  DeadLetterEntry,
  Delivered,
  EngineConfig,
  EngineEvent,
  EngineInput,
  EngineOutput,
  ErrorCode,
  GroundTruth,
  HttpRequest,
  HttpResponse,
  LatencySummary,
  LogRecord,
  Now,
  Observation,
  ObservationHeartbeat,
  ObservationSource,
  ObserveConfig,
  OpenChange,
  OutcomeSettled,
  PolicyViolation,
  Replayed,
  Restored,
  RetryPolicy,
  RetryScheduled,
  SimulateDayOptions,
  StateChanged,
  StateClasses,
  StateObserved,
  Target,
  TokenRequested,
  TransitionError,
  TransitionFailed,
  Transmit,
  TransportErrorKind,
  ValidationCompleted,
  WebhookConfig,
  WebhookDeadLettered,
  WebhookDelivered,
  WebhookEntry,
  WebhookPayload,
  WebhookRetryScheduled,
  WorkdayConfig,
} from './wasm.js';
export { Engine, SimulationRun };

/** A token handed out by your own back end (the browser never holds the client secret). */
export interface AccessToken {
  accessToken: string;
  /** Seconds of life left (or give `expiresInMs`). */
  expiresIn?: number;
  /** Milliseconds of life left (wins over `expiresIn`). */
  expiresInMs?: number;
  /** `cxone`: the ACD/Admin API base your back end knows (its discovery's `api_endpoint`); with `wfmBase`,
   * the page needs no discovery. A configured `apiBaseUrl` wins. */
  apiBase?: string;
  /** `cxone`: the WFM base (`https://{area}.{uhDomain}`). A configured `wfmBaseUrl` wins. */
  wfmBase?: string;
}

/** How the manager authenticates: a token source (browsers), or client credentials (servers). */
export type AuthConfig =
  | {
      /** Fetches a token from your own server, e.g. `() => fetch('/token').then(r => r.json())`. */
      getAccessToken: () => Promise<AccessToken>;
      domain?: string;
    }
  | {
      domain?: string;
      /** The client app's id and secret (on `cxone`, the OAuth client the access key signs in through). */
      clientId: string;
      clientSecret: string;
      /** `cxone`: the access key id (the password grant's `username`). Setting it makes `cxone` the default profile. */
      accessKeyId?: string;
      /** `cxone`: the access key secret (the password grant's `password`). */
      accessKeySecret?: string;
      /** Browsers refuse a client secret or an access key secret unless this is set, by name, to `true`
       * (`CLIENT_SECRET_IN_BROWSER`). */
      allowClientSecretInBrowser?: boolean;
    };

/** Options of `AgentStateManager` (all optional). */
/** The engine settings a manager passes on as they are (documented on `EngineConfig`). */
type PassedEngineConfig = Pick<EngineConfig, 'retry' | 'requestTimeoutMs' | 'scheduleTtlMs' | 'tokenRefreshMarginMs' |
  'policyMaxAgeMs' | 'commitWindowMs' | 'maxOpenChanges' | 'checkpointEvery' | 'reportLogCapacity'>;

/**
 * The `cxone` profile's options, named as the `CXONE_*` settings are (camelCase). Unused on `seed`. Those
 * marked [I] rest on inferred facts about the CXone API and are configurable for that reason.
 */
export interface CxoneOptions {
  /** Which API to speak (default `cxone` when an access key is given, else `seed`). */
  profile?: 'seed' | 'cxone';
  /** The access key id (or give it in `authConfig`). */
  accessKeyId?: string;
  /** The access key secret (or give it in `authConfig`); browsers refuse it without `allowClientSecretInBrowser`. */
  accessKeySecret?: string;
  /** Where discovery starts (default `https://cxone.niceincontact.com`). */
  authBase?: string;
  /** The ACD/Admin API base; with `wfmBaseUrl` too, no CXone configuration is fetched. */
  apiBaseUrl?: string;
  /** The WFM base [I] (default `https://{area}.{uhDomain}` from discovery). */
  wfmBaseUrl?: string;
  /** The API version `v{N}.0` [I]: one number for every endpoint (default 34), or one per endpoint. */
  apiVersion?: number | { agents?: number; unavailableCodes?: number; setState?: number; agentStates?: number; stateHistory?: number };
  /** How the client app authenticates at the token endpoint [I] (default `basic`). */
  clientAuth?: 'basic' | 'body';
  /** How `SetAgentState` carries its parameters [I] (default `query`). */
  setStateEncoding?: 'query' | 'json';
  /** Which schedule activities are mandatory breaks [I]: `'Break, Lunch'` (the default), a list of titles, or
   * `{ titles, nonWorkIsBreak }` (`nonWorkIsBreak`: every `work: false` activity too). */
  breakActivities?: string | string[] | { titles?: string[]; nonWorkIsBreak?: boolean };
  /** The WFM host's requests per minute (default 100); a 429 there pauses only it. */
  wfmRateLimitPerMin?: number;
  /** The WFM host's burst, if known. */
  wfmRateLimitBurst?: number;
  /** Every other `cxone` setting, as the engine names it (the options above win). */
  cxone?: CxoneConfig;
}

export interface ManagerOptions extends PassedEngineConfig, CxoneOptions {
  /**
   * State → reason code. On `seed`, the table `{ codes, fallback }` of reason codes sent. On `cxone`, the
   * unavailable-code names [I]: `'NOT_READY=Break,PAUSED=Meeting'`, `{ NOT_READY: 'Break' }` (entries on top
   * of the defaults, `'*'` the fallback), or a whole `{ codes, fallback }` table.
   */
  reasonCodes?: { codes: Record<string, string>; fallback: string } | Record<string, string> | string;
  /** API base URL (default `https://{domain}.api.nice.incontact.com`). */
  baseUrl?: string;
  /** Token endpoint (default `{baseUrl}/oauth2/token`). */
  tokenUrl?: string;
  /** A `fetch` to use instead of the global one (proxies, tests). It gets `init.headers` as a plain object. */
  fetch?: typeof fetch;
  /** The wall clock, in Unix-epoch milliseconds (default `Date.now`): only records carry it. */
  now?: () => number;
  /** The monotonic clock in milliseconds (default `performance.now`): every deadline is measured on it. */
  monoNow?: () => number;
  /**
   * Makes one record durable (append it to your log). Awaited for every record, in order, before any later
   * request is sent or event reported; if it throws, the manager stops (`AUDIT_LOG_UNAVAILABLE`).
   */
  persist?: (record: LogRecord) => void | Promise<void>;
  /** Records a previous run persisted, in order: open changes are finished, undelivered webhooks sent. */
  records?: LogRecord[];
  /** Seed of the engine's jitter and ids (random by default). */
  seed?: number;
  /** What audit records name as the changes' source (default `console`; `service` for a server). */
  source?: 'cli' | 'service' | 'console' | 'simulation';
  /** The tenant's request budget per minute (default 100, the reference's figure). */
  rateLimitPerMinute?: number;
  /** The tenant's burst, if known (default: one second's worth). */
  rateLimitBurst?: number;
  /** HMAC-SHA256 key for `X-Signature-256` on webhooks. */
  webhookSecret?: string;
  /** Webhook delivery settings (the URL is the constructor's `webhookUrl`). */
  webhook?: Omit<WebhookConfig, 'url'>;
  /**
   * `cxone`: observe agent states changed elsewhere (by the agent, a supervisor, the ACD): `true`, or the
   * poll's settings. Observation starts with the manager unless `autoStart` is `false` (then call
   * `startObserving()`). On `seed` the constructor throws `OBSERVE_UNSUPPORTED`.
   */
  observe?: boolean | ObserveOptions;
}

/** The poll's settings (`EngineConfig.observe`), and whether observation starts with the manager. */
export interface ObserveOptions extends ObserveConfig {
  /** Start observing when the manager is built (default `true`). */
  autoStart?: boolean;
}

/** What `transitionState` resolves with: the core's `StateChanged`, plus the reference's `{ success, latency }`. */
export interface TransitionResult extends StateChanged {
  success: true;
  /** The reference's name for `latencyMs`. */
  latency: number;
}

/** Options of `transitionState`. */
export interface TransitionOptions {
  /**
   * The caller's reference of the change: 1 to 128 printable ASCII characters (a ticket number, a request
   * id), kept in the change's intent, every audit record of it and its outcome (`reference`), never sent to
   * the tenant. Any other string rejects with `INVALID_REFERENCE`.
   */
  reference?: string;
  /**
   * The reason code to set the state with instead of the configured one: on `cxone`, the name of one of the
   * agent's team's unavailable codes (`{ reason: 'Lunch' }`, matched ignoring case, `_`, `-` and spaces;
   * ignored for READY). A name no code has rejects with `UNKNOWN_REASON_CODE` before anything is sent.
   */
  reason?: string;
  /**
   * Who asks for the change, written on its audit records: `{ role: 'agent', id: userId }` from an agent's
   * own console, `{ role: 'supervisor', id }` from a supervisor's. Default: the override's supervisor if
   * there is one, else `{ role: 'system' }`. A malformed one rejects with `INVALID_ACTOR`.
   */
  actor?: Actor;
  /**
   * A supervisor's override of the compliance policy: the change passes a policy refusal
   * (`MANDATORY_BREAK_VIOLATION`, `AGENT_NOT_SCHEDULED`) and is audited as an override naming the rule it
   * passed, never as a violation. Both parts 1 to 128 printable characters, else `INVALID_OVERRIDE`.
   */
  override?: { actor: string; reason: string };
  /**
   * Hold a READY that a due mandatory break refuses until the break ends, rather than reject it: a
   * `deferred` event, then (checked again when the break ends) the promise resolves as for any change, or
   * rejects (`DEFERRAL_CANCELLED` when cancelled or replaced by a newer change of the agent,
   * `MANDATORY_BREAK_VIOLATION` at its deadline). The log keeps it across a restart.
   */
  defer?: boolean;
}

/** What `validateStateChange` resolves with. */
export interface ValidationResult {
  valid: true;
  reasonCode: string;
}

/** An `Error` with a stable `code`. */
export declare class CxoneError extends Error {
  readonly code: ErrorCode;
  /** Set on failures of a command the engine took. */
  readonly transitionId?: number;
  readonly userId?: string;
  /** The state a failed transition asked for. */
  readonly requestedState?: string;
  /** The state a failed validation checked. */
  readonly state?: string;
  /** Set on transition failures: whether compliance policy refused the change. */
  readonly policyViolation?: boolean;
  readonly latencyMs?: number;
  readonly attempts?: number;
  readonly atMs?: number;
  /** For `MANDATORY_BREAK_VIOLATION`: the break's window (Unix ms), when the tenant names it. */
  readonly breakWindow?: { startMs: number; endMs: number } | null;
  /** Set on transition failures of a change given a reference (`transitionState(…, { reference })`). */
  readonly reference?: string;
}

/** An event of `AgentStateManager`; `detail` carries the engine's event or record. */
export declare class CxoneEvent<T = unknown> extends Event {
  readonly detail: T;
}

export interface AgentStateEventMap {
  // Engine events.
  statechange: CxoneEvent<StateChanged>;
  failure: CxoneEvent<TransitionFailed>;
  validation: CxoneEvent<ValidationCompleted>;
  violation: CxoneEvent<PolicyViolation>;
  retry: CxoneEvent<RetryScheduled>;
  webhookdelivered: CxoneEvent<WebhookDelivered>;
  webhookretry: CxoneEvent<WebhookRetryScheduled>;
  webhookdeadletter: CxoneEvent<WebhookDeadLettered>;
  /** `cxone`, while observing: a poll showed an agent in a new state; `detail.observation.source` says
   * whether the change was ours or `external`. */
  observed: CxoneEvent<StateObserved>;
  /** `cxone`, while observing: a poll ended or failed (`ok`, `lagMs`, `stale`). */
  heartbeat: CxoneEvent<ObservationHeartbeat>;
  /** An `OUTCOME_UNKNOWN` change was settled by what the tenant showed. */
  settled: CxoneEvent<OutcomeSettled>;
  /** A READY asked with `defer` is held until the agent's break ends (its promise stays pending). */
  deferred: CxoneEvent<Deferred>;
  /** A deferred change was released when its break ended and applied. */
  deferredapplied: CxoneEvent<DeferredApplied>;
  /** A deferred change will not be applied: cancelled, replaced, expired or failed. */
  deferredcancelled: CxoneEvent<DeferredCancelled>;
  // Records as they are persisted, each under its kind in lower case (without its `kind` member).
  audit: CxoneEvent<AuditRecord>;
  intent: CxoneEvent<ChangeIntent>;
  /** The payload, parsed from the record's body. */
  webhook: CxoneEvent<WebhookPayload>;
  delivered: CxoneEvent<Delivered>;
  deadletter: CxoneEvent<DeadLetter>;
  replayed: CxoneEvent<Replayed>;
  abandoned: CxoneEvent<Abandoned>;
  checkpoint: CxoneEvent<Checkpoint>;
}

/**
 * Changes agent states through NICE CXone with shift and break compliance enforced before each change.
 *
 * @example
 * ```js
 * import { AgentStateManager } from 'cxone-agent-state';
 * const manager = new AgentStateManager(
 *   { getAccessToken: () => fetch('/cxone-token').then((r) => r.json()) },
 *   undefined,
 *   { baseUrl: 'https://acme.api.nice.incontact.com' },
 * );
 * manager.addEventListener('violation', (e) => console.warn(e.detail.code));
 * try {
 *   const { latency } = await manager.transitionState('agent-7', 'READY');
 * } catch (e) {
 *   if (e.code === 'MANDATORY_BREAK_VIOLATION') showBreakNotice();
 * }
 * ```
 */
export declare class AgentStateManager extends EventTarget {
  constructor(authConfig: AuthConfig, webhookUrl?: string, options?: ManagerOptions);
  /**
   * Changes an agent's state; rejects with a `CxoneError` (`AGENT_NOT_SCHEDULED`, `RATE_LIMITED`,
   * `OUTCOME_UNKNOWN` — the change may have been applied —, `BUSY`, `CLOSED`, `INVALID_REFERENCE`, …).
   * Calls for one agent are made in call order. `options.reference` tags the change's records and outcome.
   */
  transitionState(userId: string, targetState: string, options?: TransitionOptions): Promise<TransitionResult>;
  /** Cancels the agent's deferred change; resolves with whether there was one. */
  cancelDeferred(userId: string): Promise<boolean>;
  /** Checks policy without changing anything. */
  validateStateChange(userId: string, targetState: string): Promise<ValidationResult>;
  /** READY → WORKING, NOT_READY → BREAK, PAUSED → ADHOC, IDLE → SYSTEM_IDLE, others → GENERAL. */
  getReasonCodeForState(state: string): string;
  /** The current idle stretch (IDLE, PAUSED, NOT_READY) in ms. */
  calculateIdleTime(userId: string): number;
  /** Idle time, time per state and utilization of one agent. */
  getAgentMetrics(userId: string): AgentMetrics | null;
  /** The compliance report. */
  /**
   * The compliance report. With `{ detail: true }` it carries `adherence`: adherence and conformance so far,
   * per agent and for the team, against `schedules` (`{ [userId]: ScheduledShift[] }`) or, on `cxone`
   * without them, the schedule exports the engine holds; `rules` replaces the default rule table.
   */
  getComplianceReport(options?: { detail?: boolean; schedules?: Record<string, ScheduledShift[]>; rules?: RuleTable }): ComplianceReport;
  /** The compliance report as `section,key,value` CSV (the layout of `cxone-agent-state report --csv`). */
  getComplianceReportCsv(): string;
  /** Webhook payloads the receiver kept refusing, oldest first. */
  getDeadLetters(): DeadLetterEntry[];
  /** Puts dead letters back in line for delivery: the one with `eventId`, or all. Resolves with how many. */
  replayDeadLetters(eventId?: string): Promise<number>;
  /**
   * `cxone`: starts observing agent states changed elsewhere (`observed`, `heartbeat` and `settled` events
   * follow); rejects with `OBSERVE_UNSUPPORTED` on `seed`, `CLOSED` once closed. Starting twice is harmless.
   *
   * @example
   * ```js
   * manager.addEventListener('observed', (e) => {
   *   if (e.detail.observation.source === 'external') flag(e.detail.userId, e.detail.state);
   * });
   * manager.addEventListener('heartbeat', (e) => showStale(e.detail.stale, e.detail.lagMs));
   * await manager.startObserving();
   * ```
   */
  startObserving(): Promise<void>;
  /** Stops observing (a poll in flight is ignored when it comes back). */
  stopObserving(): Promise<void>;
  /** Whether the manager is observing. */
  readonly observing: boolean;
  /** Every known agent's current state, where it is known from and whether it may be out of date. */
  getAgents(): AgentSnapshot[];
  /** `OUTCOME_UNKNOWN` changes that observation may still settle. */
  readonly unsettledOutcomes: number;
  /** Webhook payloads accepted and not yet delivered (dead letters excluded). */
  readonly pendingWebhooks: number;
  /** Changes taken and not yet finished. */
  readonly openChanges: number;
  /** What restoring `options.records` did. */
  readonly restored: Restored | null;
  /** Stops taking commands (later ones reject with `CLOSED`); resolves once every change taken has finished. */
  stopAccepting(): Promise<void>;
  /**
   * Closes the manager for good: open changes end now (`OUTCOME_UNKNOWN` if they may have reached the
   * tenant, `CLOSED` otherwise); later calls reject with `CLOSED`. Resolves once those outcomes are
   * persisted and delivered.
   */
  close(): Promise<void>;
  addEventListener<K extends keyof AgentStateEventMap>(
    type: K,
    listener: (event: AgentStateEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
}

/** A place to load a WebAssembly module from. */
export type ModuleSource = URL | string | Response | BufferSource | WebAssembly.Module;

/** Loads the engine module (Node does it on import; browsers await this once). */
export declare function initAsync(source?: ModuleSource): Promise<void>;

/** Loads the simulation module (Node does it on import; simulation pages await this once). */
export declare function initSimulation(source?: ModuleSource): Promise<void>;

/** A fixed engine workload against the simulated tenant, for speed comparisons; returns a checksum. */
export declare function throughputWorkload(agents: number, perAgent: number): number;

/**
 * Runs a whole simulated day in WebAssembly on virtual time.
 *
 * @example
 * ```js
 * const day = simulateDay({ agents: 1000, hours: 8, seed: 42 });
 * console.log(day.report.violationCount, day.groundTruth.readyAcceptedDuringBreak); // …, 0
 * ```
 */
export declare function simulateDay(options?: SimulateDayOptions): DaySummary;

/** A simulated day run in slices, for progress reporting. */
export declare function createSimulation(options?: SimulateDayOptions): SimulationRun;

/** The reason code of a state with the reference's default table. */
export declare function getReasonCodeForState(state: string): string;

/**
 * One agent's schedule adherence and conformance over `[fromMs, min(nowMs, toMs))`, from its shifts and its
 * actual state changes. Throws `INVALID_CONFIG` naming what is wrong with the input.
 */
export declare function computeAdherence(input: AdherenceInput): AdherenceFigures;

/** Every stable error code. */
export declare function errorCodes(): ErrorCode[];

/** Whether an audit record's `hash` matches its content (the chain's canonical encoding and SHA-256). */
export declare function verifyAuditRecord(record: AuditRecord): boolean;
