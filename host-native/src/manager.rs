//! `AgentStateManager`: the async face of the engine for Rust services.
//!
//! One driver task owns the engine and runs one `tokio::select!` over {a command, a finished HTTP call, the
//! next deadline}. After every round of inputs it drains the engine, appends every record to the durable log
//! and waits for the sync (one per round: group commit), and only then performs the requests and reports
//! outcomes — the engine's persist rule, nothing more. Everything else (policy, retries, pacing, tokens,
//! audit, webhooks) is decided in the core.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cxone_agent_state_core::{
    redact_url, AgentMetrics, AgentSnapshot, AgentView, ChainHead, CommandError, ComplianceReport,
    ConfigError, DeadLetterEntry, Deferred, Engine, EngineConfig, ErrorCode, Event, HttpResponse,
    Output, ProfileKind, Record, RequestId, Restored, StateChanged, Target, TransitionError,
    TransitionId, TransitionOptions, Transmit,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::clock::{Clocks, SystemClock, WallClock};
use crate::http;
use crate::store::{self, Recovery, StoreError, Writer};

/// Everything a manager needs.
#[derive(Clone)]
pub struct ManagerConfig {
    /// The engine: endpoint, credentials, limits, retries, webhooks.
    pub engine: EngineConfig,
    /// The durable log (JSON Lines; the audit log an auditor reads), locked for this process while it runs.
    /// `None` keeps nothing durable: records are only published as `Persisted` notices, with no promise
    /// that they survive a crash (for tests and demos).
    pub audit_log: Option<PathBuf>,
    /// The wall clock (the system's by default; tests step it). Deadlines always use tokio's monotonic clock.
    pub clock: Arc<dyn WallClock>,
    /// Start observing agent states changed elsewhere as soon as the manager starts, when the profile can
    /// (`cxone`; on `seed` this is ignored). Off by default: see
    /// [`AgentStateManager::start_observing`].
    pub observe_at_start: bool,
    /// Told of every HTTP request performed and every log sync, with their timings, for a host's metrics.
    /// `None` by default.
    pub io_observer: Option<Arc<dyn IoObserver>>,
}

/// What a host may want to measure of the manager's I/O (its metrics): every HTTP request the engine asked
/// for, once it finished, and every append-and-sync of the durable log. Called on the manager's tasks: keep
/// it quick (count, record a histogram) and never block.
pub trait IoObserver: Send + Sync + 'static {
    /// A request finished: who it went to, its host (`host[:port]`, never a path or a query), its status
    /// (`None`: no HTTP answer) and how long it took.
    fn request_finished(&self, target: Target, host: &str, status: Option<u16>, elapsed: Duration) {
        let _ = (target, host, status, elapsed);
    }

    /// A group of `records` was appended to the durable log and synced, in `elapsed`.
    fn log_synced(&self, records: usize, elapsed: Duration) {
        let _ = (records, elapsed);
    }
}

impl ManagerConfig {
    /// A configuration with this engine, this log and the system clock.
    pub fn new(engine: EngineConfig, audit_log: Option<PathBuf>) -> Self {
        Self {
            engine,
            audit_log,
            clock: Arc::new(SystemClock),
            observe_at_start: false,
            io_observer: None,
        }
    }

    /// The same configuration, telling `observer` of every request and log sync.
    pub fn with_io_observer(mut self, observer: Arc<dyn IoObserver>) -> Self {
        self.io_observer = Some(observer);
        self
    }

    /// The same configuration, observing from the start when the profile can (see
    /// [`observe_at_start`](Self::observe_at_start)).
    pub fn with_observe_at_start(mut self, observe: bool) -> Self {
        self.observe_at_start = observe;
        self
    }
}

