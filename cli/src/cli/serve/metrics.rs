//! The service's Prometheus metrics (`GET /metrics`), with the official client crate.
//!
//! Three sources feed them: the manager's events (transitions, refusals, deferrals, the observer's lag),
//! its I/O (every API request, token fetch and log sync, through [`IoObserver`]), and, at each scrape, its
//! status (the pacer's wait, the outbox). The HTTP layer counts requests by route and status itself.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use cxone_agent_state::core::{Event, Target};
use cxone_agent_state::{IoObserver, Status};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// How a transition ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are lower case
pub enum Ended {
    /// The tenant applied it.
    applied,
    /// Refused before anything was sent (policy, bad input) or failed at the tenant.
    failed,
    /// It may have reached the tenant: `OUTCOME_UNKNOWN`.
    unknown,
}

/// Labels of `transitions_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    /// How it ended.
    pub result: Ended,
    /// Its stable code (`OK` when applied).
    pub code: String,
}

/// Labels of `violations_blocked_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// The rule's code (`MANDATORY_BREAK_VIOLATION`, `AGENT_NOT_SCHEDULED`).
    pub rule: String,
}

/// Labels of `api_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// `api`, `wfm`, `token` or `webhook`.
    pub target: String,
    /// `host[:port]`.
    pub host: String,
    /// The HTTP status, or `none` when no answer came.
    pub status: String,
}

/// Labels of `token_refreshes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OkLabels {
    /// `ok` (a 2xx) or `error`.
    pub result: String,
}

/// The values of `deferrals_total`'s `step`.
const DEFERRAL_STEPS: [&str; 3] = ["deferred", "applied", "cancelled"];

/// Labels of `deferrals_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// `deferred`, `applied` or `cancelled`.
    pub step: String,
}

/// Labels of `http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route's pattern (`/v1/agents/{id}/state`), `unmatched` for no route.
    pub route: String,
    /// The method.
    pub method: String,
    /// The status answered.
    pub status: String,
}

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    transitions: Family<TransitionLabels, Counter>,
    violations_blocked: Family<RuleLabels, Counter>,
    deferrals: Family<StepLabels, Counter>,
    api_requests: Family<ApiLabels, Counter>,
    token_refreshes: Family<OkLabels, Counter>,
    transition_latency: Histogram,
    pacer_wait: Gauge<f64, AtomicU64>,
    outbox_depth: Gauge,
    outbox_oldest_age: Gauge<f64, AtomicU64>,
    dead_letters: Gauge,
    open_changes: Gauge,
    log_fsync: Histogram,
    observer_lag: Gauge<f64, AtomicU64>,
    observer_polls_failed: Counter,
    events_missed: Counter,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Histogram,
    unauthorized: Counter,
}

