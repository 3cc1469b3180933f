// Types of the `cxone-agent-state` package. Engine-level types come from the WebAssembly binding.
import type {
  AgentMetrics,
  AuditRecord,
  ComplianceReport,
  DaySummary,
  ErrorCode,
  PolicyViolation,
  RetryPolicy,
  RetryScheduled,
  SimulateDayOptions,
  StateChanged,
  TransitionFailed,
  WebhookPayload,
} from './wasm.js';
import { Engine, Outbox } from './wasm.js';
import { SimulationRun } from './sim.js';

export type {
  AgentMetrics,
  AuditRecord,
  ComplianceReport,
  DayCharts,
  DaySummary,
  EngineConfig,
  EngineEvent,
  EngineOutput,
  ErrorCode,
  GroundTruth,
  HttpRequest,
  HttpResponse,
  LatencySummary,
  PolicyViolation,
  RetryPolicy,
  RetryScheduled,
  SimulateDayOptions,
  StateChanged,
  TransitionFailed,
  TransportErrorKind,
  ValidationCompleted,
  WebhookPayload,
} from './wasm.js';
export { Engine, Outbox, SimulationRun };

/** A token handed out by your own back end (the browser never holds the client secret). */
export interface AccessToken {
  accessToken: string;
  /** Seconds of life left. */
  expiresIn: number;
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
      clientId: string;
      clientSecret: string;
      /** Browsers refuse a client secret unless this is set, by name, to `true`. */
      allowClientSecretInBrowser?: boolean;
    };

/** Options of `AgentStateManager` (all optional). */
export interface ManagerOptions {
  /** API base URL (default `https://{domain}.api.nice.incontact.com`). */
  baseUrl?: string;
  /** Token endpoint (default `{baseUrl}/oauth2/token`). */
  tokenUrl?: string;
  /** A `fetch` to use instead of the global one (proxies, tests). */
  fetch?: typeof fetch;
  /** The clock, in Unix-epoch milliseconds (default `Date.now`). */
  now?: () => number;
  /** Seed of the engine's jitter and ids (random by default). */
  seed?: number;
  /** The tenant's request budget per minute (default 100, the reference's figure). */
  rateLimitPerMinute?: number;
  /** The tenant's burst, if known (default: one second's worth). */
  rateLimitBurst?: number;
  /** Retry schedule. */
  retry?: RetryPolicy;
  /** Per-request timeout (default 10 000 ms). */
  requestTimeoutMs?: number;
  /** How long a schedule answer is reused (default 60 000 ms; 0 asks every time). */
  scheduleTtlMs?: number;
  /** Refresh a token when less than this much of its life is left (default 60 000 ms). */
  tokenRefreshMarginMs?: number;
  /** State → reason code table. */
  reasonCodes?: { codes: Record<string, string>; fallback: string };
  /** HMAC-SHA256 key for `X-Signature-256` on webhooks. */
  webhookSecret?: string;
}

/** What `transitionState` resolves with (the reference's `{ success, latency }`, plus details). */
export interface TransitionResult {
  success: true;
  latency: number;
  latencyMs: number;
  userId: string;
  previousState: string | null;
  newState: string;
  reasonCode: string;
  attempts: number;
  transitionId: number;
}

/** What `validateStateChange` resolves with. */
export interface ValidationResult {
  valid: true;
  reasonCode: string;
}

/** An `Error` with a stable `code`. */
export declare class CxoneError extends Error {
  readonly code: ErrorCode;
  /** Set on transition failures: whether compliance policy refused the change. */
  readonly policyViolation?: boolean;
  readonly userId?: string;
  readonly state?: string;
  /** For `MANDATORY_BREAK_VIOLATION`: the break's window (Unix ms), when the tenant names it. */
  readonly breakWindow?: { startMs: number; endMs: number } | null;
}

/** An event of `AgentStateManager`; `detail` carries the engine's event. */
export declare class CxoneEvent<T = unknown> extends Event {
  readonly detail: T;
}

export interface AgentStateEventMap {
  statechange: CxoneEvent<StateChanged>;
  violation: CxoneEvent<PolicyViolation>;
  audit: CxoneEvent<AuditRecord>;
  webhook: CxoneEvent<WebhookPayload>;
  retry: CxoneEvent<RetryScheduled>;
  failure: CxoneEvent<TransitionFailed>;
  webhookdelivered: CxoneEvent<{ eventId: string; attempts: number; atMs: number }>;
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
  /** Changes an agent's state; rejects with a `CxoneError` (`AGENT_NOT_SCHEDULED`, `RATE_LIMITED`, …). */
  transitionState(userId: string, targetState: string): Promise<TransitionResult>;
  /** Checks policy without changing anything. */
  validateStateChange(userId: string, targetState: string): Promise<ValidationResult>;
  /** READY → WORKING, NOT_READY → BREAK, PAUSED → ADHOC, IDLE → SYSTEM_IDLE, others → GENERAL. */
  getReasonCodeForState(state: string): string;
  /** The current idle stretch (IDLE, PAUSED, NOT_READY) in ms. */
  calculateIdleTime(userId: string): number;
  /** Idle time, time per state and utilization of one agent. */
  getAgentMetrics(userId: string): AgentMetrics | null;
  /** The compliance report. */
  getComplianceReport(): ComplianceReport;
  /** The compliance report as `section,key,value` CSV (the layout of `cxone-agent-state report --csv`). */
  getComplianceReportCsv(): string;
  /** Webhook payloads accepted and not yet delivered. */
  readonly pendingWebhooks: number;
  /** Stops timers and frees the engine. */
  close(): void;
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

/** Every stable error code. */
export declare function errorCodes(): ErrorCode[];

/** Whether an audit record's `hash` matches its content (the chain's canonical encoding and SHA-256). */
export declare function verifyAuditRecord(record: AuditRecord): boolean;