impl std::fmt::Debug for ManagerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerConfig")
            .field("engine", &self.engine)
            .field("audit_log", &self.audit_log)
            .field("observe_at_start", &self.observe_at_start)
            .field("io_observer", &self.io_observer.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a manager could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid (`INVALID_CONFIG`, `INVALID_WEBHOOK_URL`).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The durable log could not be opened or is damaged (`AUDIT_LOG_CORRUPT`).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StartError {
    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Config(e) => e.code(),
            Self::Store(StoreError::Corrupt { .. }) => ErrorCode::AuditLogCorrupt,
            Self::Store(StoreError::Simulated { .. }) => ErrorCode::InvalidConfig,
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownSummary {
    /// Webhook payloads still undelivered when the drain time ran out; they go out on the next start.
    pub undelivered_webhooks: usize,
    /// Dead letters held (see `cxone-agent-state outbox list`).
    pub dead_letters: usize,
    /// Where the audit chain stands: its last record's seq and hash, an anchor for `audit verify --head`
    /// (a hash chain alone cannot see a deleted tail).
    pub audit_head: ChainHead,
    /// Changes that ended `CLOSED` during the stop: never sent, not made (audited).
    pub ended_closed: usize,
    /// Changes that ended `OUTCOME_UNKNOWN` during the stop: they may have reached the tenant; the next
    /// start settles them with new records.
    pub ended_unknown: usize,
}

/// What subscribers hear: every event, and every record once it is durable.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Notice {
    /// An engine event.
    Event(Event),
    /// A record, after it was made durable.
    Persisted(Record),
}

type Outcome<T> = oneshot::Sender<Result<T, TransitionError>>;

/// One row of [`Request::Transitions`].
struct ManyRow {
    user: String,
    state: String,
    options: TransitionOptions,
    done: Outcome<StateChanged>,
    deferred: oneshot::Sender<Deferred>,
}

enum Request {
    /// Rows admitted in order in one round (one log sync for their intents), up to the first refused `BUSY`.
    Transitions {
        rows: Vec<ManyRow>,
        accepted: oneshot::Sender<Vec<Result<TransitionId, CommandError>>>,
    },
    Validate {
        user: String,
        state: String,
        done: Outcome<Validation>,
    },
    Report(oneshot::Sender<ComplianceReport>),
    IdleTime(String, oneshot::Sender<u64>),
    Metrics(String, oneshot::Sender<Option<AgentMetrics>>),
    Counts(oneshot::Sender<Counts>),
    DeadLetters(oneshot::Sender<Vec<DeadLetterEntry>>),
    Replay(Option<String>, oneshot::Sender<usize>),
    StartObserving(oneshot::Sender<Result<(), CommandError>>),
    StopObserving(oneshot::Sender<()>),
    Agents(oneshot::Sender<Vec<AgentSnapshot>>),
    Unsettled(oneshot::Sender<usize>),
    CancelDeferred(String, oneshot::Sender<bool>),
    Status(oneshot::Sender<Status>),
    AgentView(String, oneshot::Sender<Option<AgentView>>),
    PrepareToken,
    StopAccepting(oneshot::Sender<()>),
    Shutdown(StopBounds, oneshot::Sender<ShutdownSummary>),
}

/// Counters of a running manager.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Changes not yet finished (resumed ones included).
    pub open_changes: usize,
    /// Webhook payloads accepted and not yet delivered.
    pub pending_webhooks: usize,
    /// Dead letters held.
    pub dead_letters: usize,
}

/// What a running manager's readiness and backlog look like (see [`AgentStateManager::status`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// A usable access token is held: a change can be sent without first authenticating.
    pub has_token: bool,
    /// The manager takes commands (not shut down, the log not failed).
    pub accepting: bool,
    /// Changes not yet finished.
    pub open_changes: usize,
    /// Webhook payloads accepted and not yet delivered.
    pub pending_webhooks: usize,
    /// How long the oldest of them has waited (ms).
    pub oldest_pending_webhook_ms: u64,
    /// Dead letters held.
    pub dead_letters: usize,
    /// How long the tenant's request budget holds back the next request (ms).
    pub pacer_wait_ms: u64,
}

enum Waiter {
    /// A change; the second sender hears if it is deferred (held until a break ends) first.
    Change(Outcome<StateChanged>, Option<oneshot::Sender<Deferred>>),
    Check(Outcome<Validation>),
}

/// How far a change got before it was first answered: finished, or held until its agent's break ends.
#[derive(Debug)]
#[non_exhaustive]
pub enum Progress {
    /// The change finished: applied, refused or failed.
    Finished(Result<StateChanged, TransitionError>),
    /// The change was deferred (asked with `defer`): it is held until the break ends, then checked again
    /// and sent; its outcome comes later as an event and in the audit log.
    Deferred(Deferred),
}

/// A change the engine has taken, in order: await it for the outcome.
#[derive(Debug)]
pub struct PendingChange {
    /// Its id.
    pub id: TransitionId,
    done: oneshot::Receiver<Result<StateChanged, TransitionError>>,
    deferred: oneshot::Receiver<Deferred>,
    log_failed: Arc<AtomicBool>,
}

impl PendingChange {
    /// The outcome: resolves once the tenant accepted the change and its audit record is durable, or with
    /// the coded reason it was not (or, `OUTCOME_UNKNOWN`, may not have been) made.
    pub async fn outcome(self) -> Result<StateChanged, TransitionError> {
        self.done
            .await
            .unwrap_or_else(|_| Err(no_answer(&self.log_failed)))
    }

    /// The outcome, or the news that the change was deferred, whichever comes first: a service answers a
    /// deferred change at once (HTTP 202) rather than holding its caller through a break.
    pub async fn outcome_unless_deferred(self) -> Progress {
        let Self {
            mut done,
            mut deferred,
            log_failed,
            ..
        } = self;
        tokio::select! {
            biased;
            result = &mut done => {
                Progress::Finished(result.unwrap_or_else(|_| Err(no_answer(&log_failed))))
            }
            Ok(d) = &mut deferred => Progress::Deferred(d),
            else => Progress::Finished(
                done.await.unwrap_or_else(|_| Err(no_answer(&log_failed))),
            ),
        }
    }
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
    log_failed: Arc<AtomicBool>,
    notices: broadcast::Sender<Notice>,
    recovery: Recovery,
    restored: Restored,
    driver: JoinHandle<()>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for AgentStateManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentStateManager")
            .field("durable", &self.writer.is_some())
            .field("restored", &self.restored)
            .finish_non_exhaustive()
    }
}

