//! The service's HTTP API: routes, handlers, the wire types, authentication and the status table.
//!
//! Handlers are thin: they read and check the request, hand it to the [`AgentStateManager`] and turn its
//! answer into a status and a body. Every decision about a change is the engine's.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cxone_agent_state::core::{
    Actor, ActorRole, AuditRecord, ErrorCode, Event, Override, Record, ReportReplay, StateChanged,
    TransitionError, TransitionOptions,
};
use cxone_agent_state::{store, AgentStateManager, Notice, Progress};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::keys::{Access, ApiKeys};
use super::metrics::Metrics;

/// The service's own stable codes (the engine's are [`ErrorCode`]s). The same strings appear in every
/// error body, the logs and the docs.
pub mod code {
    /// No API key, or one the key file does not hold (401).
    pub const UNAUTHORIZED: &str = "UNAUTHORIZED";
    /// A read-only key asked for a change (403).
    pub const READ_ONLY_KEY: &str = "READ_ONLY_KEY";
    /// The body is not the JSON (or NDJSON) the route takes (400).
    pub const INVALID_JSON: &str = "INVALID_JSON";
    /// The body is larger than `--max-body-bytes` (413).
    pub const BODY_TOO_LARGE: &str = "BODY_TOO_LARGE";
    /// The batch has more rows than `--max-batch` (413).
    pub const BATCH_TOO_LARGE: &str = "BATCH_TOO_LARGE";
    /// The body did not arrive within `--read-timeout-ms` (408).
    pub const REQUEST_TIMEOUT: &str = "REQUEST_TIMEOUT";
    /// No such route, no such agent, or no deferred change to cancel (404).
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// A query parameter is not what the route takes (400).
    pub const INVALID_QUERY: &str = "INVALID_QUERY";
    /// One row of a batch is not a change request; the other rows go on.
    pub const MALFORMED_ROW: &str = super::super::super::fail::code::MALFORMED_ROW;
    /// The audit log could not be read (a report over a window, an event stream resumed).
    pub const AUDIT_LOG_UNAVAILABLE: &str = "AUDIT_LOG_UNAVAILABLE";
}

/// The HTTP status of an engine code: the table `docs/serve.md` shows.
///
/// | status | codes |
/// |---|---|
/// | 409 | policy refusals (`MANDATORY_BREAK_VIOLATION`, `AGENT_NOT_SCHEDULED`), `STATE_CONFLICT`, `CONFLICT`, `DEFERRAL_CANCELLED` |
/// | 422 | the request names something invalid or unknown: `INVALID_*` of a change, `UNKNOWN_AGENT`, `USER_NOT_FOUND`, `UNKNOWN_REASON_CODE`, `BAD_REQUEST`, `REJECTED` |
/// | 502 | the tenant refused us or answered nonsense: `UNAUTHORIZED`, `AUTH_FAILED`, `FORBIDDEN`, `BAD_RESPONSE`, `DISCOVERY_FAILED`, `TOKEN_EXPIRED` |
/// | 503 | try again later (with `Retry-After`): `BUSY`, `RATE_LIMITED`, `CLOSED` |
/// | 504 | the tenant did not answer in time, after every retry: `UPSTREAM_UNAVAILABLE` |
/// | 500 | `OUTCOME_UNKNOWN` (the change may have been applied), `AUDIT_LOG_UNAVAILABLE`, anything else |
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode as C;
    match code {
        c if c.is_policy_violation() => StatusCode::CONFLICT,
        C::StateConflict | C::Conflict | C::DeferralCancelled => StatusCode::CONFLICT,
        C::InvalidState
        | C::InvalidUserId
        | C::InvalidReference
        | C::InvalidActor
        | C::InvalidOverride
        | C::UnknownAgent
        | C::UserNotFound
        | C::UnknownReasonCode
        | C::BadRequest
        | C::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
        C::Unauthorized
        | C::AuthFailed
        | C::Forbidden
        | C::BadResponse
        | C::DiscoveryFailed
        | C::TokenExpired => StatusCode::BAD_GATEWAY,
        C::Busy | C::RateLimited | C::Closed => StatusCode::SERVICE_UNAVAILABLE,
        C::UpstreamUnavailable => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Seconds a client should wait before trying a 503 again.
const RETRY_AFTER_SECS: u64 = 1;

/// What the service shares between its handlers.
pub struct AppState {
    /// The engine's host.
    pub manager: Arc<AgentStateManager>,
    /// The API keys.
    pub keys: ApiKeys,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// Limits on what a request may be.
    pub limits: Limits,
    /// The durable log (for reports over a window and resumed event streams).
    pub audit_log: PathBuf,
    /// `/metrics` needs a key.
    pub metrics_need_key: bool,
    /// The service holds a token and takes changes (see [`readiness`]).
    pub token_ready: Arc<AtomicBool>,
    /// Set when the service is asked to stop: event streams end.
    pub stopping: watch::Receiver<bool>,
}

/// Limits on requests.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest body, in bytes.
    pub max_body_bytes: usize,
    /// Most rows in one batch.
    pub max_batch: usize,
    /// Longest a body may take to arrive.
    pub read_timeout: Duration,
}

