//! `AgentStateManager`: the async face of the engine for Rust services.
//!
//! One driver task owns the engine and runs one `tokio::select!` over {the next deadline, finished HTTP
//! calls, commands}. Any number of callers share it through a channel. After every input the driver drains
//! the engine's outputs, makes the durable part of them durable (audit records, change intents, webhook
//! payloads: one group commit), and only then performs the requests and reports outcomes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cxone_agent_state_core::{
    AgentMetrics, ComplianceReport, ConfigError, Engine, EngineConfig, ErrorCode, Event,
    OutboxConfig, OutboxEntry, Output, StateChanged, TransitionError, TransitionId,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::http;
use crate::store::{self, Batch, Recovery, StoreError, StorePaths, Writer};
use crate::webhook::WebhookDelivery;

/// Unix-epoch milliseconds from the system clock: the only clock the engine ever sees.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Everything a manager needs.
#[derive(Clone, Debug)]
pub struct ManagerConfig {
    /// The engine: endpoint, credentials, limits, retries.
    pub engine: EngineConfig,
    /// The durable audit log (plus `.journal` and `.outbox` beside it). `None` keeps audit records in memory
    /// only, for embedders that persist the `AuditRecord` events themselves.
    pub audit_log: Option<PathBuf>,
    /// Where and how to deliver webhooks; `None` disables them.
    pub webhook: Option<OutboxConfig>,
}

/// Why a manager could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid (`INVALID_CONFIG`, `INVALID_WEBHOOK_URL`).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The durable files could not be opened or are damaged (`AUDIT_LOG_CORRUPT`).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StartError {
    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Config(e) => e.code(),
            Self::Store(StoreError::Corrupt { .. }) => ErrorCode::AuditLogCorrupt,
            Self::Store(_) => ErrorCode::AuditLogUnavailable,
        }
    }
}

/// A policy check that passed (the reference's `{ valid: true, reasonCode }`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    /// Always true: a refusal is an `Err`.
    pub valid: bool,
    /// The reason code the change would be sent with.
    pub reason_code: String,
}

/// What a shutdown left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownSummary {
    /// Webhook events still undelivered after the drain timeout; they go out on the next start.
    pub undelivered_webhooks: usize,
}

type Reply<T> = oneshot::Sender<Result<T, TransitionError>>;

enum Request {
    Transition {
        user: String,
        state: String,
        reply: Reply<StateChanged>,
    },
    Validate {
        user: String,
        state: String,
        reply: Reply<Validation>,
    },
    Report(oneshot::Sender<ComplianceReport>),
    IdleTime(String, oneshot::Sender<u64>),
    Metrics(String, oneshot::Sender<Option<AgentMetrics>>),
    Unfinished(oneshot::Sender<usize>),
    Shutdown(oneshot::Sender<()>),
}

enum Waiter {
    Change(Reply<StateChanged>),
    Check(Reply<Validation>),
}

/// Changes agent states through CXone with compliance enforced, from any number of tasks.
///
/// ```no_run
/// # async fn demo(config: cxone_agent_state::ManagerConfig) -> Result<(), Box<dyn std::error::Error>> {
/// use cxone_agent_state::AgentStateManager;
/// let manager = AgentStateManager::start(config).await?;
/// match manager.transition_state("agent-7", "READY").await {
///     Ok(changed) => println!("READY after {} ms", changed.latency_ms),
///     Err(e) => println!("refused: {} ({})", e.code, e.message),
/// }
/// manager.shutdown(std::time::Duration::from_secs(30)).await;
/// # Ok(()) }
/// ```
pub struct AgentStateManager {
    requests: mpsc::Sender<Request>,
    events: broadcast::Sender<Event>,
    recovery: Recovery,
    driver: JoinHandle<()>,
    webhooks: Option<WebhookDelivery>,
    writer: Option<(Writer, std::thread::JoinHandle<()>)>,
}

impl std::fmt::Debug for AgentStateManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentStateManager")
            .field("durable", &self.writer.is_some())
            .field("webhooks", &self.webhooks.is_some())
            .finish_non_exhaustive()
    }
}