/// Commands waiting for the driver at most; past this, callers wait for room (back-pressure).
const COMMAND_QUEUE: usize = 1024;

impl AgentStateManager {
    /// Opens the durable log (recovering from a crash if needed), restores what it holds open — changes
    /// are finished, undelivered webhooks sent — and starts the driver.
    pub async fn start(config: ManagerConfig) -> Result<Self, StartError> {
        let ManagerConfig {
            engine,
            audit_log,
            clock,
            observe_at_start,
            io_observer,
        } = config;
        let observe_at_start = observe_at_start && engine.profile == ProfileKind::Cxone;
        let mut engine = Engine::new(engine)?;
        let clocks = Clocks::new(clock.clone());
        let (recovery, writer, thread) = match audit_log {
            Some(path) => {
                let now = clock.unix_ms();
                let (recovery, writer, thread) =
                    tokio::task::spawn_blocking(move || store::open(&path, now))
                        .await
                        .expect("recovery does not panic")?;
                (recovery, Some(writer), Some(thread))
            }
            None => (Recovery::default(), None, None),
        };
        let restored = engine.restore(clocks.now(), recovery.state.clone());
        if restored.webhooks_to_original_receiver > 0 {
            tracing::info!(
                "the webhook receiver changed: {} webhook event(s) accepted for an earlier receiver are \
                 delivered to that receiver",
                restored.webhooks_to_original_receiver
            );
        }
        if restored.webhooks_dead_lettered_receiver_changed > 0 {
            tracing::info!(
                "the webhook receiver changed: {} webhook event(s) accepted for an earlier receiver were set \
                 aside as dead letters (replay them to send them to the configured receiver)",
                restored.webhooks_dead_lettered_receiver_changed
            );
        }
        if observe_at_start {
            // Only `CLOSED` could refuse it, and a fresh engine is open.
            if let Err(e) = engine.start_observing(clocks.now()) {
                tracing::warn!("observation could not start: {e}");
            }
        }
        let (requests, rx) = mpsc::channel(COMMAND_QUEUE);
        let (notices, _) = broadcast::channel(4096);
        let log_failed = Arc::new(AtomicBool::new(false));
        let driver = tokio::spawn(drive(Driver {
            log_failed: log_failed.clone(),
            engine,
            clocks,
            rx,
            notices: notices.clone(),
            writer,
            client: http::client(),
            io_observer,
            waiting: HashMap::new(),
            webhook_requests: HashMap::new(),
            webhook_attempts: HashMap::new(),
            closing: None,
        }));
        Ok(Self {
            requests,
            log_failed,
            notices,
            recovery,
            restored,
            driver,
            writer: thread,
        })
    }

    /// What opening the durable log found.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// What the engine did with the open state it found: changes resumed or abandoned, webhooks put back in
    /// line, dead letters held — and webhooks accepted for another receiver than the configured one (the URL
    /// changed since), sent to that receiver (`webhooks_to_original_receiver`) or set aside
    /// (`webhooks_dead_lettered_receiver_changed`), which a host should say at start.
    pub fn restored(&self) -> Restored {
        self.restored
    }

    /// Every event and every durable record from now on. A subscriber that falls more than 4,096 notices
    /// behind misses the oldest; the durable log is the channel that never loses anything.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Hands a state change to the engine and returns once the engine has taken it (or refused it: `BUSY`,
    /// `CLOSED`). Changes submitted one after another from one task reach the engine, and the tenant, in
    /// that order for each agent: await this in input order, then await the outcomes in any order.
    pub async fn submit_transition(
        &self,
        user_id: &str,
        state: &str,
    ) -> Result<PendingChange, TransitionError> {
        self.submit_transition_with(user_id, state, &TransitionOptions::default())
            .await
    }

    /// [`submit_transition`](Self::submit_transition) with options, e.g. the caller's reference, which the
    /// durable log keeps in the change's intent and every audit record of it (also when a later start
    /// finishes the change), and the outcome carries as `reference`:
    ///
    /// ```no_run
    /// # async fn demo(manager: cxone_agent_state::AgentStateManager) -> Result<(), cxone_agent_state::core::TransitionError> {
    /// use cxone_agent_state::core::TransitionOptions;
    /// let options = TransitionOptions::default().with_reference("ticket-4711");
    /// let changed = manager
    ///     .submit_transition_with("agent-7", "READY", &options)
    ///     .await?
    ///     .outcome()
    ///     .await?;
    /// assert_eq!(changed.reference.as_deref(), Some("ticket-4711"));
    /// # Ok(()) }
    /// ```
    ///
    /// A reference that is not 1 to [`MAX_REFERENCE_LEN`](crate::core::MAX_REFERENCE_LEN) printable ASCII
    /// characters is refused here, with nothing audited: `INVALID_REFERENCE`.
    pub async fn submit_transition_with(
        &self,
        user_id: &str,
        state: &str,
        options: &TransitionOptions,
    ) -> Result<PendingChange, TransitionError> {
        self.submit_transitions([(user_id, state, options)])
            .await
            .pop()
            .expect("one answer for one change")
    }

