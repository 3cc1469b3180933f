//! WebAssembly binding of the cxone-agent-state core, published as the npm package `cxone-agent-state`.
//!
//! No logic lives here: each export converts JS values to core types and back. The package's JS driver
//! (`bindings-wasm/js/`) performs the HTTP requests with `fetch` and the timers with `setTimeout`; time
//! crosses the boundary as two numbers, `monoMs` (a monotonic clock: every deadline) and `unixMs` (the wall
//! clock: what records carry).
//!
//! Two modules are built from this crate: `console` (the engine, what an agent console loads) and `sim`
//! (simulated days, loaded only by simulation pages).
//!
//! Errors thrown to JS are real `Error` objects with a stable `code` property (the same codes as in Rust).

#[cfg(feature = "console")]
mod console;
#[cfg(feature = "sim")]
mod sim;

#[cfg(feature = "console")]
pub use console::*;
#[cfg(feature = "sim")]
pub use sim::*;

use cxone_agent_state_core::{ConfigError, ErrorCode};
use serde::Serialize;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** A stable error code: the same strings reach Rust, JS and the audit log. */
export type ErrorCode =
  | "INVALID_STATE" | "INVALID_USER_ID" | "AGENT_NOT_SCHEDULED" | "MANDATORY_BREAK_VIOLATION"
  | "UNAUTHORIZED" | "AUTH_FAILED" | "FORBIDDEN" | "USER_NOT_FOUND" | "CONFLICT" | "REJECTED"
  | "RATE_LIMITED" | "UPSTREAM_UNAVAILABLE" | "BAD_RESPONSE" | "INVALID_CONFIG"
  | "INVALID_IDEMPOTENCY_KEY" | "INVALID_WEBHOOK_URL" | "AUDIT_LOG_CORRUPT" | "TOKEN_EXPIRED"
  | "AUDIT_LOG_UNAVAILABLE" | "CLIENT_SECRET_IN_BROWSER" | "NOT_INITIALIZED" | "OUTCOME_UNKNOWN"
  | "BUSY" | "CLOSED" | "INVALID_REFERENCE" | "DISCOVERY_FAILED" | "UNKNOWN_AGENT"
  | "UNKNOWN_REASON_CODE" | "BAD_REQUEST" | "STATE_CONFLICT" | "OBSERVE_UNSUPPORTED" | "NOT_APPLIED"
  | "INVALID_ACTOR" | "INVALID_OVERRIDE" | "DEFERRAL_CANCELLED";

/** An `Error` thrown by this package. */
export interface CodedError extends Error { code: ErrorCode }

/** A moment read from two clocks: `monoMs` (monotonic: every deadline) and `unixMs` (wall clock: records). */
export interface Now { monoMs: number; unixMs: number }

/** The retry schedule (defaults: the reference module's 3 retries of 1000·2^n + jitter[0,1000) ms). */
export interface RetryPolicy { maxRetries?: number; baseMs?: number; jitterMs?: number; capMs?: number; maxRetryAfterMs?: number }

/** Where and how webhooks are delivered (every field but `url` has a default). */
export interface WebhookConfig {
  url: string;
  /** HMAC-SHA256 key of `X-Signature-256`. */
  secret?: string | null;
  timeoutMs?: number;
  retry?: RetryPolicy;
  maxInFlight?: number;
  /** A payload refused (4xx other than 408 and 429) this many times becomes a dead letter. */
  deadLetterAfterRefusals?: number;
  deadLetterAfterMs?: number;
  /** What a restart does with payloads accepted for another receiver URL than this one: deliver them to that
   * receiver (the default; its URL must be in the log, which it is not when it has a query or user info) or
   * set them aside as dead letters. */
  onReceiverChange?: "deliverToOriginal" | "deadLetter";
}

/** The `cxone` profile's settings (every field has a default). Each mirrors a `CXONE_*` setting; the
 * fields marked [I] rest on inferred facts about the CXone API and are configurable for that reason. */