type Shared = Arc<AppState>;

/// Who called: the API key's name and what it may do (set by the authentication layer).
#[derive(Clone, Debug)]
pub struct Caller {
    /// The key's name.
    pub name: String,
}

/// An error answer: `{success: false, code, message}` with a status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Always false.
    pub success: bool,
    /// The stable code.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                success: false,
                code: self.code,
                message: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            retry_after(response.headers_mut());
        }
        response
    }
}

fn retry_after(headers: &mut HeaderMap) {
    headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
}

/// A state change asked for: the target state and the change's options.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateRequest {
    /// The target state (`READY`, `NOT_READY`, `PAUSED`, `IDLE`, …).
    pub state: String,
    /// The reason code to set it with, instead of the configured one (cxone: an unavailable code's name).
    #[serde(default)]
    pub reason: Option<String>,
    /// The caller's reference, kept in every audit record of the change (1 to 128 printable ASCII).
    #[serde(default)]
    pub reference: Option<String>,
    /// Who asks: `{role: agent|supervisor|system, id?}`. Default: the system, named by the API key.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub actor: Option<Actor>,
    /// A supervisor's override of a policy refusal: `{actor, reason}`.
    #[serde(default, rename = "override")]
    #[schema(value_type = Option<Object>)]
    pub override_: Option<Override>,
    /// Hold a READY a due break refuses until the break ends (answered 202).
    #[serde(default)]
    pub defer: bool,
}

impl StateRequest {
    fn options(&self, caller: &Caller) -> TransitionOptions {
        let mut options = TransitionOptions::default();
        options.reason = self.reason.clone();
        options.reference = self.reference.clone();
        options.actor = self.actor.clone().or_else(|| {
            // A change with an override names its supervisor (the engine's default); otherwise the key.
            self.override_.is_none().then(|| Actor {
                id: Some(caller.name.clone()),
                role: ActorRole::System,
            })
        });
        options.override_ = self.override_.clone();
        options.defer = self.defer;
        options
    }
}

/// One row of a batch: a state request for an agent.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchRow {
    /// The agent.
    pub user_id: String,
    /// The change.
    #[serde(flatten)]
    pub change: StateRequest,
}

/// A batch as JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The rows, applied in this order (per agent, in order).
    #[schema(value_type = Vec<Object>)]
    pub transitions: Vec<serde_json::Value>,
}

/// The outcome of one change: applied, deferred or not.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// Applied (true), or not (yet).
    pub success: bool,
    /// The agent.
    pub user_id: String,
    /// The state asked for.
    pub state: String,
    /// `OK`, `DEFERRED` or the stable code of why not.
    pub code: String,
    /// For a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The HTTP status this outcome has on its own (a batch row carries it).
    pub status: u16,
    /// Refused by compliance policy.
    pub policy_violation: bool,
    /// The state before (applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<String>,
    /// The reason code sent (applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// From command to confirmation (applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// API requests sent (applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// The caller's reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The deferral's id (deferred).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferral_id: Option<String>,
    /// When the deferred change is checked again, Unix ms (deferred).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// When the deferred change gives up, Unix ms (deferred).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Its row in the batch, from 0 (batches only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
}

impl Outcome {
    fn base(user: &str, state: &str, code: &str, status: StatusCode) -> Self {
        Self {
            success: false,
            user_id: user.to_owned(),
            state: state.to_owned(),
            code: code.to_owned(),
            message: None,
            status: status.as_u16(),
            policy_violation: false,
            previous_state: None,
            reason_code: None,
            latency_ms: None,
            attempts: None,
            reference: None,
            deferral_id: None,
            until_ms: None,
            deadline_ms: None,
            row: None,
        }
    }

    fn applied(c: StateChanged) -> Self {
        Self {
            success: true,
            previous_state: c.previous_state,
            reason_code: Some(c.reason_code),
            latency_ms: Some(c.latency_ms),
            attempts: Some(c.attempts),
            reference: c.reference,
            ..Self::base(&c.user_id, &c.new_state, "OK", StatusCode::OK)
        }
    }

    fn failed(user: &str, state: &str, e: &TransitionError) -> Self {
        Self {
            message: Some(e.message.clone()),
            policy_violation: e.code.is_policy_violation(),
            ..Self::base(user, state, e.code.as_str(), status_of(e.code))
        }
    }