    /// Submits many changes at once, admitted in the order given in one step of the driver (one log sync for
    /// all their intents, where one call per change would cost a sync each). Admission stops at the first
    /// change the engine refuses as `BUSY` (its queue of open changes is full): the answer holds one entry
    /// per row up to and including that one, and the rows after it were not offered, so a caller that waits
    /// for room and submits the rest keeps their order. Each entry is as
    /// [`submit_transition_with`](Self::submit_transition_with) would answer.
    pub async fn submit_transitions<'a>(
        &self,
        rows: impl IntoIterator<Item = (&'a str, &'a str, &'a TransitionOptions)>,
    ) -> Vec<Result<PendingChange, TransitionError>> {
        let mut many = Vec::new();
        let mut receivers = Vec::new();
        for (user, state, options) in rows {
            let (done, done_rx) = oneshot::channel();
            let (deferred, deferred_rx) = oneshot::channel();
            many.push(ManyRow {
                user: user.to_owned(),
                state: state.to_owned(),
                options: options.clone(),
                done,
                deferred,
            });
            receivers.push((done_rx, deferred_rx));
        }
        if many.is_empty() {
            return Vec::new();
        }
        let Some(answers) = self
            .ask(|accepted| Request::Transitions {
                rows: many,
                accepted,
            })
            .await
        else {
            return vec![Err(self.stopped())];
        };
        answers
            .into_iter()
            .zip(receivers)
            .map(|(answer, (done, deferred))| {
                let id = answer.map_err(TransitionError::from)?;
                Ok(PendingChange {
                    id,
                    done,
                    deferred,
                    log_failed: self.log_failed.clone(),
                })
            })
            .collect()
    }

    /// Changes an agent's state (the reference's `transitionState`). Resolves once the tenant accepted the
    /// change and its audit record is durable, or with the coded reason it was not made (`OUTCOME_UNKNOWN`:
    /// it may have been).
    pub async fn transition_state(
        &self,
        user_id: &str,
        state: &str,
    ) -> Result<StateChanged, TransitionError> {
        self.submit_transition(user_id, state)
            .await?
            .outcome()
            .await
    }

    /// Why a call got no answer: the log failed, or the manager was shut down.
    fn stopped(&self) -> TransitionError {
        no_answer(&self.log_failed)
    }

