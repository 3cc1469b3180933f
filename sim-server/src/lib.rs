//! # cxone-agent-state-sim-server
//!
//! The simulated tenant over real HTTP: what `cxone-agent-state sim-server` runs, what the end-to-end tests and
//! the browser pages talk to, beside the sans-IO simulator it serves (`cxone_agent_state_core::sim`).
//!
//! [`start`] binds a socket and serves a [`SimTenant`] on the wall clock: every request (except the admin ones)
//! becomes a core [`HttpRequest`], goes through [`SimTenant::handle_request`] at the current Unix time, and is
//! answered once the reply's `deliver_at_ms` has come. A [`SimOutcome::TransportError`] closes the connection
//! without an answer, so the client sees a dropped connection.
//!
//! The tenant serves both API profiles: the `seed` endpoints and the real CXone API of the `cxone` profile
//! (discovery, `/auth/token`, `/inContactAPI/services/v{N}.0/...`, `/schedules/export`). Every base the
//! `cxone` discovery announces is this server's URL, except the WFM base `https://{area}.{uhDomain}`, which does
//! not resolve: a `cxone` client sets its WFM base to this server's URL.
//!
//! Every answer carries permissive CORS headers so a browser page can talk to the server; `OPTIONS` preflights
//! answer 204.
//!
//! Admin endpoints (JSON, camelCase; they bypass the tenant: no rate limit, not counted):
//!
//! | Method | Path | Body | Answer |
//! |---|---|---|---|
//! | GET | `/admin/health` | | `{"ok":true}` |
//! | GET | `/admin/ground-truth` | | `GroundTruth` |
//! | POST | `/admin/agents` | an `AgentPlan` or an array | `{"added":n,"agentCount":total}` |
//! | GET | `/admin/agents/{id}` | | `{"plan":AgentPlan,"state":string\|null}`, 404 if unknown |
//! | POST | `/admin/agents/{id}/tenant-state` | `{"state":"Unavailable","code":"Lunch","source":"supervisor"}` (`code` optional; `source` one of `agent`, `supervisor` (default), `acd`, `session`, `api`) | `{"ok":true}`; 400 on a bad state or code, 404 if unknown |
//! | GET | `/admin/agents/{id}/truth` | | the agent's truth timeline up to now: `[TruthEntry]`, 404 if unknown |
//! | POST | `/admin/activity` | `ActivityConfig` (missing fields default: off) | `{"ok":true}`; 400 if invalid |
//! | POST | `/admin/faults` | a `FaultRule` or an array (scripted) | `{"scripted":n}` |
//! | POST | `/admin/faults/clear` | | `{"ok":true}` |
//! | POST | `/admin/random-faults` | `RandomFaults` | `{"ok":true}` |
//! | POST | `/admin/rate-limit` | `{"ratePerMinute":n,"burst":n}` (`burst` optional: keeps the current one) | the new limit |
//! | POST | `/admin/revoke-tokens` | | `{"ok":true}` |
//! | GET | `/admin/accepted-changes` | | `[{"idempotencyKey","userId","state"}]` |
//! | GET | `/admin/config` | | `SimConfig` with `clientSecret` and `accessKeySecret` redacted |
//!
//! A tenant-state change made through the admin endpoint is what a supervisor (or the agent, or the ACD) does
//! elsewhere: `agents/states` and the truth timeline show it; it is not an accepted change.
//!
//! Bad admin JSON answers 400 `{"error":"bad_request","error_description":…}`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cxone_agent_state_core::sim::{
    ActivityConfig, AgentPlan, FaultRule, RandomFaults, SimConfig, SimOutcome, SimTenant,
    TruthSource,
};
use cxone_agent_state_core::{HttpRequest, HttpResponse, Method, TransportErrorKind};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Unix-epoch milliseconds from the system clock: the simulated tenant's clock when it is served over HTTP.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Request bodies larger than this answer 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The response body type of the server.
type Body = Full<Bytes>;

/// A running simulated-tenant server. Dropping it stops the server (the accept loop and every open
/// connection are aborted).
#[derive(Debug)]
pub struct SimServerHandle {
    addr: SocketAddr,
    base_url: String,
    tenant: Arc<Mutex<SimTenant>>,
    task: Option<JoinHandle<()>>,
}

impl SimServerHandle {
    /// The base URL clients use, e.g. `http://127.0.0.1:40123` (no trailing slash). An unspecified listen
    /// address (`0.0.0.0`, `::`) is replaced by the loopback address of the same family.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The tenant being served. Never hold its lock across an `.await`.
    pub fn tenant(&self) -> Arc<Mutex<SimTenant>> {
        Arc::clone(&self.tenant)
    }

    /// Stops the server and waits until the listening socket and every connection are closed.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for SimServerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Binds `addr` (port 0 picks a free port), spawns the accept loop on the current tokio runtime and returns
/// a handle to the running server.
pub async fn start(addr: SocketAddr, tenant: SimTenant) -> std::io::Result<SimServerHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let base_url = base_url_for(addr);
    let tenant = Arc::new(Mutex::new(tenant));
    let ctx = Arc::new(Ctx {
        tenant: Arc::clone(&tenant),
        base_url: base_url.clone(),
    });
    let task = tokio::spawn(accept_loop(listener, ctx));
    Ok(SimServerHandle {
        addr,
        base_url,
        tenant,
        task: Some(task),
    })
}