export interface CxoneConfig {
  /** The access key id: the password grant's `username` (not needed with an external token source). */
  accessKeyId?: string;
  /** The access key secret: the password grant's `password`. */
  accessKeySecret?: string;
  /** Where discovery starts (`/.well-known/openid-configuration`; default `https://cxone.niceincontact.com`). */
  authBase?: string;
  /** The ACD/Admin API base; with `wfmBase` set too, the CXone configuration is not fetched. */
  apiBase?: string | null;
  /** The WFM base [I] (default `https://{area}.{uhDomain}` from the CXone configuration). */
  wfmBase?: string | null;
  /** The API version (`v{N}.0`) of each ACD endpoint [I] (default 34 each). */
  versions?: { agents?: number; unavailableCodes?: number; setState?: number; agentStates?: number; stateHistory?: number };
  /** How the client app authenticates at the token endpoint [I] (default `basic`). */
  clientAuth?: "basic" | "body";
  /** How `SetAgentState` carries `state` and `outStateId` [I] (default `query`). */
  setStateEncoding?: "query" | "json";
  /** State → unavailable-code name [I] (READY is always `Available`; defaults NOT_READY → BREAK,
   * PAUSED → ADHOC, IDLE → SYSTEM_IDLE, others → GENERAL). `AgentStateManager` also takes the
   * `CXONE_REASON_CODES` text. */
  reasonCodes?: { codes: Record<string, string>; fallback: string };
  /** Which schedule activities are mandatory breaks [I] (default titles `Break`, `Lunch`). */
  breakActivities?: { titles?: string[]; nonWorkIsBreak?: boolean };
  /** The WFM host's own request budget (a 429 there pauses only it). */
  wfmRateLimit?: { perMinute?: number; burst?: number | null };
  /** How long an agent's schedule export is used (default 3 600 000 ms). */
  scheduleTtlMs?: number;
  /** Days one export covers from the day before today (UTC), 1 to 7 (default 3). */
  scheduleDays?: number;
  /** The directory is read again for a missing agent id at most this often (default 60 000 ms). */
  directoryRefetchMs?: number;
  /** A team's codes are read again for a missing name at most this often (default 60 000 ms). */
  codesRefetchMs?: number;
  /** Agents per directory page (default 100). */
  agentsPageSize?: number;
  /** The share (0 to 100 %) of the WFM budget that background re-reads of used schedule exports may take
   * (in the last tenth of their TTL); 0, the default, turns them off. */
  schedulePrefetchPercent?: number;
}

/** The engine's configuration (every field but `baseUrl` has a default; on `cxone`, `baseUrl` may be empty).
 * Secrets serialize as "[redacted]". */
export interface EngineConfig {
  baseUrl: string;
  /** What audit records name as the changes' source (default `service`). */
  source?: "cli" | "service" | "console" | "simulation";
  /** Deferred changes: given up `maxWaitMs` after first held; checked again every `recheckMs` when the
   * refusal names no break end. */
  defer?: { maxWaitMs?: number; recheckMs?: number };
  tokenUrl?: string | null;
  credentials?: { clientId: string; clientSecret: string };
  tokenSource?: "clientCredentials" | "external";
  profile?: "seed" | "cxone";
  seed?: number;
  /** State → reason code table. */
  reasonCodes?: { codes: Record<string, string>; fallback: string };
  /** Refresh a token when less than this much of its life is left (default 60 000 ms). */
  tokenRefreshMarginMs?: number;
  /** How long a schedule answer is reused (default 60 000 ms; 0 asks every time). */
  scheduleTtlMs?: number;
  /** A policy check older than this is made again before the change is first sent (default 30 000 ms). */
  policyMaxAgeMs?: number;
  /** How long after its policy check a change may still be sent (default 120 000 ms). */
  commitWindowMs?: number;
  /** Retry schedule. */
  retry?: RetryPolicy;
  rateLimit?: { perMinute?: number; burst?: number | null };
  /** Per-request timeout (default 10 000 ms). */
  requestTimeoutMs?: number;
  history?: { maxEntriesPerAgent: number; maxAgents: number; classes?: StateClasses };
  /** Audit records the report's `logs` keeps (default 10 000). */
  reportLogCapacity?: number;
  /** Open changes accepted before commands answer `BUSY` (default 100 000). */
  maxOpenChanges?: number;
  /** A checkpoint record after this many others (default 1000; `null`: none). */
  checkpointEvery?: number | null;
  webhook?: WebhookConfig | null;
  /** The `cxone` profile's settings (unused by `seed`). */
  cxone?: CxoneConfig;
  /** `cxone`: how agent states changed elsewhere are observed (`startObserving`). */
  observe?: ObserveConfig;
}