impl AgentStateManager {
    /// Opens the durable files (recovering from a crash if needed), starts the driver and the webhook
    /// delivery, resumes interrupted changes and re-enqueues undelivered webhooks.
    pub async fn start(config: ManagerConfig) -> Result<Self, StartError> {
        let mut engine_config = config.engine.clone();
        let (writer, recovery) = match &config.audit_log {
            Some(path) => {
                let paths = StorePaths::for_audit_log(path);
                let recovery = {
                    let paths = paths.clone();
                    tokio::task::spawn_blocking(move || store::recover(&paths, now_ms()))
                        .await
                        .expect("recovery does not panic")?
                };
                engine_config.audit_chain_head = Some(recovery.chain_head.clone());
                (Some(Writer::start(&paths)?), recovery)
            }
            None => (None, Recovery::default()),
        };
        let mut engine = Engine::new(engine_config)?;
        let client = http::client();
        let webhooks = match config.webhook {
            Some(c) => Some(WebhookDelivery::start(
                c,
                writer.as_ref().map(|(w, _)| w.clone()),
                client.clone(),
                recovery.undelivered.clone(),
            )?),
            None => None,
        };
        let now = now_ms();
        for i in &recovery.interrupted {
            engine.resume(now, &i.user_id, &i.state, &i.idempotency_key, Some(i.at_ms));
        }
        let (requests, rx) = mpsc::channel(1024);
        let (events, _) = broadcast::channel(4096);
        let driver = tokio::spawn(drive(Driver {
            engine,
            rx,
            events: events.clone(),
            writer: writer.as_ref().map(|(w, _)| w.clone()),
            webhooks: webhooks.as_ref().map(WebhookDelivery::sender),
            client,
        }));
        Ok(Self {
            requests,
            events,
            recovery,
            driver,
            webhooks,
            writer,
        })
    }

    /// What opening the durable files found: a torn line set aside, interrupted changes resumed,
    /// undelivered webhooks re-enqueued.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Every event from now on (state changes, violations, failures, audit records, webhooks, retries).
    /// A subscriber that falls more than 4,096 events behind misses the oldest; the audit log and the
    /// webhook outbox are the durable channels.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Changes an agent's state (the reference's `transitionState`). Resolves once the tenant accepted the
    /// change and its audit record is durable, or with the coded reason it was not made.
    pub async fn transition_state(
        &self,
        user_id: &str,
        state: &str,
    ) -> Result<StateChanged, TransitionError> {
        self.ask(|reply| Request::Transition {
            user: user_id.to_owned(),
            state: state.to_owned(),
            reply,
        })
        .await
        .unwrap_or_else(|| Err(stopped()))
    }

    /// Checks policy without changing anything (the reference's `validateStateChange`).
    pub async fn validate_state_change(
        &self,
        user_id: &str,
        state: &str,
    ) -> Result<Validation, TransitionError> {
        self.ask(|reply| Request::Validate {
            user: user_id.to_owned(),
            state: state.to_owned(),
            reply,
        })
        .await
        .unwrap_or_else(|| Err(stopped()))
    }

    /// The compliance report now (the reference's `getComplianceReport`).
    pub async fn compliance_report(&self) -> Option<ComplianceReport> {
        self.ask(Request::Report).await
    }

    /// The current idle stretch of an agent (the reference's `calculateIdleTime`), 0 if not idle.
    pub async fn idle_time(&self, user_id: &str) -> u64 {
        self.ask(|r| Request::IdleTime(user_id.to_owned(), r))
            .await
            .unwrap_or(0)
    }

    /// Idle time, time per state and utilization of one agent.
    pub async fn agent_metrics(&self, user_id: &str) -> Option<AgentMetrics> {
        self.ask(|r| Request::Metrics(user_id.to_owned(), r))
            .await
            .flatten()
    }

    /// Transitions not yet finished (resumed ones included).
    pub async fn unfinished(&self) -> usize {
        self.ask(Request::Unfinished).await.unwrap_or(0)
    }

    /// Webhook events accepted but not yet delivered.
    pub fn undelivered_webhooks(&self) -> usize {
        self.webhooks.as_ref().map_or(0, WebhookDelivery::pending)
    }