    /// Checks policy without changing anything (the reference's `validateStateChange`).
    pub async fn validate_state_change(
        &self,
        user_id: &str,
        state: &str,
    ) -> Result<Validation, TransitionError> {
        self.ask(|done| Request::Validate {
            user: user_id.to_owned(),
            state: state.to_owned(),
            done,
        })
        .await
        .unwrap_or_else(|| Err(self.stopped()))
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

    /// Open changes, pending webhooks and dead letters.
    pub async fn counts(&self) -> Counts {
        self.ask(Request::Counts).await.unwrap_or_default()
    }

    /// The dead letters held, oldest first.
    pub async fn dead_letters(&self) -> Vec<DeadLetterEntry> {
        self.ask(Request::DeadLetters).await.unwrap_or_default()
    }

    /// Puts dead letters back in line for delivery: the one with `event_id`, or all. Returns how many.
    pub async fn replay_dead_letters(&self, event_id: Option<&str>) -> usize {
        self.ask(|r| Request::Replay(event_id.map(str::to_owned), r))
            .await
            .unwrap_or(0)
    }

    /// Starts observing agent states changed elsewhere (`cxone`): the engine polls the tenant's agent states
    /// on its own timer, and every change it sees reaches subscribers as a
    /// [`StateObserved`](crate::core::StateObserved) notice (with an observation record in the audit log),
    /// every poll as an [`ObservationHeartbeat`](crate::core::ObservationHeartbeat), and every
    /// `OUTCOME_UNKNOWN` change the tenant's answers decide as an
    /// [`OutcomeSettled`](crate::core::OutcomeSettled) (with a settlement record). Starting twice is
    /// harmless.
    ///
    /// `OBSERVE_UNSUPPORTED` on `seed`, which has no endpoint to read states from; `CLOSED` once the
    /// manager stopped.
    pub async fn start_observing(&self) -> Result<(), TransitionError> {
        self.ask(Request::StartObserving)
            .await
            .ok_or_else(|| self.stopped())?
            .map_err(TransitionError::from)
    }

    /// Stops observing (a poll in flight is ignored when it comes back). Unknown outcomes not yet settled
    /// stay unknown.
    pub async fn stop_observing(&self) {
        self.ask(Request::StopObserving).await;
    }

    /// Every known agent's current state, where it is known from (`change`, `ours`, `external`) and how old
    /// it is (empty once the manager stopped).
    pub async fn agents(&self) -> Vec<AgentSnapshot> {
        self.ask(Request::Agents).await.unwrap_or_default()
    }

    /// `OUTCOME_UNKNOWN` changes that observation may still settle (0 once the manager stopped). A host
    /// that wants the truth before it exits observes until this is 0 or its patience runs out.
    pub async fn unsettled_outcomes(&self) -> usize {
        self.ask(Request::Unsettled).await.unwrap_or(0)
    }

    /// Cancels the agent's deferred change (one asked with
    /// [`TransitionOptions::defer`](crate::core::TransitionOptions::defer) and held until its break ends): it
    /// ends `DEFERRAL_CANCELLED`, audited. Returns whether there was one.
    pub async fn cancel_deferred(&self, user_id: &str) -> bool {
        self.ask(|r| Request::CancelDeferred(user_id.to_owned(), r))
            .await
            .unwrap_or(false)
    }

    /// One agent now: current state, recent history, idle time and utilization, adherence so far, the
    /// deferred change held for it. `None` when the engine knows nothing of the agent (or stopped).
    pub async fn agent_view(&self, user_id: &str) -> Option<AgentView> {
        self.ask(|r| Request::AgentView(user_id.to_owned(), r))
            .await
            .flatten()
    }

    /// Readiness and backlog: whether a token is held, whether commands are taken, the outbox's depth and
    /// age, the pacer's wait. `None` once the manager stopped.
    pub async fn status(&self) -> Option<Status> {
        self.ask(Request::Status).await
    }

    /// Fetches an access token now if none is held (a service asks at start, and again until it has one,
    /// to be ready before its first change). Returns at once; see [`status`](Self::status).
    pub async fn prepare_token(&self) {
        let _ = self.requests.send(Request::PrepareToken).await;
    }

    /// Whether the durable log failed (the manager stopped answering changes because of it).
    pub fn log_failed(&self) -> bool {
        self.log_failed.load(Ordering::SeqCst)
    }

    /// [`shutdown`](Self::shutdown) for a manager shared between tasks (a service's handlers hold it): the
    /// same steps, answered once every change is finished and every record durable; the driver ends right
    /// after, and the log's writer with it, a moment later (a host that gets the manager back, e.g. with
    /// `Arc::into_inner`, and opens the log again calls [`shutdown`](Self::shutdown), which waits for both).
    /// Later calls answer `CLOSED`. `bounds` say how long changes may run (see [`StopBounds`]).
    pub async fn stop(&self, bounds: StopBounds) -> ShutdownSummary {
        self.ask(|reply| Request::Shutdown(bounds, reply))
            .await
            .unwrap_or_default()
    }

    /// Stops taking changes (later ones answer `CLOSED`) while everything else goes on: the first step of
    /// a service's graceful stop, before [`stop`](Self::stop).
    pub async fn stop_accepting(&self) {
        self.ask(Request::StopAccepting).await;
    }

    /// Stops taking commands (they answer `CLOSED`), finishes every change already taken, waits up to
    /// `webhook_drain` for the outbox to empty, and syncs the log. What is left is delivered on the next start.
    pub async fn shutdown(self, webhook_drain: Duration) -> ShutdownSummary {
        let summary = self
            .ask(|reply| Request::Shutdown(StopBounds::unbounded(webhook_drain), reply))
            .await
            .unwrap_or_default();
        let _ = self.driver.await;
        if let Some(thread) = self.writer {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        summary
    }
}

/// Why a call got no answer: the log failed (the flag is set), or the manager was shut down.
fn no_answer(log_failed_flag: &AtomicBool) -> TransitionError {
    if log_failed_flag.load(Ordering::SeqCst) {
        log_failed()
    } else {
        stopped()
    }
}

/// The answer of a manager that is no longer running.
fn stopped() -> TransitionError {
    TransitionError::new(ErrorCode::Closed, "the manager has stopped")
}

fn log_failed() -> TransitionError {
    TransitionError::new(
        ErrorCode::AuditLogUnavailable,
        "the durable log could not be written, so no outcome can be reported safely; the manager stopped",
    )
}

/// How long a [`stop`](AgentStateManager::stop) lets the changes already taken run: a service's graceful stop
/// is bounded, so that a supervisor's kill never comes in the middle of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StopBounds {
    /// After this, every change never sent ends `CLOSED`, audited: nothing of it reached the tenant.
    /// `None`: each runs to its end.
    pub abandon_unsent_after: Option<Duration>,
    /// After this, every change still open ends: one that may have reached the tenant as
    /// `OUTCOME_UNKNOWN` (the next start settles it), any other as `CLOSED`. `None`: none is cut short.
    pub close_after: Option<Duration>,
    /// How long to wait for undelivered webhooks (what is left goes out on the next start).
    pub webhook_drain: Duration,
}

impl StopBounds {
    /// Every change runs to its end; webhooks get `webhook_drain`.
    pub fn unbounded(webhook_drain: Duration) -> Self {
        Self {
            webhook_drain,
            ..Self::default()
        }
    }