/** `cxone`: the poll of `agents/states?updatedSince=` (every field has a default). */
export interface ObserveConfig {
  /** Time between the end of one poll and the start of the next (default 10 000 ms; at least 1000). */
  intervalMs?: number;
  /** Agents per page of the poll (1 to 1000). */
  pageSize?: number;
  /** An `OUTCOME_UNKNOWN` change not seen applied this long after its last send is settled from the tenant's
   * answers (default 60 000 ms). */
  settleAfterMs?: number;
  /** Before a change is sent: when a fresh observation shows the agent already in the requested state and
   * code, it is not sent and is audited as a no-op success naming that observation (default false). */
  skipIfInEffect?: boolean;
  /** The observed states are stale when no poll has succeeded for this long (default 30 000 ms; at least
   * `intervalMs`). */
  staleAfterMs?: number;
  /** How far an observed change's time may be from one of our changes and still be taken as ours (default
   * 2000 ms). */
  matchToleranceMs?: number;
}

/** Which states count as working (utilization), idle and offline; any other state is tracked only. */
export interface StateClasses { working?: string[]; idle?: string[]; offline?: string[] }

/** Whether an observed change was made by this engine (`ours`) or elsewhere (`external`: the agent, a
 * supervisor, the ACD, a session). */
export type ObservationSource = "ours" | "external";

/** What the tenant said about one agent (carried by `stateObserved` and its observation record). */
export interface Observation {
  /** When the tenant says it happened, on our wall clock (Unix ms). */
  atMs: number;
  /** The unavailable code's name, when there is one. */
  code?: string;
  /** The unavailable code's id, when there is one. */
  outStateId?: number;
  source: ObservationSource;
  /** The tenant's state name, e.g. `"Unavailable"`. */
  tenantState: string;
  tenantStateId?: number;
  /** The tenant's `lastUpdateTime`, as it wrote it. */
  tenantTime: string;
}

/** One agent as `engine.agents()` / `manager.getAgents()` reports it. */
export interface AgentSnapshot {
  userId: string;
  /** The current state, as the history names it (`READY`, `NOT_READY`, `INBOUND_CONTACT`, `LOGGED_OUT`, …). */
  state: string;
  /** Since when (Unix ms). */
  sinceMs: number;
  /** How long the agent has been in it (ms). */
  ageMs: number;
  /** `change`: a change this engine made, not yet seen by a poll; `ours` or `external`: observed. */
  source: "change" | ObservationSource;
  /** The tenant's state name, when observed. */
  tenantState?: string;
  /** The unavailable code's name, when observed with one. */
  code?: string;
  /** How long ago the last successful poll started, while observing (ms). */
  observedAgoMs?: number;
  /** Observation is on and no poll has succeeded for `observe.staleAfterMs`: the state may be out of date. */
  stale: boolean;
}

/** An HTTP request for the host to perform. */
export interface HttpRequest {
  method: "GET" | "POST"; url: string; headers: [string, string][]; body: string | null; timeoutMs: number;
}

/** An HTTP answer. */
export interface HttpResponse { status: number; headers: [string, string][]; body: string }

/** Who a request goes to (`wfm`: the `cxone` profile's WFM host, schedule exports). */
export type Target = "api" | "wfm" | "token" | "webhook";

/** A request to perform; hand the answer back with the same `id`. */
export interface Transmit { id: number; target: Target; request: HttpRequest }

export type TransportErrorKind = "connect" | "reset" | "timeout" | "other";

/** One audit record: the reference module's fields plus the hash chain. */
export interface AuditRecord {
  seq: number; id: string; timestamp: string; userId: string; previousState: string | null;
  newState: string; reasonCode: string | null; success: boolean; latencyMs: number;
  policyViolation: boolean; errorCode: ErrorCode | null; errorMessage: string | null;
  attempts: number; idempotencyKey: string | null;
  /** Set on a record that settles an earlier `OUTCOME_UNKNOWN` one: that record's `id`. */
  settles?: string;
  /** The caller's reference of the change (`engine.transition(…, reference)`), when it gave one. */
  reference?: string;
  /** `cxone`: set on an observation record (not a transition attempt): what the tenant showed. */
  observation?: Observation;
  /** Set on a change not sent because the tenant already showed it in effect: the observation record's `id`. */
  reliesOn?: string;
  /** Who asked for it (absent only in records written before the field existed). */
  actor?: Actor;
  /** Through what it came in (`observed` for an observation record). */
  source?: "cli" | "service" | "console" | "simulation" | "observed";
  /** A supervisor's override: who, why, and the policy code it passed (absent when nothing was refused). */
  override?: { actor: string; reason: string; overrode?: ErrorCode };
  /** A step of a deferred change (held, released, cancelled, expired). */
  deferral?: DeferralNote;
  prevHash: string; hash: string;
}