fn base_url_for(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// What every connection shares.
struct Ctx {
    tenant: Arc<Mutex<SimTenant>>,
    base_url: String,
}

fn lock(tenant: &Mutex<SimTenant>) -> MutexGuard<'_, SimTenant> {
    tenant.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Accepts connections until aborted; the connections live in a `JoinSet` so aborting the loop closes them too.
async fn accept_loop(listener: TcpListener, ctx: Arc<Ctx>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, Arc::clone(&ctx)));
                }
                Err(e) => {
                    // E.g. too many open files: back off instead of spinning.
                    tracing::warn!(error = %e, "sim-server: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, ctx: Arc<Ctx>) {
    let service = service_fn(move |request| {
        let ctx = Arc::clone(&ctx);
        async move { handle(request, &ctx).await }
    });
    // Idle keep-alive connections stay open until the client closes them or the server stops.
    let result = http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "sim-server: connection closed");
    }
}

/// Returned by the service to make hyper close the connection without an answer.
#[derive(Debug)]
struct DroppedConnection(TransportErrorKind);

impl fmt::Display for DroppedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "simulated transport error ({:?})", self.0)
    }
}

impl std::error::Error for DroppedConnection {}

async fn handle(
    request: Request<Incoming>,
    ctx: &Ctx,
) -> Result<Response<Body>, DroppedConnection> {
    let mut response = route(request, ctx).await?;
    add_cors(response.headers_mut());
    Ok(response)
}

fn add_cors(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, idempotency-key"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("retry-after, idempotent-replayed"),
    );
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(status: StatusCode, error: &str, description: &str) -> Response<Body> {
    json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

fn bad_request(description: impl fmt::Display) -> Response<Body> {
    error_response(
        StatusCode::BAD_REQUEST,
        "bad_request",
        &description.to_string(),
    )
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

enum BodyError {
    TooLarge,
    NotUtf8,
    Broken,
}

async fn read_body(request: Request<Incoming>) -> Result<String, BodyError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    let collected = Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<LengthLimitError>() {
                BodyError::TooLarge
            } else {
                BodyError::Broken
            }
        })?;
    String::from_utf8(collected.to_bytes().to_vec()).map_err(|_| BodyError::NotUtf8)
}

async fn route(request: Request<Incoming>, ctx: &Ctx) -> Result<Response<Body>, DroppedConnection> {
    let method = match *request.method() {
        hyper::Method::OPTIONS => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            return Ok(response);
        }
        hyper::Method::GET => Method::Get,
        hyper::Method::POST => Method::Post,
        _ => return Ok(method_not_allowed("GET, POST, OPTIONS")),
    };
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let path = request.uri().path().to_owned();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return Ok(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body exceeds 1 MiB",
            ))
        }
        Err(BodyError::NotUtf8) => return Ok(bad_request("the request body is not UTF-8")),
        Err(BodyError::Broken) => return Err(DroppedConnection(TransportErrorKind::Reset)),
    };
    if path == "/admin" || path.starts_with("/admin/") {
        return Ok(admin(method, &path, &body, &ctx.tenant));
    }

    let request = HttpRequest {
        method,
        url: format!("{}{}", ctx.base_url, path_and_query),
        headers,
        body: (!body.is_empty()).then_some(body),
        timeout_ms: 0,
    };
    let arrived = Instant::now();
    let now_ms = now_ms();
    let reply = lock(&ctx.tenant).handle_request(now_ms, &request);
    let delay = Duration::from_millis(reply.deliver_at_ms.saturating_sub(now_ms));
    tokio::time::sleep(delay.saturating_sub(arrived.elapsed())).await;
    match reply.outcome {
        SimOutcome::Response(response) => Ok(to_hyper(response)),
        // Every kind (the tenant only produces `Reset`) becomes a closed connection without an answer.
        SimOutcome::TransportError(kind) => Err(DroppedConnection(kind)),
    }
}

fn to_hyper(response: HttpResponse) -> Response<Body> {
    let status = StatusCode::from_u16(response.status)
        .ok()
        .filter(|s| !s.is_informational())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = Response::new(Full::new(Bytes::from(response.body)));
    *out.status_mut() = status;
    for (name, value) in response.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            continue;
        };
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        out.headers_mut().append(name, value);
    }
    out
}