    /// A service's stop: changes never sent end after `grace`; those sent get `answer_within` more (one
    /// request's timeout: an answer already on its way arrives) before the rest end; webhooks get
    /// `webhook_drain`, counted from the start of the stop.
    pub fn graceful(grace: Duration, answer_within: Duration, webhook_drain: Duration) -> Self {
        Self {
            abandon_unsent_after: Some(grace),
            close_after: Some(grace.saturating_add(answer_within)),
            webhook_drain,
        }
    }
}

struct Closing {
    /// `None`: wait for every webhook, however long.
    drain_until: Option<Instant>,
    /// Changes ended `CLOSED` and `OUTCOME_UNKNOWN` since the stop began (the engine's bounds end them).
    ended_closed: usize,
    ended_unknown: usize,
    reply: oneshot::Sender<ShutdownSummary>,
}

/// The latest delivery attempt of a webhook payload still waiting: where it went (as log lines may show
/// it, see [`redact_url`]) and, once it failed, why.
struct LastAttempt {
    request: RequestId,
    receiver: String,
    failure: Option<String>,
}

struct Driver {
    log_failed: Arc<AtomicBool>,
    engine: Engine,
    clocks: Clocks,
    rx: mpsc::Receiver<Request>,
    notices: broadcast::Sender<Notice>,
    writer: Option<Writer>,
    client: reqwest::Client,
    io_observer: Option<Arc<dyn IoObserver>>,
    waiting: HashMap<TransitionId, Waiter>,
    /// Webhook deliveries in flight: their payload's event id.
    webhook_requests: HashMap<RequestId, String>,
    /// The latest attempt of each payload still waiting, by event id.
    webhook_attempts: HashMap<String, LastAttempt>,
    closing: Option<Closing>,
}

/// Runs the driver; when it stops, the requests still in flight are dropped and waited for, so nothing the
/// manager started is still talking to the network once [`AgentStateManager::shutdown`] returns.
async fn drive(d: Driver) {
    let mut in_flight = JoinSet::new();
    run(d, &mut in_flight).await;
    in_flight.shutdown().await;
}

async fn run(mut d: Driver, in_flight: &mut JoinSet<()>) {
    let (http_tx, mut http_rx) = mpsc::unbounded_channel::<http::Answer>();
    let mut commands_open = true;
    loop {
        // 1. Drain the engine.
        let mut records = Vec::new();
        let mut transmits = Vec::new();
        let mut events = Vec::new();
        let mut deadline = None;
        for output in d.engine.drain_outputs() {
            match output {
                Output::Persist(r) => records.push(r),
                Output::Transmit(t) => transmits.push(t),
                Output::Event(e) => events.push(e),
                Output::Timeout(t) => deadline = t,
            }
        }
        // 2. Durable before anything is sent or reported.
        if !records.is_empty() {
            // With no subscriber the records go to the writer as they are: no copy for the notices.
            let notify = d.notices.receiver_count() > 0;
            if let Some(w) = &d.writer {
                let batch = if notify {
                    records.clone()
                } else {
                    std::mem::take(&mut records)
                };
                let (count, started) = (batch.len(), std::time::Instant::now());
                if !matches!(w.write(batch).await, Ok(Ok(()))) {
                    tracing::error!("the durable log could not be written; stopping");
                    return d.fail_everyone(events);
                }
                if let Some(o) = &d.io_observer {
                    o.log_synced(count, started.elapsed());
                }
            }
            if notify {
                for r in records {
                    let _ = d.notices.send(Notice::Persisted(r));
                }
            }
        }
        // 3. Perform the requests.
        //    Webhook failures are logged first, with their cause, before a new attempt takes its place.
        for e in &events {
            d.warn_webhook(e);
        }
        for t in transmits {
            d.track_webhook(&t);
            http::spawn_perform(
                in_flight,
                &d.client,
                (t.id, t.target),
                t.request,
                &http_tx,
                d.io_observer.clone(),
            );
        }
        while in_flight.try_join_next().is_some() {}
        // 4. Report.
        for e in events {
            d.report(&e);
            let _ = d.notices.send(Notice::Event(e));
        }
        if d.done() {
            return d.reply_closing();
        }
        // 5. Wait for the next thing to happen; take everything else already there too (one log sync for
        //    the lot).
        let wake = deadline.and_then(|at| d.clocks.instant(at));
        // The drain deadline wakes the loop once; after it, only the open changes are waited for.
        let drain_until = d
            .closing
            .as_ref()
            .and_then(|c| c.drain_until)
            .filter(|t| *t > Instant::now());
        tokio::select! {
            request = d.rx.recv(), if commands_open => match request {
                Some(r) => d.handle(r),
                None => commands_open = false,
            },
            Some((id, result)) = http_rx.recv() => d.answer(id, result),
            () = sleep_until(wake) => d.engine.handle_timeout(d.clocks.now()),
            () = sleep_until(drain_until) => {}
        }
        while let Ok((id, result)) = http_rx.try_recv() {
            d.answer(id, result);
        }
        if commands_open {
            while let Ok(r) = d.rx.try_recv() {
                d.handle(r);
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    fn answer(&mut self, id: RequestId, result: Result<HttpResponse, http::Failure>) {
        if let Some(event_id) = self.webhook_requests.remove(&id) {
            let failure = match &result {
                Ok(r) if (200..300).contains(&r.status) => None,
                Ok(r) => Some(format!("the receiver answered {}", r.status)),
                Err(f) => Some(f.cause.clone()),
            };
            // A late answer to an attempt the engine already gave up on is not the latest attempt's.
            if let Some(attempt) = self
                .webhook_attempts
                .get_mut(&event_id)
                .filter(|a| a.request == id)
            {
                attempt.failure = failure;
            }
        }
        let now = self.clocks.now();
        match result {
            Ok(response) => self.engine.handle_response(now, id, response),
            Err(f) => self.engine.handle_transport_error(now, id, f.kind),
        }
    }

    /// Remembers a webhook delivery, so that its failure can be told with its cause.
    fn track_webhook(&mut self, t: &Transmit) {
        if t.target == Target::Webhook {
            let event_id = t
                .request
                .header("x-event-id")
                .unwrap_or_default()
                .to_owned();
            self.webhook_requests.insert(t.id, event_id.clone());
            // A new attempt: an earlier attempt's cause must not be told as this one's.
            self.webhook_attempts.insert(
                event_id,
                LastAttempt {
                    request: t.id,
                    receiver: redact_url(&t.request.url),
                    failure: None,
                },
            );
        }
    }

    /// Warns of a failed webhook delivery, naming its cause: the receiver's status, or why there was no
    /// answer (connection refused, DNS, TLS, timeout). The receiver is shown without user info or query.
    fn warn_webhook(&mut self, e: &Event) {
        match e {
            Event::WebhookRetryScheduled(r) => {
                let attempt = self.webhook_attempts.get(&r.event_id);
                // No cause of ours: the engine gave up waiting before the answer came.
                let cause =
                    attempt
                        .and_then(|a| a.failure.clone())
                        .unwrap_or_else(|| match r.status {
                            Some(s) => format!("the receiver answered {s}"),
                            None => "no answer in time".to_owned(),
                        });
                tracing::warn!(
                    event_id = %r.event_id,
                    receiver = attempt.map_or("", |a| a.receiver.as_str()),
                    attempt = r.attempt,
                    "webhook delivery failed: {cause}; next attempt in {} ms",
                    r.delay_ms
                );
            }
            Event::WebhookDeadLettered(d) => {
                let attempt = self.webhook_attempts.remove(&d.event_id);
                // The core's reason names the kind of failure; ours may say more (refused, DNS, TLS).
                let last = attempt
                    .as_ref()
                    .and_then(|a| a.failure.as_ref())
                    .filter(|cause| !d.reason.contains(cause.as_str()))
                    .map(|cause| format!("; last failure: {cause}"))
                    .unwrap_or_default();
                tracing::warn!(
                    event_id = %d.event_id,
                    receiver = attempt.as_ref().map_or("", |a| a.receiver.as_str()),
                    attempts = d.attempts,
                    "webhook event set aside as a dead letter: {}{last}",
                    d.reason
                );
            }
            Event::WebhookDelivered(d) => {
                self.webhook_attempts.remove(&d.event_id);
            }
            _ => {}
        }
    }

    fn handle(&mut self, request: Request) {
        let now = self.clocks.now();
        match request {
            Request::Validate { user, state, done } => {
                match self.engine.validate(now, &user, &state) {
                    Ok(id) => {
                        self.waiting.insert(id, Waiter::Check(done));
                    }
                    Err(e) => {
                        let _ = done.send(Err(e.into()));
                    }
                }
            }
            Request::Report(r) => {
                let _ = r.send(self.engine.compliance_report(now));
            }
            Request::IdleTime(user, r) => {
                let _ = r.send(self.engine.idle_time(&user, now));
            }
            Request::Metrics(user, r) => {
                let _ = r.send(self.engine.agent_metrics(&user, now));
            }
            Request::Counts(r) => {
                let _ = r.send(self.counts());
            }
            Request::DeadLetters(r) => {
                let _ = r.send(self.engine.log_state().dead_letters().cloned().collect());
            }
            Request::Replay(event_id, r) => {
                let _ = r.send(self.engine.replay_dead_letters(now, event_id.as_deref()));
            }
            Request::StartObserving(r) => {
                let _ = r.send(self.engine.start_observing(now));
            }
            Request::StopObserving(r) => {
                self.engine.stop_observing();
                let _ = r.send(());
            }
            Request::Agents(r) => {
                let _ = r.send(self.engine.agents(now));
            }
            Request::Unsettled(r) => {
                let _ = r.send(self.engine.unsettled_outcomes());
            }
            Request::CancelDeferred(user, r) => {
                let _ = r.send(self.engine.cancel_deferred(now, &user));
            }
            Request::Status(r) => {
                let _ = r.send(Status {
                    has_token: self.engine.has_token(now),
                    accepting: self.closing.is_none() && !self.engine.is_closed(),
                    open_changes: self.engine.open_changes(),
                    pending_webhooks: self.engine.pending_webhooks(),
                    oldest_pending_webhook_ms: self.engine.oldest_pending_webhook_ms(now),
                    dead_letters: self.engine.dead_letters(),
                    pacer_wait_ms: self.engine.pacer_wait_ms(now),
                });
            }
            Request::PrepareToken => self.engine.prepare_token(now),
            Request::AgentView(user, r) => {
                let _ = r.send(self.engine.agent_view(&user, now));
            }
            Request::Transitions { rows, accepted } => {
                let mut answers = Vec::with_capacity(rows.len());
                for row in rows {
                    let result =
                        self.engine
                            .transition_with(now, &row.user, &row.state, &row.options);
                    let busy = matches!(&result, Err(e) if e.code() == ErrorCode::Busy);
                    if let Ok(id) = result {
                        self.waiting
                            .insert(id, Waiter::Change(row.done, Some(row.deferred)));
                    }
                    answers.push(result);
                    // Later rows wait for room: admitting them now would put them before this one.
                    if busy {
                        break;
                    }
                }
                let _ = accepted.send(answers);
            }
            Request::StopAccepting(reply) => {
                self.engine.stop_accepting();
                let _ = reply.send(());
            }
            Request::Shutdown(bounds, reply) => {
                // Nothing new is polled while the changes in flight finish, within the bounds.
                let ms = |d: Option<Duration>| {
                    d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                };
                self.engine.stop_within(
                    now,
                    ms(bounds.abandon_unsent_after),
                    ms(bounds.close_after),
                );
                self.closing = Some(Closing {
                    drain_until: Instant::now().checked_add(bounds.webhook_drain),
                    ended_closed: 0,
                    ended_unknown: 0,
                    reply,
                });
            }
        }
    }

    /// Hands an outcome to the caller waiting for it.
    fn report(&mut self, e: &Event) {
        match e {
            Event::StateChanged(s) => {
                if let Some(Waiter::Change(r, _)) = self.waiting.remove(&s.transition_id) {
                    let _ = r.send(Ok(s.clone()));
                }
            }
            Event::TransitionFailed(f) => {
                if let Some(c) = &mut self.closing {
                    match f.error.code {
                        ErrorCode::Closed => c.ended_closed += 1,
                        ErrorCode::OutcomeUnknown => c.ended_unknown += 1,
                        _ => {}
                    }
                }
                if let Some(Waiter::Change(r, _)) = self.waiting.remove(&f.transition_id) {
                    let _ = r.send(Err(f.error.clone()));
                }
            }
            Event::Deferred(d) => {
                if let Some(Waiter::Change(_, told)) = self.waiting.get_mut(&d.transition_id) {
                    if let Some(tx) = told.take() {
                        let _ = tx.send(d.clone());
                    }
                }
            }
            Event::ValidationCompleted(v) => {
                if let Some(Waiter::Check(r)) = self.waiting.remove(&v.transition_id) {
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
    }

    /// Shutting down, every change finished, and the outbox empty or out of time.
    fn done(&self) -> bool {
        let Some(c) = &self.closing else {
            return false;
        };
        // A closed engine delivers nothing more: what is left waits in the log for the next start.
        self.engine.open_changes() == 0
            && (self.engine.pending_webhooks() == 0
                || self.engine.is_closed()
                || c.drain_until.is_some_and(|t| Instant::now() >= t))
    }

    fn counts(&self) -> Counts {
        Counts {
            open_changes: self.engine.open_changes(),
            pending_webhooks: self.engine.pending_webhooks(),
            dead_letters: self.engine.dead_letters(),
        }
    }

    /// Answers the shutdown request, if there was one, with what is left. Every record is already durable:
    /// each write was awaited before its round went on.
    fn reply_closing(mut self) {
        if let Some(c) = self.closing.take() {
            let counts = self.counts();
            let _ = c.reply.send(ShutdownSummary {
                undelivered_webhooks: counts.pending_webhooks,
                dead_letters: counts.dead_letters,
                audit_head: self.engine.chain_head().clone(),
                ended_closed: c.ended_closed,
                ended_unknown: c.ended_unknown,
            });
        }
    }

    /// The log cannot be written: nothing more is sent, and every caller hears what is known. `unreported`
    /// are this round's events, whose records never became durable.
    fn fail_everyone(mut self, unreported: Vec<Event>) {
        self.log_failed.store(true, Ordering::SeqCst);
        // Close the engine: changes that may have reached the tenant end as OUTCOME_UNKNOWN, the rest as
        // not made. Their records cannot be written either; the outcomes still reach the callers.
        self.engine.close(self.clocks.now());
        let closing: Vec<Event> = self
            .engine
            .drain_outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e),
                _ => None,
            })
            .collect();
        for e in unreported.into_iter().chain(closing) {
            let e = match e {
                // Applied by the tenant, but not audited: the caller must not take it as a plain success.
                Event::StateChanged(s) => {
                    if let Some(Waiter::Change(r, _)) = self.waiting.remove(&s.transition_id) {
                        let _ = r.send(Err(TransitionError::new(
                            ErrorCode::AuditLogUnavailable,
                            "the tenant applied this change, but its audit record could not be made durable",
                        )));
                    }
                    continue;
                }
                Event::TransitionFailed(mut f) if f.error.code != ErrorCode::OutcomeUnknown => {
                    f.error = log_failed();
                    Event::TransitionFailed(f)
                }
                other => other,
            };
            self.report(&e);
        }
        for (_, waiter) in self.waiting.drain() {
            match waiter {
                Waiter::Change(r, _) => drop(r.send(Err(log_failed()))),
                Waiter::Check(r) => drop(r.send(Err(log_failed()))),
            }
        }
        self.reply_closing();
    }
}