/** A state change about to be sent for the first time. */
export interface ChangeIntent {
  transitionId: number; userId: string; state: string; reasonCode: string; idempotencyKey: string;
  approvedAtMs: number; atMs: number;
  /** The caller's reference of the change, when it gave one. */
  reference?: string;
  /** The API profile it was sent on (absent for `seed`); a restart on another profile does not resend it. */
  profile?: "seed" | "cxone";
  /** `cxone`: the unavailable code's `outStateId` the change is sent with (absent for `Available`). */
  outStateId?: number;
  /** Who asked for it. */
  actor?: Actor;
  /** The supervisor's override it was approved under. */
  override?: { actor: string; reason: string; overrode?: ErrorCode };
  /** For a deferred change released when its break ended: the deferral's id. */
  deferral?: string;
}
/** Who asks for a change. */
export interface Actor { role: "agent" | "supervisor" | "system"; id?: string }
/** Options of `WasmEngine.transition`: see `TransitionOptions` in the driver's types. */
export interface TransitionOptions {
  reference?: string; reason?: string; actor?: Actor; override?: { actor: string; reason: string };
  defer?: boolean;
}
/** A webhook payload accepted for delivery; `body` is the JSON text exactly as sent and signed. `receiver` is
 * the fingerprint of the receiver URL it was accepted for, `url` that URL when it has no query, fragment or
 * user info (older logs have neither). */
export interface WebhookEntry { eventId: string; body: string; atMs: number; receiver?: string; url?: string }
export interface Delivered { eventId: string; attempts: number; atMs: number }
export interface DeadLetter { eventId: string; attempts: number; lastStatus: number | null; reason: string; atMs: number }
/** A dead letter put back in line for the receiver configured then (`receiver`, `url`: as in `WebhookEntry`). */
export interface Replayed { eventId: string; atMs: number; receiver?: string; url?: string }
export interface Abandoned { idempotencyKey: string; reason: string; atMs: number }
/** Where the audit chain stands. */
export interface ChainHead { nextSeq: number; lastHash: string }
export interface OpenChange { intent: ChangeIntent; unknownRecord: string | null }
/** A dead letter with its payload. */
export interface DeadLetterEntry { entry: WebhookEntry; dead: DeadLetter }
/** An agent's last known state: the one its latest successful audit record set. */
/** The first record of a log a simulation wrote: what follows describes a simulated tenant. */
export interface SimulationRun { seed: number; agents: number; shiftHours: number; atMs: number }
export interface LastState { userId: string; state: string; atMs: number }
/** Everything open at one point of the log. */
export interface Checkpoint {
  chain: ChainHead; open: OpenChange[]; outbox: WebhookEntry[]; deadLetters: DeadLetterEntry[];
  /** Each agent's last known state, by user id (absent in checkpoints written before it existed). */
  lastStates?: LastState[];
  /** Deferred changes still held (absent when there are none). */
  deferred?: OpenDeferral[];
  atMs: number;
}
/** A deferred change the log holds: released at `untilMs`, given up at `deadlineMs` (Unix ms). */
export interface OpenDeferral {
  id: string; userId: string; state: string; reference?: string; actor?: Actor; untilMs: number; deadlineMs: number;
}
/** A deferred change's step on its audit record. */
export interface DeferralNote {
  /** Why it was cancelled: `cancelled` (by its caller) or `replaced` (by a newer change of the agent). */
  cause?: string;
  deadlineMs?: number; id: string;
  phase: "deferred" | "released" | "cancelled" | "expired";
  untilMs?: number;
}

/** One record of the durable log: an audit record (no `kind`), or an operational record named by `kind`. */
export type LogRecord =
  | (AuditRecord & { kind?: undefined })
  | ({ kind: "intent" } & ChangeIntent)
  | ({ kind: "webhook" } & WebhookEntry)
  | ({ kind: "delivered" } & Delivered)
  | ({ kind: "deadLetter" } & DeadLetter)
  | ({ kind: "replayed" } & Replayed)
  | ({ kind: "abandoned" } & Abandoned)
  | ({ kind: "checkpoint" } & Checkpoint)
  | ({ kind: "simulation" } & SimulationRun);