    fn of(user: &str, state: &str, progress: Progress) -> Self {
        match progress {
            Progress::Finished(Ok(c)) => Self::applied(c),
            Progress::Finished(Err(e)) => Self::failed(user, state, &e),
            Progress::Deferred(d) => Self {
                message: Some(
                    "held until the agent's break ends; it is checked again and sent then"
                        .to_owned(),
                ),
                deferral_id: Some(d.deferral_id),
                until_ms: Some(d.until_ms),
                deadline_ms: Some(d.deadline_ms),
                reference: d.reference,
                ..Self::base(user, state, "DEFERRED", StatusCode::ACCEPTED)
            },
            _ => Self::base(user, state, "UNKNOWN", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    fn malformed(row: usize, message: String) -> Self {
        Self {
            message: Some(message),
            row: Some(row),
            ..Self::base("", "", code::MALFORMED_ROW, StatusCode::BAD_REQUEST)
        }
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            retry_after(response.headers_mut());
        }
        response
    }
}

/// Reads a body within the size limit and the read timeout.
async fn read_body(limits: &Limits, body: Body) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(
        limits.read_timeout,
        axum::body::to_bytes(body, limits.max_body_bytes),
    )
    .await
    {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            code::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {} ms",
                limits.read_timeout.as_millis()
            ),
        )),
        Ok(Err(e)) => {
            let too_large =
                std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .any(|e| e.is::<http_body_util::LengthLimitError>());
            Err(if too_large {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    code::BODY_TOO_LARGE,
                    format!("the body is larger than {} bytes", limits.max_body_bytes),
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    code::INVALID_JSON,
                    format!("the body could not be read: {e}"),
                )
            })
        }
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_JSON,
            format!("the body is not {what}: {e}"),
        )
    })
}

/// Hands one change to the engine (a `BUSY` engine answers at once; see [`run_batch`] for a batch).
async fn submit(
    manager: &AgentStateManager,
    user: &str,
    request: &StateRequest,
    caller: &Caller,
) -> Result<cxone_agent_state::PendingChange, TransitionError> {
    manager
        .submit_transition_with(user, &request.state, &request.options(caller))
        .await
}

/// Changes an agent's state.
///
/// Answers once the tenant applied the change and its audit record is durable (200), once it is deferred
/// (202), or with the stable code of why not (see the status table).
#[utoipa::path(
    post,
    path = "/v1/agents/{id}/state",
    params(("id" = String, Path, description = "The agent (seed: the user id; cxone: the agentId)")),
    request_body = StateRequest,
    responses(
        (status = 200, description = "Applied", body = Outcome),
        (status = 202, description = "Deferred until the break ends", body = Outcome),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 401, description = "No or wrong API key", body = ErrorBody),
        (status = 403, description = "A read-only key", body = ErrorBody),
        (status = 409, description = "Refused by compliance policy, or the state conflicts", body = Outcome),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Invalid or unknown state, agent, reason, actor or override", body = Outcome),
        (status = 500, description = "OUTCOME_UNKNOWN: the change may have been applied", body = Outcome),
        (status = 502, description = "The tenant refused our credentials or answered nonsense", body = Outcome),
        (status = 503, description = "Busy, rate limited or closing: try again (Retry-After)", body = Outcome),
        (status = 504, description = "The tenant did not answer, after every retry", body = Outcome),
    ),
    security(("api_key" = [])),
    tag = "changes"
)]
async fn post_state(
    State(app): State<Shared>,
    Path(id): Path<String>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&app.limits, body).await?;
    let request: StateRequest = parse_json(&bytes, "a state request {state, reason?, …}")?;
    let progress = match submit(&app.manager, &id, &request, &caller).await {
        Ok(pending) => pending.outcome_unless_deferred().await,
        Err(e) => Progress::Finished(Err(e)),
    };
    Ok(Outcome::of(&id, &request.state, progress).into_response())
}