    /// Stops taking commands, finishes every transition in flight, syncs the durable files, then waits up
    /// to `webhook_drain` for the outbox to empty. What is left is delivered on the next start.
    pub async fn shutdown(self, webhook_drain: Duration) -> ShutdownSummary {
        let _ = self.ask(Request::Shutdown).await;
        let _ = self.driver.await;
        let undelivered_webhooks = match self.webhooks {
            Some(w) => w.drain(Instant::now() + webhook_drain).await,
            None => 0,
        };
        if let Some((writer, thread)) = self.writer {
            let _ = writer.flush().await;
            drop(writer);
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        ShutdownSummary {
            undelivered_webhooks,
        }
    }
}

fn stopped() -> TransitionError {
    TransitionError::new(
        ErrorCode::AuditLogUnavailable,
        "the manager has stopped (its durable audit log could not be written, or it was shut down)",
    )
}

struct Driver {
    engine: Engine,
    rx: mpsc::Receiver<Request>,
    events: broadcast::Sender<Event>,
    writer: Option<Writer>,
    webhooks: Option<mpsc::UnboundedSender<OutboxEntry>>,
    client: reqwest::Client,
}

async fn drive(mut d: Driver) {
    let (http_tx, mut http_rx) = mpsc::unbounded_channel::<http::Answer>();
    let mut waiting: HashMap<TransitionId, Waiter> = HashMap::new();
    let mut closing: Option<oneshot::Sender<()>> = None;
    let mut accepting = true;
    loop {
        // 1. Drain the engine.
        let mut transmits = Vec::new();
        let mut batch = Batch::default();
        let mut publish = Vec::new();
        let mut deadline = None;
        for output in d.engine.drain_outputs() {
            match output {
                Output::Transmit(r) => transmits.push(r),
                Output::Event(e) => {
                    match &e {
                        Event::AuditRecord(r) => batch.audit.push(r.clone()),
                        Event::ChangeIntent(i) => batch.intents.push(i.clone()),
                        Event::Webhook(w) if d.webhooks.is_some() => {
                            batch.outbox.push(OutboxEntry {
                                event_id: w.event_id.clone(),
                                body: serde_json::to_string(w).expect("payloads serialize"),
                            })
                        }
                        _ => {}
                    }
                    publish.push(e);
                }
                Output::Timeout(t) => deadline = t,
            }
        }
        // 2. Make the durable part durable before anything is sent or reported.
        let outbox = batch.outbox.clone();
        if let Some(w) = &d.writer {
            if !batch.is_empty() && !matches!(w.write(batch).await, Ok(Ok(()))) {
                tracing::error!("the durable audit log could not be written; stopping");
                for (_, waiter) in waiting.drain() {
                    match waiter {
                        Waiter::Change(r) => drop(r.send(Err(stopped()))),
                        Waiter::Check(r) => drop(r.send(Err(stopped()))),
                    }
                }
                if let Some(c) = closing.take() {
                    let _ = c.send(());
                }
                return;
            }
        }
        // 3. Perform the requests.
        for request in transmits {
            http::spawn_perform(&d.client, request, &http_tx);
        }
        // 4. Report: webhooks to delivery, outcomes to callers, events to subscribers.
        if let Some(hooks) = &d.webhooks {
            for entry in outbox {
                let _ = hooks.send(entry);
            }
        }
        for e in publish {
            match &e {
                Event::StateChanged(s) => {
                    if let Some(Waiter::Change(r)) = waiting.remove(&s.transition_id) {
                        let _ = r.send(Ok(s.clone()));
                    }
                }
                Event::TransitionFailed(f) => {
                    if let Some(Waiter::Change(r)) = waiting.remove(&f.transition_id) {
                        let _ = r.send(Err(f.error.clone()));
                    }
                }
                Event::ValidationCompleted(v) => {
                    if let Some(Waiter::Check(r)) = waiting.remove(&v.transition_id) {
                        let result = match (&v.error, &v.reason_code) {
                            (Some(e), _) => Err(e.clone()),
                            (None, rc) => Ok(Validation {
                                valid: true,
                                reason_code: rc.clone().unwrap_or_default(),
                            }),
                        };
                        let _ = r.send(result);
                    }
                }
                _ => {}
            }
            let _ = d.events.send(e);
        }
        if (closing.is_some() || !accepting) && d.engine.unfinished() == 0 {
            if let Some(w) = &d.writer {
                let _ = w.flush().await;
            }
            if let Some(c) = closing.take() {
                let _ = c.send(());
            }
            return;
        }
        // 5. Wait for the next thing to happen.
        tokio::select! {
            request = d.rx.recv(), if accepting && closing.is_none() => match request {
                None => accepting = false,
                Some(r) => handle_request(&mut d.engine, r, &mut waiting, &mut closing),
            },
            Some((id, result)) = http_rx.recv() => {
                let now = now_ms();
                match result {
                    Ok(response) => d.engine.handle_response(now, response),
                    Err(kind) => d.engine.handle_transport_error(now, id, kind),
                }
            }
            () = http::sleep_until_deadline(deadline) => {
                d.engine.handle_timeout(now_ms());
            }
        }
    }
}

fn handle_request(
    engine: &mut Engine,
    request: Request,
    waiting: &mut HashMap<TransitionId, Waiter>,
    closing: &mut Option<oneshot::Sender<()>>,
) {
    let now = now_ms();
    match request {
        Request::Transition { user, state, reply } => {
            let id = engine.transition(now, &user, &state);
            waiting.insert(id, Waiter::Change(reply));
        }
        Request::Validate { user, state, reply } => {
            let id = engine.validate(now, &user, &state);
            waiting.insert(id, Waiter::Check(reply));
        }
        Request::Report(r) => {
            let _ = r.send(engine.compliance_report(now));
        }
        Request::IdleTime(user, r) => {
            let _ = r.send(engine.idle_time(&user, now));
        }
        Request::Metrics(user, r) => {
            let _ = r.send(engine.history().agent_metrics(&user, now));
        }
        Request::Unfinished(r) => {
            let _ = r.send(engine.unfinished());
        }
        Request::Shutdown(r) => *closing = Some(r),
    }
}