/** What `restore` found in the log and did with it. */
export interface Restored {
  resumed: number; abandoned: number; webhooks: number; deadLetters: number;
  /** Of `webhooks`, payloads accepted for an earlier receiver URL, delivered to that receiver. */
  webhooksToOriginalReceiver: number;
  /** Of `deadLetters`, payloads accepted for an earlier receiver URL, set aside at this restore. */
  webhooksDeadLetteredReceiverChanged: number;
  /** Deferred changes held again (under new transition ids). */
  deferred: number;
}

/** The reference module's `AGENT_STATE_CHANGED` webhook, with additive fields. */
export interface WebhookPayload {
  event: "AGENT_STATE_CHANGED"; eventId: string; timestamp: string;
  data: { userId: string; newState: string; previousState: string | null; reasonCode: string;
          latencyMs: number; idleTimeMs: number; violationCount: number };
}

export interface StateChanged {
  transitionId: number; userId: string; previousState: string | null; newState: string;
  reasonCode: string; latencyMs: number; attempts: number; atMs: number;
  /** The caller's reference of the change, when it gave one. */
  reference?: string;
}
/** Why a transition failed; `breakWindow` is set for a refusal during a named mandatory break. */
export interface TransitionError { code: ErrorCode; message: string; breakWindow?: { startMs: number; endMs: number } }
/** `OUTCOME_UNKNOWN` means the change may have been applied (never a policy violation). */
export interface TransitionFailed {
  transitionId: number; userId: string; requestedState: string;
  error: TransitionError; policyViolation: boolean; latencyMs: number; attempts: number; atMs: number;
  /** The caller's reference of the change, when it gave one. */
  reference?: string;
}
export interface PolicyViolation { transitionId: number; userId: string; requestedState: string; code: ErrorCode; atMs: number }
export interface RetryScheduled {
  transitionId: number | null; userId: string | null; kind: "token" | "schedule" | "breakStatus" | "setState" | "directory" | "unavailableCodes" | "scheduleExport"
    | "agentStates" | "stateHistory";
  retry: number; delayMs: number; status: number | null; atMs: number;
}
export interface ValidationCompleted {
  transitionId: number; userId: string; state: string; valid: boolean;
  reasonCode: string | null; error: TransitionError | null; atMs: number;
}
export interface TokenRequested { requestId: number; atMs: number }
export interface WebhookDelivered { eventId: string; attempts: number; atMs: number }
export interface WebhookRetryScheduled { eventId: string; attempt: number; delayMs: number; status: number | null; atMs: number }
export interface WebhookDeadLettered {
  eventId: string; attempts: number; lastStatus: number | null; reason: string; deadLetters: number; atMs: number;
}
/** `cxone`: a poll showed an agent in a new state (or code, or session), made by us or elsewhere. */
export interface StateObserved {
  userId: string;
  /** The state before, as the history knew it. */
  previousState: string | null;
  /** The new state, as the history names it. */
  state: string;
  /** What the tenant said, and whether the change was ours (`observation.source`). */
  observation: Observation;
  /** The observation's audit record. */
  recordId: string;
  atMs: number;
}
/** `cxone`: a poll ended (or failed): whether observation is alive and how far behind it is. */
export interface ObservationHeartbeat {
  /** Whether this poll succeeded. */
  ok: boolean;
  /** Time since the start of the last successful poll (ms): how old the observed states may be; `null` before
   * the first success. */
  lagMs: number | null;
  /** Whether the observed states are older than `observe.staleAfterMs`. */
  stale: boolean;
  /** Agents known to the observer. */
  agents: number;
  /** Agents whose change this poll reported. */
  changed: number;
  /** Polls that succeeded so far. */
  polls: number;
  /** Why this poll failed. */
  error?: TransitionError;
  atMs: number;
}
/** An `OUTCOME_UNKNOWN` change was settled by what the tenant showed (a new audit record). */
export interface OutcomeSettled {
  userId: string;
  /** The state the change asked for. */
  requestedState: string;
  /** Whether the tenant applied it. */
  applied: boolean;
  /** The `OUTCOME_UNKNOWN` record it settles. */
  settles: string;
  /** The settlement's own audit record. */
  recordId: string;
  /** What it was decided from. */
  evidence: string;
  /** The caller's reference of the change, if it had one. */
  reference?: string;
  atMs: number;
}