/// Changes many agents' states, in order.
///
/// The body is `{"transitions": [{userId, state, reason?, …}]}` (JSON) or the same rows one per line
/// (`Content-Type: application/x-ndjson`). The answer streams one outcome per row as NDJSON, in input
/// order, each with its `row` and `status`; `Accept: application/json` (or `?format=json`) returns them
/// whole as `{"results": [...]}`. A row that is not a change request gets `MALFORMED_ROW`; the others go on.
#[utoipa::path(
    post,
    path = "/v1/transitions",
    request_body(content = BatchRequest, description = "JSON, or NDJSON rows with Content-Type application/x-ndjson"),
    params(("format" = Option<String>, Query, description = "`json` for one JSON answer, `ndjson` (default) for a stream")),
    responses(
        (status = 200, description = "One outcome per row, in order (NDJSON, or JSON when asked)", body = Vec<Outcome>),
        (status = 400, description = "Not JSON or NDJSON", body = ErrorBody),
        (status = 401, description = "No or wrong API key", body = ErrorBody),
        (status = 403, description = "A read-only key", body = ErrorBody),
        (status = 413, description = "Body or batch too large", body = ErrorBody),
    ),
    security(("api_key" = [])),
    tag = "changes"
)]
async fn post_transitions(
    State(app): State<Shared>,
    Query(query): Query<FormatQuery>,
    headers: HeaderMap,
    axum::Extension(caller): axum::Extension<Caller>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&app.limits, body).await?;
    let ndjson_in = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-ndjson"));
    let rows: Vec<serde_json::Value> = if ndjson_in {
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                code::INVALID_JSON,
                format!("the body is not UTF-8: {e}"),
            )
        })?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or(serde_json::Value::Null))
            .collect()
    } else {
        parse_json::<BatchRequest>(&bytes, "a batch {\"transitions\": [...]}")?.transitions
    };
    if rows.len() > app.limits.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::BATCH_TOO_LARGE,
            format!(
                "the batch has {} rows; at most {} are taken (nothing was done)",
                rows.len(),
                app.limits.max_batch
            ),
        ));
    }
    let whole = query.format.as_deref() == Some("json")
        || (query.format.is_none()
            && headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/json") && !v.contains("ndjson")));
    // The work runs on its own task: a client that goes away stops reading, not the changes it asked for.
    let (tx, rx) = mpsc::channel::<Outcome>(256);
    tokio::spawn(run_batch(app.manager.clone(), rows, caller, tx));
    if whole {
        let mut rx = rx;
        let mut results = Vec::new();
        while let Some(o) = rx.recv().await {
            results.push(o);
        }
        return Ok(Json(serde_json::json!({ "results": results })).into_response());
    }
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let o = rx.recv().await?;
        let mut line = serde_json::to_vec(&o).expect("outcomes serialize");
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// A batch row on its way to its answer: a change the engine took (or refused at once), or a row that
/// was not a change request.
enum Slot {
    Change {
        row: usize,
        user: String,
        state: String,
        pending: Result<cxone_agent_state::PendingChange, TransitionError>,
    },
    Answered(Outcome),
}

/// Submits the rows in order and sends their outcomes in order, as each is known.
///
/// Two tasks: this one hands the rows to the engine, a run of well-formed rows at a time in one step of
/// the driver (one log sync for all their intents); the finisher waits for each row's outcome in input
/// order and streams it. When the engine's queue of open changes is full (`BUSY`), the submitter waits for
/// the finisher to answer a row and offers the rest again, so a batch larger than the queue is paced, not
/// refused. A row `BUSY` with nothing of the batch open (the queue is full of other callers' changes)
/// answers `BUSY`.
async fn run_batch(
    manager: Arc<AgentStateManager>,
    rows: Vec<serde_json::Value>,
    caller: Caller,
    tx: mpsc::Sender<Outcome>,
) {
    let (slots, mut queued) = mpsc::unbounded_channel::<Slot>();
    let (answered_tx, mut answered) = watch::channel(0usize);
    let finisher = tokio::spawn(async move {
        let mut count = 0usize;
        while let Some(slot) = queued.recv().await {
            let o = match slot {
                Slot::Change {
                    row,
                    user,
                    state,
                    pending,
                } => {
                    let progress = match pending {
                        Ok(p) => p.outcome_unless_deferred().await,
                        Err(e) => Progress::Finished(Err(e)),
                    };
                    let mut o = Outcome::of(&user, &state, progress);
                    o.row = Some(row);
                    o
                }
                Slot::Answered(o) => o,
            };
            count += 1;
            let _ = answered_tx.send(count);
            // A client that went away no longer reads: the changes still finish.
            let _ = tx.send(o).await;
        }
    });
    // Each row as a change and its options, or why it is not one.
    let parsed: Vec<Result<(BatchRow, TransitionOptions), String>> = rows
        .into_iter()
        .map(|v| {
            serde_json::from_value::<BatchRow>(v)
                .map(|r| {
                    let options = r.change.options(&caller);
                    (r, options)
                })
                .map_err(|e| format!("not a change request {{userId, state, …}}: {e}"))
        })
        .collect();
    let (mut next, mut slots_sent) = (0usize, 0usize);
    while next < parsed.len() {
        let run_end = parsed[next..]
            .iter()
            .position(Result::is_err)
            .map_or(parsed.len(), |k| next + k);
        if run_end == next {
            let message = parsed[next].as_ref().err().cloned().unwrap_or_default();
            let _ = slots.send(Slot::Answered(Outcome::malformed(next, message)));
            slots_sent += 1;
            next += 1;
            continue;
        }
        let run = parsed[next..run_end]
            .iter()
            .flatten()
            .map(|(r, options)| (r.user_id.as_str(), r.change.state.as_str(), options));
        let answers = manager.submit_transitions(run).await;
        for pending in answers {
            let busy = matches!(&pending, Err(e) if e.code == ErrorCode::Busy);
            // Rows of this batch still open: one of them will make room.
            if busy && *answered.borrow_and_update() < slots_sent {
                let _ = answered.changed().await;
                break;
            }
            let (r, _) = parsed[next].as_ref().expect("a run holds well-formed rows");
            let _ = slots.send(Slot::Change {
                row: next,
                user: r.user_id.clone(),
                state: r.change.state.clone(),
                pending,
            });
            slots_sent += 1;
            next += 1;
        }
    }
    drop(slots);
    let _ = finisher.await;
}

/// `?format=`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FormatQuery {
    format: Option<String>,
}

