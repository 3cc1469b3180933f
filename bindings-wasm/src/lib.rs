//! WebAssembly binding of the cxone-agent-state core, published as the npm package `cxone-agent-state`.
//!
//! No logic lives here: each export converts JS values to core types and back. The package's JS driver
//! (`bindings-wasm/js/`) performs the HTTP requests with `fetch` and the timers with `setTimeout`; time
//! crosses the boundary as Unix-epoch milliseconds (`number`).
//!
//! Two modules are built from this crate: `console` (the engine and the webhook outbox, what an agent
//! console loads) and `sim` (simulated days, loaded only by simulation pages).
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
  | "AUDIT_LOG_UNAVAILABLE" | "CLIENT_SECRET_IN_BROWSER" | "NOT_INITIALIZED";

/** An `Error` thrown by this package. */
export interface CodedError extends Error { code: ErrorCode }

/** The retry schedule (defaults: the reference module's 3 retries of 1000·2^n + jitter[0,1000) ms). */
export interface RetryPolicy { maxRetries?: number; baseMs?: number; jitterMs?: number; capMs?: number; maxRetryAfterMs?: number }

/** The engine's configuration (every field but `baseUrl` has a default). */
export interface EngineConfig {
  baseUrl: string;
  tokenUrl?: string | null;
  credentials?: { clientId: string; clientSecret: string };
  tokenSource?: "clientCredentials" | "external";
  seed?: number;
  reasonCodes?: { codes: Record<string, string>; fallback: string };
  tokenRefreshMarginMs?: number;
  scheduleTtlMs?: number;
  policyMaxAgeMs?: number;
  retry?: RetryPolicy;
  rateLimit?: { perMinute: number; burst?: number | null };
  requestTimeoutMs?: number;
  history?: { maxEntriesPerAgent: number; maxAgents: number };
  reportLogCapacity?: number;
}

/** An HTTP request for the host to perform. */
export interface HttpRequest {
  id: number; method: "GET" | "POST"; url: string;
  headers: [string, string][]; body: string | null; timeoutMs: number;
}

/** An HTTP answer handed back by request id. */
export interface HttpResponse { id: number; status: number; headers: [string, string][]; body: string }

export type TransportErrorKind = "connect" | "reset" | "timeout" | "other";

/** One audit record: the reference module's fields plus the hash chain. */
export interface AuditRecord {
  seq: number; id: string; timestamp: string; userId: string; previousState: string | null;
  newState: string; reasonCode: string | null; success: boolean; latencyMs: number;
  policyViolation: boolean; errorCode: ErrorCode | null; errorMessage: string | null;
  attempts: number; idempotencyKey: string | null; prevHash: string; hash: string;
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
}
/** Why a transition failed; `breakWindow` is set for a refusal during a named mandatory break. */
export interface TransitionError { code: ErrorCode; message: string; breakWindow?: { startMs: number; endMs: number } }
export interface TransitionFailed {
  transitionId: number; userId: string; requestedState: string;
  error: TransitionError; policyViolation: boolean; latencyMs: number; attempts: number; atMs: number;
}
export interface PolicyViolation { transitionId: number; userId: string; requestedState: string; code: ErrorCode; atMs: number }
export interface RetryScheduled {
  transitionId: number | null; userId: string | null; kind: "token" | "schedule" | "breakStatus" | "setState";
  retry: number; delayMs: number; status: number | null; atMs: number;
}
export interface ValidationCompleted {
  transitionId: number; userId: string; state: string; valid: boolean;
  reasonCode: string | null; error: TransitionError | null; atMs: number;
}

/** An event from the engine. */
export type EngineEvent =
  | ({ type: "stateChanged" } & StateChanged)
  | ({ type: "policyViolation" } & PolicyViolation)
  | ({ type: "transitionFailed" } & TransitionFailed)
  | ({ type: "auditRecord" } & AuditRecord)
  | ({ type: "webhook" } & WebhookPayload)
  | ({ type: "retryScheduled" } & RetryScheduled)
  | ({ type: "validationCompleted" } & ValidationCompleted)
  | { type: "changeIntent"; transitionId: number; userId: string; state: string; reasonCode: string; idempotencyKey: string; atMs: number }
  | { type: "tokenRequested"; requestId: number; atMs: number };

/** One output of the engine: drain until `timeout`. */
export type EngineOutput =
  | { type: "transmit"; value: HttpRequest }
  | { type: "event"; value: EngineEvent }
  | { type: "timeout"; value: number | null };

export interface LatencySummary { count: number; averageMs: number; p50Ms: number; p95Ms: number; p99Ms: number; maxMs: number }
export interface AgentMetrics {
  userId: string; currentState: string; currentSinceMs: number; idleTimeMs: number;
  cumulativeIdleMs: number; trackedMs: number; timeInStateMs: Record<string, number>; utilization: number | null;
}
/** The compliance report: the reference module's fields plus counts, percentiles and per-agent metrics. */
export interface ComplianceReport {
  totalTransitions: number; violationFrequency: number; averageLatencyMs: number; logs: AuditRecord[];
  successCount: number; failureCount: number; violationCount: number;
  failuresByCode: Record<string, number>; latency: LatencySummary;
  perState: Record<string, { attempts: number; successes: number }>; agents: AgentMetrics[];
}

/** Parameters of a simulated day (all optional). */
export interface SimulateDayOptions {
  agents?: number; hours?: number; seed?: number; faults?: number; rateLimitPerMinute?: number;
  breakMinutes?: number; breakEveryHours?: number; unscheduledShare?: number; ruleBreakerShare?: number;
  startMs?: number;
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
  config: Record<string, unknown>; report: ComplianceReport; groundTruth: GroundTruth; commands: number;
  apiRequestsPerTransition: number; retries: number; startedMs: number; finishedMs: number; charts: DayCharts;
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

pub(crate) fn time(ms: f64) -> u64 {
    if ms.is_finite() && ms > 0.0 {
        ms as u64
    } else {
        0
    }
}