/// The admin endpoints.
#[derive(Clone, Copy)]
enum Admin {
    Health,
    GroundTruth,
    AddAgents,
    Agent,
    Faults,
    ClearFaults,
    RandomFaults,
    RateLimit,
    RevokeTokens,
    AcceptedChanges,
    Config,
    Activity,
    TenantState,
    Truth,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TenantStateBody {
    state: String,
    code: Option<String>,
    source: Option<TruthSource>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RateLimitBody {
    rate_per_minute: u32,
    burst: Option<u32>,
}

/// The admin endpoints, as `(method, path, what it does)`: the table above, for `--help` texts.
pub const ADMIN_ENDPOINTS: &[(&str, &str, &str)] = &[
    ("GET", "/admin/health", "liveness: {\"ok\":true}"),
    (
        "GET",
        "/admin/ground-truth",
        "the tenant's own counters (requests, 429s, faults, changes accepted, READY during breaks)",
    ),
    (
        "POST",
        "/admin/agents",
        "add agents: an AgentPlan or an array of them",
    ),
    (
        "GET",
        "/admin/agents/{id}",
        "an agent's plan and current state (404 if unknown)",
    ),
    (
        "POST",
        "/admin/faults",
        "script faults: a FaultRule or an array",
    ),
    ("POST", "/admin/faults/clear", "clear scripted faults"),
    (
        "POST",
        "/admin/random-faults",
        "set the random fault rate and kinds",
    ),
    (
        "POST",
        "/admin/rate-limit",
        "change the rate limit: {\"ratePerMinute\",\"burst\"}",
    ),
    ("POST", "/admin/revoke-tokens", "revoke every issued token"),
    (
        "GET",
        "/admin/accepted-changes",
        "every state change accepted, with its Idempotency-Key",
    ),
    (
        "GET",
        "/admin/config",
        "the configuration, secrets redacted",
    ),
    (
        "POST",
        "/admin/activity",
        "agents acting on their own: an ActivityConfig (rates per hour; off by default)",
    ),
    (
        "POST",
        "/admin/agents/{id}/tenant-state",
        "change an agent's state as a supervisor would: {\"state\",\"code\",\"source\"}",
    ),
    (
        "GET",
        "/admin/agents/{id}/truth",
        "the agent's true state timeline up to now",
    ),
];

/// The `sim-server` flags that set the [`ActivityConfig`], as `(flag, value, what it sets)`, for a command
/// line to define and its `--help` to list; [`apply_activity_flag`] reads one.
pub const ACTIVITY_FLAGS: &[(&str, &str, &str)] = &[
    (
        "--agent-changes-per-hour",
        "RATE",
        "per agent: the agent goes Unavailable with a code, or back to Available (default 0)",
    ),
    (
        "--contacts-per-hour",
        "RATE",
        "per agent: contacts the ACD offers while Available (default 0)",
    ),
    (
        "--contact-mean-s",
        "SECONDS",
        "mean contact duration (default 180)",
    ),
    (
        "--supervisor-changes-per-hour",
        "RATE",
        "per agent: a supervisor sets Unavailable with a code, or Available (default 0)",
    ),
    (
        "--log-in-out",
        "true|false",
        "agents are LoggedOut outside their shifts (default false)",
    ),
];

/// Sets the field of `activity` that the flag `flag` (one of [`ACTIVITY_FLAGS`]) names to `value`, then
/// validates the whole; the message says what is wrong.
pub fn apply_activity_flag(
    activity: &mut ActivityConfig,
    flag: &str,
    value: &str,
) -> Result<(), String> {
    let number = || {
        value
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("{flag}: {value:?} is not a number"))
    };
    match flag {
        "--agent-changes-per-hour" => activity.agent_changes_per_hour = number()?,
        "--contacts-per-hour" => activity.contacts_per_hour = number()?,
        "--contact-mean-s" => activity.contact_mean_s = number()?,
        "--supervisor-changes-per-hour" => activity.supervisor_changes_per_hour = number()?,
        "--log-in-out" => {
            activity.log_in_out = value
                .trim()
                .parse()
                .map_err(|_| format!("{flag}: {value:?} is not true or false"))?;
        }
        other => return Err(format!("{other} is not an activity flag")),
    }
    activity.validate().map_err(|e| format!("{flag}: {e}"))
}

fn admin(method: Method, path: &str, body: &str, tenant: &Mutex<SimTenant>) -> Response<Body> {
    let path = path.trim_end_matches('/');
    let mut agent_id = None;
    let endpoint = match path {
        "/admin/health" => Admin::Health,
        "/admin/ground-truth" => Admin::GroundTruth,
        "/admin/agents" => Admin::AddAgents,
        "/admin/faults" => Admin::Faults,
        "/admin/faults/clear" => Admin::ClearFaults,
        "/admin/random-faults" => Admin::RandomFaults,
        "/admin/rate-limit" => Admin::RateLimit,
        "/admin/revoke-tokens" => Admin::RevokeTokens,
        "/admin/accepted-changes" => Admin::AcceptedChanges,
        "/admin/config" => Admin::Config,
        "/admin/activity" => Admin::Activity,
        _ => match path.strip_prefix("/admin/agents/") {
            Some(seg) if !seg.is_empty() && !seg.contains('/') => {
                agent_id = Some(seg);
                Admin::Agent
            }
            Some(seg) => match seg.split_once('/') {
                Some((id, "tenant-state")) if !id.is_empty() => {
                    agent_id = Some(id);
                    Admin::TenantState
                }
                Some((id, "truth")) if !id.is_empty() => {
                    agent_id = Some(id);
                    Admin::Truth
                }
                _ => {
                    return error_response(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        "no such admin endpoint",
                    )
                }
            },
            _ => {
                return error_response(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint")
            }
        },
    };
    let expected = match endpoint {
        Admin::Health
        | Admin::GroundTruth
        | Admin::Agent
        | Admin::AcceptedChanges
        | Admin::Truth
        | Admin::Config => Method::Get,
        _ => Method::Post,
    };
    if method != expected {
        return method_not_allowed(match expected {
            Method::Get => "GET, OPTIONS",
            Method::Post => "POST, OPTIONS",
        });
    }
    let ok = || json_response(StatusCode::OK, &json!({ "ok": true }));
    match endpoint {
        Admin::Health => ok(),
        Admin::GroundTruth => {
            let truth = lock(tenant).ground_truth().clone();
            json_response(StatusCode::OK, &json!(truth))
        }
        Admin::AddAgents => match one_or_many::<AgentPlan>(body) {
            Ok(plans) => {
                let added = plans.len();
                let mut t = lock(tenant);
                for plan in plans {
                    t.add_agent(plan);
                }
                let total = t.agent_count();
                drop(t);
                json_response(
                    StatusCode::OK,
                    &json!({ "added": added, "agentCount": total }),
                )
            }
            Err(e) => bad_request(e),
        },
        Admin::Agent => {
            let Some(id) = agent_id.and_then(percent_decode) else {
                return bad_request("the agent id is not valid percent-encoded UTF-8");
            };
            let t = lock(tenant);
            match t.agent(&id) {
                Some(plan) => {
                    let value = json!({ "plan": plan, "state": t.agent_state(&id) });
                    drop(t);
                    json_response(StatusCode::OK, &value)
                }
                None => {
                    drop(t);
                    error_response(StatusCode::NOT_FOUND, "user_not_found", "no such user")
                }
            }
        }
        Admin::Faults => match one_or_many::<FaultRule>(body) {
            Ok(rules) => {
                let scripted = rules.len();
                let mut t = lock(tenant);
                for rule in rules {
                    t.script_fault(rule);
                }
                drop(t);
                json_response(StatusCode::OK, &json!({ "scripted": scripted }))
            }
            Err(e) => bad_request(e),
        },
        Admin::ClearFaults => {
            lock(tenant).clear_scripted_faults();
            ok()
        }
        Admin::RandomFaults => match parse_json::<RandomFaults>(body) {
            Ok(faults) => match lock(tenant).set_random_faults(faults) {
                Ok(()) => ok(),
                Err(e) => bad_request(e),
            },
            Err(e) => bad_request(e),
        },
        Admin::RateLimit => match parse_json::<RateLimitBody>(body) {
            Ok(limit) => {
                let mut t = lock(tenant);
                let burst = limit.burst.unwrap_or(t.config().burst);
                if let Err(e) = t.set_rate_limit(limit.rate_per_minute, burst) {
                    return bad_request(e);
                }
                let value = json!({
                    "ratePerMinute": t.config().rate_per_minute,
                    "burst": t.config().burst,
                });
                drop(t);
                json_response(StatusCode::OK, &value)
            }
            Err(e) => bad_request(e),
        },
        Admin::RevokeTokens => {
            lock(tenant).revoke_tokens();
            ok()
        }
        Admin::AcceptedChanges => {
            let changes: Vec<Value> = lock(tenant)
                .accepted_changes()
                .iter()
                .map(|(key, user, state)| {
                    json!({ "idempotencyKey": key, "userId": user, "state": state })
                })
                .collect();
            json_response(StatusCode::OK, &Value::Array(changes))
        }
        Admin::Config => {
            let config = SimConfig {
                client_secret: "[redacted]".to_owned(),
                access_key_secret: "[redacted]".to_owned(),
                ..lock(tenant).config().clone()
            };
            json_response(StatusCode::OK, &json!(config))
        }
        Admin::Activity => match parse_json::<ActivityConfig>(body) {
            Ok(activity) => match lock(tenant).set_activity(activity) {
                Ok(()) => ok(),
                Err(e) => bad_request(e),
            },
            Err(e) => bad_request(e),
        },
        Admin::TenantState | Admin::Truth => {
            let Some(id) = agent_id.and_then(percent_decode) else {
                return bad_request("the agent id is not valid percent-encoded UTF-8");
            };
            let mut t = lock(tenant);
            if t.agent(&id).is_none() {
                drop(t);
                return error_response(StatusCode::NOT_FOUND, "user_not_found", "no such user");
            }
            if let Admin::Truth = endpoint {
                let timeline = t.truth_timeline(&id, now_ms());
                drop(t);
                return json_response(StatusCode::OK, &json!(timeline));
            }
            let change = match parse_json::<TenantStateBody>(body) {
                Ok(change) => change,
                Err(e) => return bad_request(e),
            };
            let result = t.external_change(
                now_ms(),
                &id,
                &change.state,
                change.code.as_deref(),
                change.source.unwrap_or(TruthSource::Supervisor),
            );
            drop(t);
            match result {
                Ok(()) => ok(),
                Err(e) => bad_request(e),
            }
        }
    }
}

fn parse_json<T: DeserializeOwned>(body: &str) -> Result<T, String> {
    if body.trim().is_empty() {
        return Err("expected a JSON body".to_owned());
    }
    serde_json::from_str(body).map_err(|e| e.to_string())
}

/// One object or an array of them.
fn one_or_many<T: DeserializeOwned>(body: &str) -> Result<Vec<T>, String> {
    let value: Value = parse_json(body)?;
    if value.is_array() {
        serde_json::from_value(value).map_err(|e| e.to_string())
    } else {
        serde_json::from_value(value)
            .map(|one| vec![one])
            .map_err(|e| e.to_string())
    }
}

/// Decodes `%XX` escapes (a `%` not followed by two hex digits stays as is); `None` if not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cxone_agent_state_core::sim::{Endpoint, FaultKind, Window};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    const HOUR_MS: u64 = 3_600_000;

    /// A tenant with no latency, one agent on shift and a generous rate limit.
    fn tenant() -> SimTenant {
        let mut t = SimTenant::new(SimConfig {
            latency_ms: 0,
            latency_jitter_ms: 0,
            rate_per_minute: 6_000,
            burst: 100,
            ..SimConfig::default()
        });
        t.add_agent(on_shift("agent-0001"));
        t
    }

    fn on_shift(user: &str) -> AgentPlan {
        let now = now_ms();
        AgentPlan {
            user_id: user.to_owned(),
            shifts: vec![Window {
                start_ms: now - HOUR_MS,
                end_ms: now + 23 * HOUR_MS,
            }],
            breaks: vec![],
            ..AgentPlan::default()
        }
    }

    async fn server() -> SimServerHandle {
        start("127.0.0.1:0".parse().unwrap(), tenant())
            .await
            .expect("bind")
    }

    #[derive(Debug)]
    struct Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Raw {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        fn json(&self) -> Value {
            serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
        }
    }

    /// A hand-written HTTP/1.1 client over one keep-alive connection.
    struct Client {
        conn: BufReader<TcpStream>,
    }

    impl Client {
        async fn connect(handle: &SimServerHandle) -> Self {
            let stream = TcpStream::connect(handle.local_addr()).await.unwrap();
            Self {
                conn: BufReader::new(stream),
            }
        }

        /// `None` when the server closed the connection without an answer.
        async fn send(
            &mut self,
            method: &str,
            path: &str,
            headers: &[(&str, &str)],
            body: &str,
        ) -> Option<Raw> {
            let mut head = format!("{method} {path} HTTP/1.1\r\nHost: sim.test\r\n");
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            if !body.is_empty() || method == "POST" {
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            head.push_str("\r\n");
            head.push_str(body);
            self.conn.get_mut().write_all(head.as_bytes()).await.ok()?;
            self.read_response().await
        }

        async fn read_response(&mut self) -> Option<Raw> {
            let mut line = String::new();
            if self.conn.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            let status = line.split(' ').nth(1)?.parse().ok()?;
            let mut headers = Vec::new();
            loop {
                line.clear();
                self.conn.read_line(&mut line).await.ok()?;
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':')?;
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; len];
            self.conn.read_exact(&mut body).await.ok()?;
            Some(Raw {
                status,
                headers,
                body: String::from_utf8(body).unwrap(),
            })
        }
    }

    /// One request on a fresh connection.
    async fn once(
        handle: &SimServerHandle,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Option<Raw> {
        Client::connect(handle)
            .await
            .send(method, path, headers, body)
            .await
    }

    const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
    const TOKEN_BODY: &str =
        "grant_type=client_credentials&client_id=sim-client&client_secret=sim-secret";

    async fn token(client: &mut Client) -> String {
        let r = client
            .send("POST", "/oauth2/token", &[FORM], TOKEN_BODY)
            .await
            .expect("token answer");
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["access_token"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn every_listed_admin_endpoint_is_served() {
        let handle = server().await;
        for (method, path, _) in ADMIN_ENDPOINTS {
            let path = path.replace("{id}", "agent-0001");
            let r = once(&handle, method, &path, &[], "{}")
                .await
                .expect("an answer");
            assert_ne!(r.status, 404, "{method} {path}: {}", r.body);
            assert_ne!(r.status, 405, "{method} {path}: {}", r.body);
        }
        let r = once(&handle, "GET", "/admin/nothing", &[], "")
            .await
            .unwrap();
        assert_eq!(r.status, 404);
    }

    #[tokio::test]
    async fn token_schedule_and_state_over_one_keep_alive_connection() {
        let handle = server().await;
        assert!(handle.base_url().starts_with("http://127.0.0.1:"));
        let mut client = Client::connect(&handle).await;
        let tok = token(&mut client).await;
        let bearer = format!("Bearer {tok}");

        let r = client
            .send(
                "GET",
                "/api/v2/schedules/users/agent-0001",
                &[("Authorization", &bearer)],
                "",
            )
            .await
            .expect("schedule answer");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["status"], "ACTIVE");
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));

        let r = client
            .send(
                "POST",
                "/api/v2/users/agent-0001/state",
                &[
                    ("Authorization", &bearer),
                    ("Content-Type", "application/json"),
                    ("Idempotency-Key", "k-1"),
                ],
                r#"{"state":"READY"}"#,
            )
            .await
            .expect("state answer");
        assert_eq!(r.status, 200, "{}", r.body);
        // Replayed on the same key.
        let r = client
            .send(
                "POST",
                "/api/v2/users/agent-0001/state",
                &[("Authorization", &bearer), ("Idempotency-Key", "k-1")],
                r#"{"state":"READY"}"#,
            )
            .await
            .expect("replay answer");
        assert_eq!(r.header("idempotent-replayed"), Some("true"));

        let tenant = handle.tenant();
        assert_eq!(
            lock(&tenant).agent_state("agent-0001"),
            Some("READY"),
            "the state change reached the tenant"
        );
        let r = client
            .send("GET", "/admin/accepted-changes", &[], "")
            .await
            .unwrap();
        assert_eq!(
            r.json(),
            json!([{ "idempotencyKey": "k-1", "userId": "agent-0001", "state": "READY" }])
        );
        let r = client
            .send("GET", "/api/v2/nope", &[("Authorization", &bearer)], "")
            .await
            .unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        handle.shutdown().await;
    }

    #[tokio::test]
    async fn scripted_drop_before_closes_the_connection_without_an_answer() {
        let handle = server().await;
        let mut client = Client::connect(&handle).await;
        let tok = token(&mut client).await;
        lock(&handle.tenant()).script_fault(FaultRule {
            endpoint: Some(Endpoint::Schedule),
            user_id: None,
            fault: FaultKind::DropBefore,
            times: 1,
        });
        let bearer = format!("Bearer {tok}");
        let auth = [("Authorization", bearer.as_str())];
        let path = "/api/v2/schedules/users/agent-0001";
        assert!(client.send("GET", path, &auth, "").await.is_none());
        // The connection is gone; a fresh one works.
        let r = once(&handle, "GET", path, &auth, "").await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(lock(&handle.tenant()).ground_truth().faults_injected, 1);
    }

    #[tokio::test]
    async fn scripted_slow_answer_arrives_late() {
        let handle = server().await;
        let mut client = Client::connect(&handle).await;
        let tok = token(&mut client).await;
        let bearer = format!("Bearer {tok}");
        let rule = json!({ "endpoint": "schedule", "fault": { "kind": "slow", "extraMs": 300 }, "times": 1 });
        let r = client
            .send("POST", "/admin/faults", &[], &rule.to_string())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["scripted"], 1);
        let started = Instant::now();
        let r = client
            .send(
                "GET",
                "/api/v2/schedules/users/agent-0001",
                &[("Authorization", &bearer)],
                "",
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn rate_limited_answer_carries_retry_after() {
        let handle = server().await;
        let r = once(
            &handle,
            "POST",
            "/admin/rate-limit",
            &[],
            r#"{"ratePerMinute":1,"burst":1}"#,
        )
        .await
        .unwrap();
        assert_eq!(r.json(), json!({ "ratePerMinute": 1, "burst": 1 }));
        let mut client = Client::connect(&handle).await;
        token(&mut client).await;
        let r = client
            .send("POST", "/oauth2/token", &[FORM], TOKEN_BODY)
            .await
            .unwrap();
        assert_eq!(r.status, 429);
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(
            r.header("access-control-expose-headers"),
            Some("retry-after, idempotent-replayed")
        );
        // Admin calls are not rate limited.
        let r = client
            .send("GET", "/admin/ground-truth", &[], "")
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["rateLimited"], 1);
    }

    #[tokio::test]
    async fn cors_preflight_answers_204() {
        let handle = server().await;
        let r = once(
            &handle,
            "OPTIONS",
            "/api/v2/users/agent-0001/state",
            &[
                ("Origin", "http://localhost:8080"),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization, content-type, idempotency-key",
                ),
            ],
            "",
        )
        .await
        .unwrap();
        assert_eq!(r.status, 204);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        assert_eq!(
            r.header("access-control-allow-headers"),
            Some("authorization, content-type, idempotency-key")
        );
        assert_eq!(
            r.header("access-control-allow-methods"),
            Some("GET, POST, OPTIONS")
        );
        assert_eq!(
            r.header("access-control-expose-headers"),
            Some("retry-after, idempotent-replayed")
        );
        // Preflights never reach the tenant.
        assert_eq!(lock(&handle.tenant()).ground_truth().total_requests, 0);
    }