/// Every agent the engine knows: current state, where it is known from and how old it is.
#[utoipa::path(
    get,
    path = "/v1/agents",
    responses(
        (status = 200, description = "The snapshot", body = Object),
        (status = 401, description = "No or wrong API key", body = ErrorBody),
    ),
    security(("api_key" = [])),
    tag = "agents"
)]
async fn get_agents(State(app): State<Shared>) -> Response {
    let agents = app.manager.agents().await;
    Json(serde_json::json!({ "agents": agents })).into_response()
}

/// One agent: current state, recent history, idle time, utilization, adherence so far, pending deferred
/// change.
#[utoipa::path(
    get,
    path = "/v1/agents/{id}",
    params(("id" = String, Path, description = "The agent")),
    responses(
        (status = 200, description = "The agent", body = Object),
        (status = 401, description = "No or wrong API key", body = ErrorBody),
        (status = 404, description = "The engine knows nothing of this agent", body = ErrorBody),
    ),
    security(("api_key" = [])),
    tag = "agents"
)]
async fn get_agent(
    State(app): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match app.manager.agent_view(&id).await {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            code::NOT_FOUND,
            format!("no change of agent {id:?} was made or observed"),
        )),
    }
}

/// Cancels the agent's deferred change (audited, `DEFERRAL_CANCELLED`).
#[utoipa::path(
    delete,
    path = "/v1/agents/{id}/deferred",
    params(("id" = String, Path, description = "The agent")),
    responses(
        (status = 200, description = "Cancelled", body = Object),
        (status = 401, description = "No or wrong API key", body = ErrorBody),
        (status = 403, description = "A read-only key", body = ErrorBody),
        (status = 404, description = "No deferred change is held for the agent", body = ErrorBody),
    ),
    security(("api_key" = [])),
    tag = "changes"
)]
async fn delete_deferred(
    State(app): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if app.manager.cancel_deferred(&id).await {
        Ok(
            Json(
                serde_json::json!({ "success": true, "userId": id, "code": "DEFERRAL_CANCELLED" }),
            )
            .into_response(),
        )
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            code::NOT_FOUND,
            format!("no deferred change is held for agent {id:?}"),
        ))
    }
}

/// `GET /v1/report` parameters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    /// `json` (default) or `csv`.
    format: Option<String>,
    /// Only records at or after this time (RFC 3339): the report is rebuilt from the audit log.
    from: Option<String>,
    /// Only records before this time (RFC 3339).
    to: Option<String>,
}

/// The compliance report: the running engine's, or rebuilt from the audit log over `from`..`to`.
#[utoipa::path(
    get,
    path = "/v1/report",
    params(ReportQuery),
    responses(
        (status = 200, description = "The report (JSON, or CSV `section,key,value` rows)", body = Object),
        (status = 400, description = "A bad query", body = ErrorBody),
        (status = 401, description = "No or wrong API key", body = ErrorBody),
    ),
    security(("api_key" = [])),
    tag = "reports"
)]
async fn get_report(
    State(app): State<Shared>,
    query: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, code::INVALID_QUERY, e.body_text()))?;
    let time = |name: &str, v: &Option<String>| -> Result<Option<u64>, ApiError> {
        v.as_deref()
            .map(|s| {
                cxone_agent_state::core::parse_iso8601(s).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        code::INVALID_QUERY,
                        format!("{name} is not an RFC 3339 time: {s:?}"),
                    )
                })
            })
            .transpose()
    };
    let (from, to) = (time("from", &query.from)?, time("to", &query.to)?);
    let report = if from.is_none() && to.is_none() {
        app.manager.compliance_report().await.ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Closed.as_str(),
                "the service is stopping",
            )
        })?
    } else {
        window_report(app.audit_log.clone(), from, to).await?
    };
    match query.format.as_deref() {
        None | Some("json") => Ok(Json(report).into_response()),
        Some("csv") => Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            report.to_csv(),
        )
            .into_response()),
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_QUERY,
            format!("format is json or csv, not {other:?}"),
        )),
    }
}

/// The report of the audit records stamped in `[from, to)`, rebuilt from the log read line by line (the log
/// is never held in memory whole).
async fn window_report(
    path: PathBuf,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<cxone_agent_state::core::ComplianceReport, ApiError> {
    tokio::task::spawn_blocking(move || {
        let mut replay = ReportReplay::new(usize::MAX);
        for r in store::audit_records(std::fs::File::open(path)?) {
            let r = r?;
            let at = cxone_agent_state::core::parse_iso8601(&r.timestamp).unwrap_or(0);
            if from.is_none_or(|f| at >= f) && to.is_none_or(|t| at < t) {
                replay.ingest(&r);
            }
        }
        Ok::<_, std::io::Error>(replay.report())
    })
    .await
    .expect("reading does not panic")
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::AUDIT_LOG_UNAVAILABLE,
            format!("the audit log could not be read: {e}"),
        )
    })
}