/** A READY a due break refused is held until the break ends (asked with `defer`). */
export interface Deferred {
  transitionId: number; userId: string; requestedState: string; deferralId: string;
  /** Its `deferred` audit record. */
  recordId: string;
  /** When it is released to be checked again (the break's end), and when it gives up (Unix ms). */
  untilMs: number; deadlineMs: number;
  reference?: string; atMs: number;
}
/** A deferred change was released and applied. */
export interface DeferredApplied {
  transitionId: number; userId: string; state: string; deferralId: string; reference?: string; atMs: number;
}
/** A deferred change will not be applied: `cancelled`, `replaced`, `expired` (its deadline) or `failed`. */
export interface DeferredCancelled {
  transitionId: number; userId: string; requestedState: string; deferralId: string;
  cause: string; code: ErrorCode; reference?: string; atMs: number;
}

/** An event from the engine. */
export type EngineEvent =
  | ({ type: "stateChanged" } & StateChanged)
  | ({ type: "transitionFailed" } & TransitionFailed)
  | ({ type: "validationCompleted" } & ValidationCompleted)
  | ({ type: "policyViolation" } & PolicyViolation)
  | ({ type: "retryScheduled" } & RetryScheduled)
  | ({ type: "tokenRequested" } & TokenRequested)
  | ({ type: "webhookDelivered" } & WebhookDelivered)
  | ({ type: "webhookRetryScheduled" } & WebhookRetryScheduled)
  | ({ type: "webhookDeadLettered" } & WebhookDeadLettered)
  | ({ type: "stateObserved" } & StateObserved)
  | ({ type: "observationHeartbeat" } & ObservationHeartbeat)
  | ({ type: "outcomeSettled" } & OutcomeSettled)
  | ({ type: "deferred" } & Deferred)
  | ({ type: "deferredApplied" } & DeferredApplied)
  | ({ type: "deferredCancelled" } & DeferredCancelled);

/**
 * One output of the engine: drain until `timeout` (a monotonic deadline, or `null`). Persist every
 * `persist` record before performing any later `transmit` or reporting any later `event`.
 */
export type EngineOutput =
  | { type: "transmit"; value: Transmit }
  | { type: "persist"; value: LogRecord }
  | { type: "event"; value: EngineEvent }
  | { type: "timeout"; value: number | null };

/** What the world tells the engine, as JSON (the engine's typed `handle*` methods take the same facts). */
export type EngineInput =
  | { type: "response"; now: Now; id: number; response: HttpResponse }
  | { type: "transportError"; now: Now; id: number; kind: TransportErrorKind }
  | { type: "accessToken"; now: Now; id: number; accessToken: string | null; expiresInMs: number; error: string | null;
      /** `cxone`: the bases the token source knows (a configured base wins). */
      apiBase?: string; wfmBase?: string }
  | { type: "timeout"; now: Now };

export interface LatencySummary { count: number; averageMs: number; p50Ms: number; p95Ms: number; p99Ms: number; maxMs: number }
export interface AgentMetrics {
  userId: string; currentState: string; currentSinceMs: number; idleTimeMs: number;
  cumulativeIdleMs: number; trackedMs: number; timeInStateMs: Record<string, number>; utilization: number | null;
}
/** The compliance report: the reference module's fields plus counts, percentiles and per-agent metrics. */
export interface ComplianceReport {
  totalTransitions: number; violationFrequency: number; averageLatencyMs: number; logs: AuditRecord[];
  successCount: number; failureCount: number;
  /** Changes that ended `OUTCOME_UNKNOWN` (they may have been applied). */
  unknownOutcomeCount: number;
  /** Records that settled an earlier `OUTCOME_UNKNOWN` one. */
  settledCount: number;
  violationCount: number;
  /** Changes a supervisor's override let past a policy refusal, by the rule passed. Never violations. */
  overridesByRule: Record<string, number>;
  /** Deferred changes: times held, and how they ended. */
  deferrals: { held: number; applied: number; failed: number; expired: number; cancelled: number };
  /** `cxone`: observation records by source (`ours`, `external`); absent when there are none. */
  observedBySource?: Record<string, number>;
  failuresByCode: Record<string, number>; latency: LatencySummary;
  perState: Record<string, { attempts: number; successes: number }>; agents: AgentMetrics[];
  /** Per agent: attempts and outcomes, violations by rule, overrides, deferrals, requests and latency. */
  agentCounts: Record<string, AgentCounts>;
  /** Policy violations by hour (UTC, `YYYY-MM-DDTHH`) and by rule. */
  violationsByHour: Record<string, number>; violationsByRule: Record<string, number>;
  /** Retries scheduled and, of those, after a 429: a running engine's only (absent when rebuilt from a log). */
  retries?: number; rateLimited?: number;
  /** Adherence per agent and for the team, when schedules were given (a simulated day always has it). */
  adherence?: AdherenceReport;
}
export interface AgentCounts {
  attempts: number; successes: number; failures: number; unknownOutcomes: number;
  violationsByRule: Record<string, number>; overrides: number; deferredApplied: number; deferredGivenUp: number;
  requests: number; latencyP50Ms: number; latencyP95Ms: number; latencyMaxMs: number;
  /** A running engine's only (absent when rebuilt from a log). */
  retries?: number; rateLimited?: number;
}
/** Adherence and conformance per agent and for the team over one window (Unix ms). */
export interface AdherenceReport {
  fromMs: number; toMs: number; nowMs: number;
  /** The team's sums (its `exceptions` are left empty: see each agent's, and `exceptionCount`). */
  team: AdherenceFigures | null;
  exceptionCount: number;
  agents: ({ userId: string } & AdherenceFigures)[];
  /** The team's adherence per hour through the window. */
  curve: { fromMs: number; toMs: number; adherence: number | null }[];
}
/** One shift with its activities (Unix ms). */
export interface ScheduledShift {
  startMs: number; endMs: number; activities?: { name: string; startMs: number; endMs: number; mandatoryBreak: boolean }[];
}
/** The adherence rule table: by category pair, by activity name, by unavailable code. */
export type RuleTable = NonNullable<AdherenceInput["rules"]>;