impl Metrics {
    /// Every metric registered, at zero.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("cxone_agent_state");
        let m = Self {
            transitions: Family::default(),
            violations_blocked: Family::default(),
            deferrals: Family::default(),
            api_requests: Family::default(),
            token_refreshes: Family::default(),
            // 1 ms .. ~65 s.
            transition_latency: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            pacer_wait: Gauge::default(),
            outbox_depth: Gauge::default(),
            outbox_oldest_age: Gauge::default(),
            dead_letters: Gauge::default(),
            open_changes: Gauge::default(),
            // 50 µs .. ~3 s.
            log_fsync: Histogram::new(exponential_buckets(0.000_05, 2.0, 17)),
            observer_lag: Gauge::default(),
            observer_polls_failed: Counter::default(),
            events_missed: Counter::default(),
            http_requests: Family::default(),
            // 100 µs .. ~6.5 s.
            http_duration: Histogram::new(exponential_buckets(0.000_1, 2.0, 17)),
            unauthorized: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "transitions",
            "State changes ended, by result and stable code",
            m.transitions.clone(),
        );
        registry.register(
            "violations_blocked",
            "Changes compliance policy refused before anything was sent, by rule",
            m.violations_blocked.clone(),
        );
        registry.register(
            "deferrals",
            "Deferred changes: held, applied after the break, or cancelled",
            m.deferrals.clone(),
        );
        registry.register(
            "api_requests",
            "HTTP requests to the tenant, the token endpoint and the webhook receiver, by target, host and status",
            m.api_requests.clone(),
        );
        registry.register(
            "token_refreshes",
            "Access token requests, by result",
            m.token_refreshes.clone(),
        );
        registry.register_with_unit(
            "transition_latency",
            "From command to the tenant's confirmation, of applied changes",
            Unit::Seconds,
            m.transition_latency.clone(),
        );
        registry.register_with_unit(
            "pacer_wait",
            "How long the tenant's request budget holds back the next request",
            Unit::Seconds,
            m.pacer_wait.clone(),
        );
        registry.register(
            "outbox_depth",
            "Webhook payloads accepted and not yet delivered",
            m.outbox_depth.clone(),
        );
        registry.register_with_unit(
            "outbox_oldest_age",
            "How long the oldest undelivered webhook payload has waited",
            Unit::Seconds,
            m.outbox_oldest_age.clone(),
        );
        registry.register(
            "outbox_dead_letters",
            "Webhook payloads set aside as dead letters",
            m.dead_letters.clone(),
        );
        registry.register(
            "open_changes",
            "State changes taken and not yet finished",
            m.open_changes.clone(),
        );
        registry.register_with_unit(
            "log_fsync",
            "Appending a group of records to the durable log and syncing it",
            Unit::Seconds,
            m.log_fsync.clone(),
        );
        registry.register_with_unit(
            "observer_lag",
            "How far behind the tenant the last poll of agent states is (cxone)",
            Unit::Seconds,
            m.observer_lag.clone(),
        );
        registry.register(
            "observer_polls_failed",
            "Polls of agent states that failed (cxone)",
            m.observer_polls_failed.clone(),
        );
        registry.register(
            "events_missed",
            "Engine events the metrics missed because they fell behind (counters undercount by this much)",
            m.events_missed.clone(),
        );
        registry.register(
            "http_requests",
            "Requests to this service, by route, method and status",
            m.http_requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer a request to this service (a streamed body: to its head)",
            Unit::Seconds,
            m.http_duration.clone(),
        );
        registry.register(
            "http_unauthorized",
            "Requests refused for a missing or wrong API key",
            m.unauthorized.clone(),
        );
        // Every step is shown from the start (at 0), so a dashboard's rate has a series before the first one.
        for step in DEFERRAL_STEPS {
            let _ = m.deferrals.get_or_create(&StepLabels {
                step: step.to_owned(),
            });
        }
        Arc::new(Self { registry, ..m })
    }

    /// Counts an engine event.
    pub fn event(&self, e: &Event) {
        match e {
            Event::StateChanged(s) => {
                self.transitions
                    .get_or_create(&TransitionLabels {
                        result: Ended::applied,
                        code: "OK".to_owned(),
                    })
                    .inc();
                self.transition_latency
                    .observe(Duration::from_millis(s.latency_ms).as_secs_f64());
            }
            Event::TransitionFailed(f) => {
                let result = if f.error.code == cxone_agent_state::core::ErrorCode::OutcomeUnknown {
                    Ended::unknown
                } else {
                    Ended::failed
                };
                self.transitions
                    .get_or_create(&TransitionLabels {
                        result,
                        code: f.error.code.as_str().to_owned(),
                    })
                    .inc();
            }
            Event::PolicyViolation(v) => {
                self.violations_blocked
                    .get_or_create(&RuleLabels {
                        rule: v.code.as_str().to_owned(),
                    })
                    .inc();
            }
            Event::Deferred(_) => self.deferral(DEFERRAL_STEPS[0]),
            Event::DeferredApplied(_) => self.deferral(DEFERRAL_STEPS[1]),
            Event::DeferredCancelled(_) => self.deferral(DEFERRAL_STEPS[2]),
            Event::ObservationHeartbeat(h) => {
                if let Some(lag) = h.lag_ms {
                    self.observer_lag
                        .set(Duration::from_millis(lag).as_secs_f64());
                }
                if !h.ok {
                    self.observer_polls_failed.inc();
                }
            }
            _ => {}
        }
    }

    fn deferral(&self, step: &str) {
        self.deferrals
            .get_or_create(&StepLabels {
                step: step.to_owned(),
            })
            .inc();
    }

    /// The subscriber fell `n` events behind.
    pub fn missed(&self, n: u64) {
        self.events_missed.inc_by(n);
    }

    /// A request to this service was answered.
    pub fn http(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status: status.to_string(),
            })
            .inc();
        self.http_duration.observe(elapsed.as_secs_f64());
    }

    /// A request was refused for its key.
    pub fn unauthorized(&self) {
        self.unauthorized.inc();
    }

    /// The text exposition, with the gauges read from `status` first.
    pub fn render(&self, status: Option<Status>) -> String {
        if let Some(s) = status {
            self.pacer_wait
                .set(Duration::from_millis(s.pacer_wait_ms).as_secs_f64());
            self.outbox_depth.set(gauge(s.pending_webhooks));
            self.outbox_oldest_age
                .set(Duration::from_millis(s.oldest_pending_webhook_ms).as_secs_f64());
            self.dead_letters.set(gauge(s.dead_letters));
            self.open_changes.set(gauge(s.open_changes));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl IoObserver for Metrics {
    fn request_finished(&self, target: Target, host: &str, status: Option<u16>, _: Duration) {
        let target_name = match target {
            Target::Api => "api",
            Target::Wfm => "wfm",
            Target::Token => "token",
            Target::Webhook => "webhook",
            _ => "other",
        };
        self.api_requests
            .get_or_create(&ApiLabels {
                target: target_name.to_owned(),
                host: host.to_owned(),
                status: status.map_or_else(|| "none".to_owned(), |s| s.to_string()),
            })
            .inc();
        if target == Target::Token {
            let ok = status.is_some_and(|s| (200..300).contains(&s));
            self.token_refreshes
                .get_or_create(&OkLabels {
                    result: if ok { "ok" } else { "error" }.to_owned(),
                })
                .inc();
        }
    }

    fn log_synced(&self, _records: usize, elapsed: Duration) {
        self.log_fsync.observe(elapsed.as_secs_f64());
    }
}