/// Audit records as they become durable, as server-sent events (`event: audit`, `id:` the record's seq),
/// and observation heartbeats (`event: heartbeat`, no id). A client that reconnects with `Last-Event-ID`
/// gets every audit record after that seq from the log first, then the live ones, none twice.
#[utoipa::path(
    get,
    path = "/v1/events",
    params(("Last-Event-ID" = Option<u64>, Header, description = "Resume after this audit record seq")),
    responses(
        (status = 200, description = "text/event-stream", content_type = "text/event-stream", body = String),
        (status = 401, description = "No or wrong API key", body = ErrorBody),
    ),
    security(("api_key" = [])),
    tag = "events"
)]
async fn get_events(State(app): State<Shared>, headers: HeaderMap) -> Result<Response, ApiError> {
    let after: Option<u64> = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        code::INVALID_QUERY,
                        "Last-Event-ID is the seq of an audit record (a number)",
                    )
                })?,
        ),
    };
    // Subscribe first, then read the log: nothing falls between the two; duplicates are skipped by seq.
    let live = app.manager.subscribe();
    let backlog = match after {
        Some(after) => records_after(app.audit_log.clone(), after).await?.boxed(),
        None => futures_util::stream::empty().boxed(),
    };
    let stream = events_stream(
        backlog,
        live,
        after,
        app.stopping.clone(),
        app.metrics.clone(),
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn audit_event(r: &AuditRecord) -> SseEvent {
    SseEvent::default()
        .event("audit")
        .id(r.seq.to_string())
        .data(serde_json::to_string(r).expect("records serialize"))
}

/// What the live part of an event stream yields.
enum Live {
    Audit(Box<AuditRecord>),
    Heartbeat(String),
}

/// The audit records of the log after seq `after`, read as the client takes them: a bounded channel from a
/// reading thread, so a resume from the start of a large log holds a few hundred records in memory, never
/// the log. The log is opened before the answer starts (a log that cannot be read is a 500); a read that
/// fails later ends the stream, and the client resumes from its last id.
async fn records_after(
    path: PathBuf,
    after: u64,
) -> Result<impl futures_util::Stream<Item = AuditRecord>, ApiError> {
    let file = tokio::task::spawn_blocking(move || std::fs::File::open(path))
        .await
        .expect("opening does not panic")
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                code::AUDIT_LOG_UNAVAILABLE,
                format!("the audit log could not be read: {e}"),
            )
        })?;
    let (tx, rx) = mpsc::channel::<AuditRecord>(256);
    tokio::task::spawn_blocking(move || {
        for a in store::audit_records(file).map_while(Result::ok) {
            // The client went away: stop reading.
            if a.seq > after && tx.blocking_send(a).is_err() {
                return;
            }
        }
    });
    Ok(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    }))
}

fn events_stream(
    backlog: futures_util::stream::BoxStream<'static, AuditRecord>,
    live: broadcast::Receiver<Notice>,
    after: Option<u64>,
    stopping: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) -> impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>> {
    let backlog = backlog.map(|r| Live::Audit(Box::new(r)));
    let live = futures_util::stream::unfold((live, stopping), move |(mut rx, mut stopping)| {
        let metrics = metrics.clone();
        async move {
            loop {
                let notice = tokio::select! {
                    n = rx.recv() => n,
                    _ = stopping.wait_for(|s| *s) => return None,
                };
                match notice {
                    Ok(Notice::Persisted(Record::Audit(r))) => {
                        return Some((Live::Audit(Box::new(r)), (rx, stopping)));
                    }
                    Ok(Notice::Event(Event::ObservationHeartbeat(h))) => {
                        let data = serde_json::to_string(&h).expect("events serialize");
                        return Some((Live::Heartbeat(data), (rx, stopping)));
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        metrics.missed(n);
                        // A stream that missed records must not look whole: it ends, and the client resumes
                        // from its Last-Event-ID, which the log serves.
                        return None;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    // The newest seq sent: the live part skips what the backlog already sent.
    let mut last = after;
    backlog.chain(live).filter_map(move |item| {
        let out = match item {
            Live::Audit(r) if last.is_none_or(|l| r.seq > l) => {
                last = Some(r.seq);
                Some(Ok(audit_event(&r)))
            }
            Live::Audit(_) => None,
            Live::Heartbeat(data) => Some(Ok(SseEvent::default().event("heartbeat").data(data))),
        };
        async move { out }
    })
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive", body = Object)), tag = "operations")]
async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// The readiness checks.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// Every check passed.
    pub ready: bool,
    /// An access token is held.
    pub token: bool,
    /// The durable log is writable.
    pub log: bool,
    /// The engine takes changes and the outbox is open.
    pub accepting: bool,
}

/// Readiness: a token is held, the log is writable and the outbox is open (503 otherwise).
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: see which check failed", body = Readiness),
    ),
    tag = "operations"
)]
async fn readyz(State(app): State<Shared>) -> Response {
    let status = app.manager.status().await;
    let r = Readiness {
        token: status.is_some_and(|s| s.has_token),
        log: !app.manager.log_failed(),
        accepting: status.is_some_and(|s| s.accepting) && !*app.stopping.borrow(),
        ready: false,
    };
    app.token_ready.store(r.token, Ordering::Relaxed);
    let ready = r.token && r.log && r.accepting;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(Readiness { ready, ..r })).into_response()
}

/// Prometheus text exposition.
#[utoipa::path(
    get,
    path = "/metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)),
    tag = "operations"
)]
async fn metrics(State(app): State<Shared>) -> Response {
    let status = app.manager.status().await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(status),
    )
        .into_response()
}