/** Parameters of a simulated day (all optional). */
export interface SimulateDayOptions {
  agents?: number; hours?: number; seed?: number; faults?: number; rateLimitPerMinute?: number;
  breakMinutes?: number; breakEveryHours?: number; unscheduledShare?: number; ruleBreakerShare?: number;
  startMs?: number;
  /** Which API the engine speaks to the simulated tenant (default `seed`; on `cxone` agents are named by
   * their numeric `agentId`). */
  profile?: "seed" | "cxone";
  /** `cxone`: agents, supervisors and the ACD change states on their own (off by default). */
  activity?: ActivityConfig;
  /** `cxone`: the engine observes states changed elsewhere (`OBSERVE_UNSUPPORTED` on seed). */
  observe?: boolean;
  /** Agents ask for READY with `defer`: one a due break refuses is held and applied when the break ends. */
  defer?: boolean;
}
/** The parameters a simulated day ran with. */
export interface WorkdayConfig {
  agents: number; seed: number; startMs: number; shiftHours: number; faultRate: number; unscheduledShare: number;
  ruleBreakerShare: number; ratePerMinute: number; breakMinutes: number; breakEveryHours: number;
  profile: "seed" | "cxone";
  /** `cxone`: agents, supervisors and the ACD acting on their own (absent when off). */
  activity?: ActivityConfig;
  /** `cxone`: whether the engine observed agent states changed elsewhere (absent when not). */
  observe?: boolean;
  /** Whether agents asked for READY with `defer` (absent when not). */
  defer?: boolean;
}
/** What schedule adherence is computed from (see `computeAdherence`). Times are Unix ms. */
export interface AdherenceInput {
  /** The rule table: by category pair (the default when left out), by activity name, by unavailable code. */
  rules?: {
    byCategory?: Partial<Record<ScheduledCategory, Partial<Record<ActualCategory, AdherenceRule>>>>;
    byActivity?: Record<string, Partial<Record<ActualCategory, AdherenceRule>>>;
    byCode?: Partial<Record<ScheduledCategory, Record<string, AdherenceRule>>>;
  };
  shifts?: { startMs: number; endMs: number; activities?: { name: string; startMs: number; endMs: number; mandatoryBreak: boolean }[] }[];
  timeline?: { atMs: number; category: ActualCategory; code?: string }[];
  fromMs: number; toMs: number; nowMs: number;
}
export type ScheduledCategory = "work" | "break" | "off";
export type ActualCategory = "available" | "contact" | "unavailable" | "offline";
/** In, Out or Neutral; a stretch of Out shorter than `thresholdS` counts as In. */
export interface AdherenceRule { verdict: "in" | "out" | "neutral"; thresholdS: number }
/** One stretch of Out at or over its threshold. */
export interface AdherenceException {
  startMs: number; endMs: number; durationMs: number; scheduled: ScheduledCategory; activity?: string;
  actual: ActualCategory; code?: string;
}
/** Adherence (In ÷ (In + Out)) and conformance (productive ÷ scheduled work); `null` when undefined. */
export interface AdherenceFigures {
  adherence: number | null; conformance: number | null;
  inMs: number; outMs: number; neutralMs: number; unruledMs: Record<string, number>;
  scheduledWorkMs: number; productiveMs: number; workOutsideShiftMs: number;
  outByActivityMs: Record<string, number>; exceptions: AdherenceException[];
}
/** `cxone`: the simulated tenant's own activity, in changes per hour (every field has a default). */
export interface ActivityConfig {
  agentChangesPerHour?: number; contactsPerHour?: number; contactMeanS?: number; supervisorChangesPerHour?: number;
  logInOut?: boolean;
}
/** One agent's figures against the simulated tenant's truth. */
export interface AgentAccuracy {
  userId: string; truthChanges: number; utilization: number | null; truthUtilization: number | null;
  workingMs: number; truthWorkingMs: number; idleMs: number; truthIdleMs: number;
  /** The poll interval × (changes + 1): how far working and idle time may be off (ms). */
  boundMs: number;
}
/** `cxone`: how far the engine's utilization and idle time are from the tenant's truth. */
export interface DayAccuracy {
  observed: boolean; intervalMs: number; fromMs: number; toMs: number;
  meanUtilizationError: number; maxUtilizationError: number; meanIdleErrorMs: number; maxIdleErrorMs: number;
  agentsWithinBound: number; agents: AgentAccuracy[];
}
export interface GroundTruth {
  totalRequests: number; requestsByEndpoint: Record<string, number>; responsesByStatus: Record<string, number>;
  rateLimited: number; faultsInjected: number; tokensIssued: number; stateChangesAccepted: number;
  idempotentReplays: number; readyAcceptedDuringBreak: number; acceptedWhileUnscheduled: number;
}
export interface DayCharts {
  hourZeroMs: number; violationsPerHour: number[]; retriesPerHour: number[]; rateLimitedPerHour: number[];
  latencyBucketsMs: number[]; latencyHistogram: number[]; timelines: { userId: string; segments: [number, string][] }[];
}
/** The outcome of a simulated day. */
export interface DaySummary {
  config: WorkdayConfig; report: ComplianceReport; groundTruth: GroundTruth; commands: number;
  apiRequestsPerTransition: number; retries: number; startedMs: number; finishedMs: number; charts: DayCharts;
  /** `cxone`: the engine's figures against the tenant's truth, once the day is done. */
  accuracy?: DayAccuracy;
}
"#;