    #[tokio::test]
    async fn admin_endpoints() {
        let handle = server().await;
        let mut c = Client::connect(&handle).await;

        let health = c.send("GET", "/admin/health", &[], "").await.unwrap();
        assert_eq!(health.json(), json!({ "ok": true }));

        let plans = json!([on_shift("agent-0002"), on_shift("a/b c")]);
        let r = c
            .send("POST", "/admin/agents", &[], &plans.to_string())
            .await
            .unwrap();
        assert_eq!(r.json(), json!({ "added": 2, "agentCount": 3 }));
        let one = json!(on_shift("agent-0003"));
        let r = c
            .send("POST", "/admin/agents", &[], &one.to_string())
            .await
            .unwrap();
        assert_eq!(r.json(), json!({ "added": 1, "agentCount": 4 }));

        let r = c
            .send("GET", "/admin/agents/a%2Fb%20c", &[], "")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["plan"]["userId"], "a/b c");
        assert_eq!(r.json()["state"], Value::Null);
        let r = c
            .send("GET", "/admin/agents/nobody", &[], "")
            .await
            .unwrap();
        assert_eq!(r.status, 404);

        let r = c
            .send("POST", "/admin/agents", &[], "{not json")
            .await
            .unwrap();
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["error"], "bad_request");
        assert!(r.json()["error_description"].is_string());
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        let r = c
            .send("POST", "/admin/rate-limit", &[], r#"{"ratePerMinute":0}"#)
            .await
            .unwrap();
        assert_eq!(r.status, 400);
        let r = c
            .send(
                "POST",
                "/admin/random-faults",
                &[],
                r#"{"rate":0.5,"kinds":[{"kind":"malformed"}]}"#,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let r = c.send("GET", "/admin/config", &[], "").await.unwrap();
        let config = r.json();
        assert_eq!(config["clientSecret"], "[redacted]");
        assert_eq!(config["accessKeySecret"], "[redacted]");
        assert_eq!(config["accessKeyId"], "sim-access-key");
        assert_eq!(config["clientId"], "sim-client");
        assert_eq!(config["faults"]["rate"], 0.5);
        for path in ["/admin/faults/clear", "/admin/revoke-tokens"] {
            let r = c.send("POST", path, &[], "").await.unwrap();
            assert_eq!(r.json(), json!({ "ok": true }), "{path}");
        }
        let r = c.send("GET", "/admin/faults/clear", &[], "").await.unwrap();
        assert_eq!(r.status, 405);
        let r = c.send("GET", "/admin/nothing", &[], "").await.unwrap();
        assert_eq!(r.status, 404);

        // One tenant request; admin calls are not counted.
        let r = c
            .send("POST", "/oauth2/token", &[FORM], TOKEN_BODY)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        let truth = c
            .send("GET", "/admin/ground-truth", &[], "")
            .await
            .unwrap()
            .json();
        assert_eq!(truth["totalRequests"], 1);
        assert_eq!(truth["tokensIssued"], 1);
        assert_eq!(truth["requestsByEndpoint"]["token"], 1);
        assert_eq!(lock(&handle.tenant()).agent_count(), 4);
    }

    #[tokio::test]
    async fn bad_methods_and_big_bodies() {
        let handle = server().await;
        let r = once(&handle, "PUT", "/oauth2/token", &[], "x")
            .await
            .unwrap();
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("GET, POST, OPTIONS"));
        // Declared too large: answered before the body is sent (so the close is clean).
        let mut client = Client::connect(&handle).await;
        let head = format!(
            "POST /oauth2/token HTTP/1.1\r\nHost: sim.test\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        client
            .conn
            .get_mut()
            .write_all(head.as_bytes())
            .await
            .unwrap();
        let r = client.read_response().await.unwrap();
        assert_eq!(r.status, 413);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        assert_eq!(lock(&handle.tenant()).ground_truth().total_requests, 0);
    }

    /// Sends a core request over real HTTP and reads the answer back as a core response.
    async fn exchange(http: &reqwest::Client, request: &HttpRequest) -> HttpResponse {
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        };
        let mut builder = http.request(method, &request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let answer = builder.send().await.expect("an answer");
        let status = answer.status().as_u16();
        let headers = answer
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        HttpResponse::new(status, headers, answer.text().await.unwrap())
    }

    #[tokio::test]
    async fn cxone_profile_over_http_with_the_cxone_wire_modules() {
        use cxone_agent_state_core::cxone::{acd, auth, wfm};
        use cxone_agent_state_core::Secret;

        let handle = server().await;
        let base = handle.base_url();
        let http = reqwest::Client::new();
        let openid = exchange(&http, &auth::openid_configuration_request(&base)).await;
        let openid = auth::parse_openid_configuration(&openid).unwrap();
        assert_eq!(openid.issuer, base);
        let config = SimConfig::default();
        let creds = auth::CxoneCredentials {
            access_key_id: config.access_key_id.clone(),
            access_key_secret: Secret::new(&config.access_key_secret),
            client_id: config.client_id.clone(),
            client_secret: Secret::new(&config.client_secret),
        };
        let grant =
            auth::password_grant_request(&openid.token_endpoint, &creds, auth::ClientAuth::Basic);
        let token = auth::parse_token_answer(&exchange(&http, &grant).await).unwrap();
        let claims = auth::id_token_claims(token.id_token.as_ref().unwrap().expose()).unwrap();
        let bases = exchange(
            &http,
            &auth::cxone_configuration_request(&openid.issuer, &claims.tenant_id),
        )
        .await;
        let bases = auth::parse_cxone_configuration(&bases, &claims.tenant_id).unwrap();
        assert_eq!(bases.api_base, base);

        let versions = acd::ApiVersions::default();
        let token = token.access_token;
        let page = exchange(&http, &acd::agents_request(&base, &versions, &token, 0, 10)).await;
        let page = acd::parse_agents_page(&page, 0).unwrap();
        assert_eq!(page.agents.len(), 1);
        let agent = &page.agents[0];
        let codes = exchange(
            &http,
            &acd::unavailable_codes_request(&base, &versions, agent.team_id, &token),
        )
        .await;
        let codes = acd::parse_unavailable_codes(&codes).unwrap();
        let lunch = acd::find_code(&codes, "Lunch").unwrap().out_state_id;

        // The announced WFM host does not resolve: over HTTP the export goes to the server's URL.
        let export = wfm::export_request(&base, &agent.user_id, now_ms() - HOUR_MS, 2, &token);
        let schedule = wfm::parse_export(&exchange(&http, &export).await, &agent.user_id).unwrap();
        assert!(schedule.scheduled_at(now_ms()).scheduled);

        let target = acd::CxoneState::Unavailable {
            out_state_id: lunch,
        };
        let set = acd::set_state_request(
            &base,
            &versions,
            agent.agent_id,
            target,
            &token,
            acd::SetStateEncoding::Query,
            "k-cxone",
        );
        let answer = exchange(&http, &set).await;
        assert_eq!(answer.header("icStatusDescription"), Some("Success"));
        acd::check_set_state(&answer).unwrap();
        assert_eq!(
            lock(&handle.tenant()).agent_state("agent-0001"),
            Some("UNAVAILABLE_LUNCH")
        );
        let truth = lock(&handle.tenant()).ground_truth().clone();
        assert_eq!(truth.requests_by_endpoint["scheduleExport"], 1);
        assert_eq!(truth.state_changes_accepted, 1);
        handle.shutdown().await;
    }

    #[tokio::test]
    async fn tenant_state_changed_by_a_supervisor_shows_in_agents_states() {
        let handle = server().await;
        let mut c = Client::connect(&handle).await;
        let plans = json!(on_shift("agent-0002"));
        let r = c
            .send("POST", "/admin/agents", &[], &plans.to_string())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let change = r#"{"state":"Unavailable","code":"Lunch","source":"supervisor"}"#;
        let r = c
            .send("POST", "/admin/agents/agent-0001/tenant-state", &[], change)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json(), json!({ "ok": true }));

        let tok = token(&mut c).await;
        let bearer = format!("Bearer {tok}");
        let auth = [("Authorization", bearer.as_str())];
        let path =
            "/inContactAPI/services/v34.0/agents/states?updatedSince=2020-01-01T00:00:00.000Z";
        let r = c.send("GET", path, &auth, "").await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let page = r.json();
        assert_eq!(page["totalRecords"], 1, "only the agent changed since");
        let item = &page["agentStates"][0];
        assert_eq!(item["agentId"], 1001);
        assert_eq!(item["agentStateName"], "Unavailable");
        assert_eq!(item["agentStateId"], 2);
        assert_eq!(item["outStateId"], 2);
        assert_eq!(item["outStateDescription"], "Lunch");
        assert!(page["_links"]["next"].is_null());
        assert!(page["lastPollTime"].as_str().unwrap().ends_with('Z'));
        let all = c
            .send(
                "GET",
                "/inContactAPI/services/v34.0/agents/states",
                &auth,
                "",
            )
            .await
            .unwrap();
        assert_eq!(all.json()["totalRecords"], 2);

        let r = c
            .send("GET", "/admin/agents/agent-0001/truth", &[], "")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let truth = r.json();
        let last = truth.as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["source"], "supervisor");
        assert_eq!(last["stateName"], "Unavailable");
        assert_eq!(last["code"], "Lunch");
        assert_eq!(last["outStateId"], 2);
        // Not a change made through the API.
        let r = c
            .send("GET", "/admin/accepted-changes", &[], "")
            .await
            .unwrap();
        assert_eq!(r.json(), json!([]));
        assert_eq!(
            lock(&handle.tenant()).agent_state("agent-0001"),
            Some("UNAVAILABLE_LUNCH")
        );

        for bad in [
            r#"{"state":"Asleep"}"#,
            r#"{"state":"Unavailable","code":"Nap"}"#,
            r#"{"state":"Available","source":"boss"}"#,
            "{not json",
        ] {
            let r = c
                .send("POST", "/admin/agents/agent-0001/tenant-state", &[], bad)
                .await
                .unwrap();
            assert_eq!(r.status, 400, "{bad}: {}", r.body);
        }
        let r = c
            .send("POST", "/admin/agents/nobody/tenant-state", &[], change)
            .await
            .unwrap();
        assert_eq!(r.status, 404);
        let r = c
            .send("GET", "/admin/agents/nobody/truth", &[], "")
            .await
            .unwrap();
        assert_eq!(r.status, 404);
        let r = c
            .send("GET", "/admin/agents/agent-0001/tenant-state", &[], "")
            .await
            .unwrap();
        assert_eq!(r.status, 405);
        handle.shutdown().await;
    }

    #[tokio::test]
    async fn activity_is_set_through_admin() {
        let handle = server().await;
        let mut c = Client::connect(&handle).await;
        let r = c
            .send(
                "POST",
                "/admin/activity",
                &[],
                r#"{"agentChangesPerHour":-1}"#,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{}", r.body);
        let r = c
            .send(
                "POST",
                "/admin/activity",
                &[],
                r#"{"contactsPerHour":4,"logInOut":true}"#,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let config = c
            .send("GET", "/admin/config", &[], "")
            .await
            .unwrap()
            .json();
        assert_eq!(config["activity"]["contactsPerHour"], 4.0);
        assert_eq!(config["activity"]["contactMeanS"], 180.0);
        assert_eq!(config["activity"]["logInOut"], true);
        handle.shutdown().await;
    }

    #[test]
    fn activity_flags_set_the_activity() {
        let mut activity = ActivityConfig::default();
        for (flag, value) in [
            ("--agent-changes-per-hour", "2"),
            ("--contacts-per-hour", "6.5"),
            ("--contact-mean-s", "90"),
            ("--supervisor-changes-per-hour", "0.5"),
            ("--log-in-out", "true"),
        ] {
            apply_activity_flag(&mut activity, flag, value).unwrap();
        }
        assert_eq!(
            activity,
            ActivityConfig {
                agent_changes_per_hour: 2.0,
                contacts_per_hour: 6.5,
                contact_mean_s: 90.0,
                supervisor_changes_per_hour: 0.5,
                log_in_out: true,
            }
        );
        assert_eq!(ACTIVITY_FLAGS.len(), 5);
        assert!(apply_activity_flag(&mut activity, "--contacts-per-hour", "-1").is_err());
        assert!(apply_activity_flag(&mut activity, "--contacts-per-hour", "lots").is_err());
        assert!(apply_activity_flag(&mut activity, "--log-in-out", "maybe").is_err());
        assert!(apply_activity_flag(&mut activity, "--nope", "1").is_err());
    }

    #[tokio::test]
    async fn server_stops_when_the_handle_is_dropped() {
        let handle = server().await;
        let addr = handle.local_addr();
        // An open keep-alive connection does not keep the server alive.
        let mut client = Client::connect(&handle).await;
        assert!(client.send("GET", "/admin/health", &[], "").await.is_some());
        drop(handle);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if TcpStream::connect(addr).await.is_err() {
                break;
            }
            assert!(Instant::now() < deadline, "still accepting after drop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(client.send("GET", "/admin/health", &[], "").await.is_none());

        let handle = server().await;
        let addr = handle.local_addr();
        handle.shutdown().await;
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%FF"), None);
    }

    #[test]
    fn unspecified_listen_address_gives_a_loopback_url() {
        assert_eq!(
            base_url_for("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(base_url_for("[::]:80".parse().unwrap()), "http://[::1]:80");
    }
}