/// The OpenAPI document of every route.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "cxone-agent-state service",
        description = "Changes NICE CXone agent states under shift and break compliance. Every /v1 route needs `Authorization: Bearer <API key>`."
    ),
    modifiers(&SecurityAddon)
)]
struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The router, with its OpenAPI document (served at `/openapi.json`) built from the same routes.
pub fn router(app: Shared) -> axum::Router {
    let (v1, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(post_state))
        .routes(routes!(post_transitions))
        .routes(routes!(get_agents))
        .routes(routes!(get_agent))
        .routes(routes!(delete_deferred))
        .routes(routes!(get_report))
        .routes(routes!(get_events))
        .split_for_parts();
    let v1 = v1.layer(middleware::from_fn_with_state(app.clone(), authenticate));
    let (open, open_doc) = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .split_for_parts();
    let (metrics_route, metrics_doc) = OpenApiRouter::new()
        .routes(routes!(metrics))
        .split_for_parts();
    let metrics_route = if app.metrics_need_key {
        metrics_route.layer(middleware::from_fn_with_state(app.clone(), authenticate))
    } else {
        metrics_route
    };
    doc.merge(open_doc);
    doc.merge(metrics_doc);
    doc.paths.paths.insert(
        "/openapi.json".to_owned(),
        utoipa::openapi::path::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .summary(Some("This document"))
                .tag("operations")
                .response(
                    "200",
                    utoipa::openapi::Response::new("The OpenAPI document"),
                ),
        ),
    );
    let doc = Arc::new(doc);
    let openapi = axum::Router::new().route(
        "/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { Json(doc.as_ref().clone()) }
        }),
    );
    v1.merge(open)
        .merge(metrics_route)
        .merge(openapi)
        .fallback(not_found)
        .with_state(app.clone())
        .layer(middleware::from_fn_with_state(app, observe_request))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, code::NOT_FOUND, "no such route")
}

/// Checks the API key: `Authorization: Bearer KEY`. A missing or wrong key is a 401 (counted); a read-only
/// key reaches only `GET`.
async fn authenticate(
    State(app): State<Shared>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, key) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
        });
    let Some(entry) = presented.and_then(|k| app.keys.check(k)) else {
        app.metrics.unauthorized();
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            code::UNAUTHORIZED,
            if presented.is_some() {
                "the API key is not one the service holds"
            } else {
                "an API key is needed: Authorization: Bearer <key>"
            },
        ));
    };
    if entry.access == Access::ReadOnly && request.method() != Method::GET {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            code::READ_ONLY_KEY,
            format!("the key {} is read-only: it reaches only GET", entry.name),
        ));
    }
    tracing::Span::current().record("caller", entry.name.as_str());
    request.extensions_mut().insert(Caller {
        name: entry.name.clone(),
    });
    Ok(next.run(request).await)
}

/// A request id (the caller's `X-Request-Id` when it is a sane one, else a fresh UUID), a span carrying
/// it, a log line per request, and the request's count by route and status.
async fn observe_request(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        route = %route,
        caller = tracing::field::Empty
    );
    let mut response = {
        use tracing::Instrument;
        next.run(request).instrument(span.clone()).await
    };
    let status = response.status();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            "answered"
        );
    });
    app.metrics
        .http(&route, method.as_str(), status.as_u16(), elapsed);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// Keeps asking for a token until one is held (after 0.25 s, doubling to 30 s), and again whenever it is lost, so