/// A JS `Error` with a stable `code`.
pub(crate) fn coded(code: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    let _ = js_sys::Reflect::set(&e, &"code".into(), &code.into());
    e.into()
}

pub(crate) fn config_error(e: &ConfigError) -> JsValue {
    coded(e.code().as_str(), &e.to_string())
}

pub(crate) fn bad_input(what: &str, e: impl std::fmt::Display) -> JsValue {
    coded(ErrorCode::InvalidConfig.as_str(), &format!("{what}: {e}"))
}

/// Values cross the boundary as JSON text: serde_json is in the module anyway (the API's bodies are JSON),
/// and one serializer keeps the module smaller than a second, JS-object one would.
pub(crate) fn to_js<T: Serialize + ?Sized>(value: &T) -> JsValue {
    let text = serde_json::to_string(value).expect("engine values serialize");
    js_sys::JSON::parse(&text).expect("serde_json writes valid JSON")
}

pub(crate) fn from_js<T: serde::de::DeserializeOwned>(
    what: &str,
    value: &JsValue,
) -> Result<T, JsValue> {
    let text: String = js_sys::JSON::stringify(value)
        .map_err(|_| bad_input(what, "not serializable to JSON"))?
        .into();
    serde_json::from_str(&text).map_err(|e| bad_input(what, e))
}

/// A moment as JS hands it in: `performance.now()`-like monotonic ms and `Date.now()`-like wall ms.
#[cfg(feature = "console")]
pub(crate) fn now(mono_ms: f64, unix_ms: f64) -> cxone_agent_state_core::Now {
    cxone_agent_state_core::Now::new(time(mono_ms), time(unix_ms))
}

/// Milliseconds from JS: fractions are dropped; negative, NaN and infinite values count as 0.
pub(crate) fn time(ms: f64) -> u64 {
    if ms.is_finite() && ms > 0.0 {
        ms as u64
    } else {
        0
    }
}