/// the service is ready before its first change and `/readyz` tells the truth.
pub async fn readiness(
    manager: Arc<AgentStateManager>,
    ready: Arc<AtomicBool>,
    mut stopping: watch::Receiver<bool>,
) {
    const FIRST: Duration = Duration::from_millis(250);
    let mut wait = FIRST;
    loop {
        let has = manager.status().await.is_some_and(|s| s.has_token);
        ready.store(has, Ordering::Relaxed);
        if has {
            wait = FIRST;
        } else {
            manager.prepare_token().await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
        tokio::select! {
            () = tokio::time::sleep(if has { Duration::from_secs(5) } else { wait }) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_class_of_status() {
        use ErrorCode as C;
        for &code in C::ALL {
            let status = status_of(code);
            if code.is_policy_violation() {
                assert_eq!(status, StatusCode::CONFLICT, "{code:?}");
            }
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code:?} is an error: {status}"
            );
        }
        assert_eq!(status_of(C::MandatoryBreakViolation), StatusCode::CONFLICT);
        assert_eq!(status_of(C::AgentNotScheduled), StatusCode::CONFLICT);
        assert_eq!(status_of(C::InvalidState), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status_of(C::Busy), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of(C::RateLimited), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            status_of(C::UpstreamUnavailable),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(status_of(C::AuthFailed), StatusCode::BAD_GATEWAY);
        assert_eq!(
            status_of(C::OutcomeUnknown),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn a_busy_outcome_tells_when_to_try_again_and_a_deferral_is_accepted() {
        let busy = TransitionError::new(ErrorCode::Busy, "full");
        let response = Outcome::failed("a", "READY", &busy).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let refused = TransitionError::new(ErrorCode::MandatoryBreakViolation, "on break");
        let o = Outcome::failed("a", "READY", &refused);
        assert!(o.policy_violation && !o.success);
        assert_eq!(o.status, 409);
    }

    /// A batch three times larger than the engine's queue of open changes, with a malformed row and two
    /// rows for the same agent: every row answers in input order, none `BUSY` (the batch waits for room),
    /// the malformed one alone fails, and the tenant ends in each agent's last state.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_larger_than_the_engine_queue_is_paced_in_order() {
        use cxone_agent_state::{now_ms, ManagerConfig};
        use cxone_agent_state_core::sim::{AgentPlan, SimConfig, SimTenant};
        use cxone_agent_state_core::{EngineConfig, Secret};

        const QUEUE: usize = 4;
        let now = now_ms();
        let sim = SimConfig {
            latency_ms: 5,
            latency_jitter_ms: 5,
            rate_per_minute: 600_000,
            burst: 10_000,
            ..SimConfig::default()
        };
        let (client_id, secret) = (sim.client_id.clone(), sim.client_secret.clone());
        let mut tenant = SimTenant::new(sim);
        for i in 0..10 {
            tenant.add_agent(AgentPlan::on_shift(
                format!("a{i}"),
                now - 3_600_000,
                now + 3_600_000,
            ));
        }
        let server = cxone_agent_state_sim_server::start(([127, 0, 0, 1], 0).into(), tenant)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut engine = EngineConfig::new(server.base_url(), client_id, Secret::new(secret));
        engine.max_open_changes = QUEUE;
        engine.rate_limit.per_minute = 600_000;
        let manager = Arc::new(
            AgentStateManager::start(ManagerConfig::new(
                engine,
                Some(dir.path().join("audit.jsonl")),
            ))
            .await
            .unwrap(),
        );
        let mut rows: Vec<serde_json::Value> = (0..12)
            .map(|i| serde_json::json!({"userId": format!("a{}", i % 10), "state": "READY"}))
            .collect();
        rows[10] = serde_json::json!({"userId": "a0", "state": "NOT_READY"});
        rows.insert(5, serde_json::json!({"user": "a5"}));
        let (tx, mut rx) = mpsc::channel(4);
        let caller = Caller {
            name: "test".to_owned(),
        };
        tokio::spawn(run_batch(manager.clone(), rows.clone(), caller, tx));
        let mut answers = Vec::new();
        while let Some(o) = rx.recv().await {
            answers.push(o);
        }
        assert_eq!(answers.len(), rows.len());
        for (i, o) in answers.iter().enumerate() {
            assert_eq!(o.row, Some(i), "in input order");
            if i == 5 {
                assert_eq!((o.status, o.code.as_str()), (400, code::MALFORMED_ROW));
            } else {
                assert_eq!((o.status, o.code.as_str()), (200, "OK"), "row {i}: {o:?}");
            }
        }
        let agents = manager.agents().await;
        let state_of = |u: &str| {
            agents
                .iter()
                .find(|a| a.user_id == u)
                .map(|a| a.state.clone())
        };
        assert_eq!(
            state_of("a0").as_deref(),
            Some("NOT_READY"),
            "its later row"
        );
        assert_eq!(state_of("a9").as_deref(), Some("READY"));
        Arc::into_inner(manager)
            .unwrap()
            .shutdown(Duration::from_secs(1))
            .await;
    }

    #[test]
    fn an_actor_defaults_to_the_key_unless_an_override_names_its_supervisor() {
        let caller = Caller {
            name: "ops".to_owned(),
        };
        let plain: StateRequest = serde_json::from_str(r#"{"state":"READY"}"#).unwrap();
        let actor = plain.options(&caller).actor.unwrap();
        assert_eq!(
            (actor.id.as_deref(), actor.role),
            (Some("ops"), ActorRole::System)
        );
        let overriding: StateRequest = serde_json::from_str(
            r#"{"state":"READY","override":{"actor":"sup-1","reason":"coverage"}}"#,
        )
        .unwrap();
        assert!(overriding.options(&caller).actor.is_none());
        assert!(serde_json::from_str::<StateRequest>(r#"{"state":"READY","bogus":1}"#).is_err());
    }
}
