//! Webhooks over real loopback HTTP: an event belongs to the receiver it was accepted for, across a restart
//! configured with another receiver; and a failed delivery says why (connection refused, the status the
//! receiver answered) without showing the receiver's query.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cxone_agent_state::{now_ms, AgentStateManager, ManagerConfig, Settings};
use cxone_agent_state_core::sim::{AgentPlan, SimConfig, SimTenant};
use cxone_agent_state_core::{DeadLetter, EngineConfig, RetryPolicy, Secret, WebhookConfig};
use cxone_agent_state_sim_server::{self as sim_server, SimServerHandle};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const HOUR: u64 = 3_600_000;

/// A webhook receiver on loopback: answers every delivery with `status` (changeable) and records the
/// `X-Event-Id` of each, with the status it got.
struct Receiver {
    url: String,
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<(String, u16)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts a receiver at `http://127.0.0.1:PORT{path}`.
    async fn start(path: &str, status: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{path}", listener.local_addr().unwrap());
        let status = Arc::new(AtomicU16::new(status));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (answer, log) = (status.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (answer, log) = (answer.clone(), log.clone());
                tokio::spawn(async move {
                    let _ = serve_one(stream, &answer, &log).await;
                });
            }
        });
        Self {
            url,
            status,
            seen,
            task,
        }
    }

    /// Event ids it accepted (answered 2xx).
    fn accepted(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(_, s)| (200..300).contains(s))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Deliveries it saw, whatever it answered.
    fn deliveries(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// Reads one HTTP/1.1 request (headers and a `Content-Length` body) and answers it; the connection closes.
async fn serve_one(
    stream: tokio::net::TcpStream,
    status: &AtomicU16,
    seen: &Mutex<Vec<(String, u16)>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let (mut event_id, mut length) = (String::new(), 0usize);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "x-event-id" => event_id = value.trim().to_owned(),
                "content-length" => length = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    let status = status.load(Ordering::SeqCst);
    seen.lock().unwrap().push((event_id, status));
    let answer =
        format!("HTTP/1.1 {status} Status\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    reader.get_mut().write_all(answer.as_bytes()).await
}

/// The simulated tenant over loopback, with one agent on shift now.
async fn tenant() -> SimServerHandle {
    let mut tenant = SimTenant::new(SimConfig {
        latency_ms: 2,
        latency_jitter_ms: 0,
        rate_per_minute: 6_000,
        ..SimConfig::default()
    });
    let now = now_ms();
    tenant.add_agent(AgentPlan::on_shift("alice", now - HOUR, now + 23 * HOUR));
    sim_server::start(SocketAddr::from(([127, 0, 0, 1], 0)), tenant)
        .await
        .expect("the simulated tenant starts")
}

/// A manager configuration for `tenant`, delivering webhooks to `webhook_url` with short backoffs.
fn config(tenant: &SimServerHandle, log: &Path, webhook_url: &str) -> ManagerConfig {
    let defaults = SimConfig::default();
    let mut engine = EngineConfig::new(
        tenant.base_url(),
        defaults.client_id,
        Secret::new(defaults.client_secret),
    );
    engine.seed = 3;
    engine.rate_limit.per_minute = 6_000;
    engine.webhook = Some(WebhookConfig {
        timeout_ms: 1_000,
        retry: RetryPolicy {
            base_ms: 50,
            cap_ms: 200,
            jitter_ms: 10,
            ..RetryPolicy::default()
        },
        ..WebhookConfig::new(webhook_url)
    });
    ManagerConfig::new(engine, Some(log.to_owned()))
}

/// Waits (polling) until `f` holds, for at most 10 s.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// A first run: alice goes READY while receiver A answers 503, and the run ends with the event undelivered.
/// Returns its event id.
async fn accept_an_event_while_a_is_down(
    tenant: &SimServerHandle,
    log: &Path,
    a: &Receiver,
) -> String {
    let manager = AgentStateManager::start(config(tenant, log, &a.url))
        .await
        .unwrap();
    manager.transition_state("alice", "READY").await.unwrap();
    assert!(
        eventually(|| a.deliveries() > 0).await,
        "A was tried (and answered 503)"
    );
    let summary = manager.shutdown(Duration::from_millis(100)).await;
    assert_eq!(summary.undelivered_webhooks, 1);
    let first = a.seen.lock().unwrap()[0].0.clone();
    assert!(a.accepted().is_empty());
    first
}

/// What the restart tests start from: the tenant, the log (in a temporary directory), receivers A (`/hook-a`)
/// and B (`b_path`, answering 200), and the event id of a first run that left it undelivered to A
/// ([`accept_an_event_while_a_is_down`]).
async fn after_a_first_run(
    b_path: &str,
) -> (
    SimServerHandle,
    tempfile::TempDir,
    PathBuf,
    Receiver,
    Receiver,
    String,
) {
    let tenant = tenant().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let a = Receiver::start("/hook-a", 503).await;
    let b = Receiver::start(b_path, 200).await;
    let event = accept_an_event_while_a_is_down(&tenant, &log, &a).await;
    (tenant, dir, log, a, b, event)
}

#[tokio::test]
async fn an_event_accepted_for_receiver_a_is_delivered_to_a_after_a_restart_configured_with_b() {
    let (tenant, _dir, log, a, b, event) = after_a_first_run("/hook-b?token=sekrit-b").await;

    // The next run is configured with B; A is back.
    a.status.store(200, Ordering::SeqCst);
    let manager = AgentStateManager::start(config(&tenant, &log, &b.url))
        .await
        .unwrap();
    let restored = manager.restored();
    assert_eq!(
        (
            restored.webhooks,
            restored.webhooks_to_original_receiver,
            restored.webhooks_dead_lettered_receiver_changed
        ),
        (1, 1, 0)
    );
    assert!(eventually(|| a.accepted() == [event.clone()]).await);
    // A change made in this run goes to B.
    manager.transition_state("alice", "PAUSED").await.unwrap();
    assert!(eventually(|| b.accepted().len() == 1).await);
    let summary = manager.shutdown(Duration::from_secs(5)).await;
    assert_eq!(summary.undelivered_webhooks, 0);
    assert!(
        !b.accepted().contains(&event),
        "the old event never went to B"
    );
    assert_eq!(a.accepted(), [event], "A got only its own event");

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("/hook-a"), "A's plain URL is kept");
    assert!(
        !text.contains("sekrit-b") && !text.contains("token=") && !text.contains("/hook-b"),
        "B's URL, which has a query, never enters the log"
    );
}

#[tokio::test]
async fn under_the_dead_letter_policy_the_event_for_a_is_set_aside_after_a_restart_with_b() {
    let (tenant, _dir, log, a, b, event) = after_a_first_run("/hook-b").await;
    let tries_of_a = a.deliveries();

    a.status.store(200, Ordering::SeqCst);
    let defaults = SimConfig::default();
    let base_url = tenant.base_url();
    let log_path = log.display().to_string();
    let env = [
        ("CXONE_BASE_URL", base_url.as_str()),
        ("CXONE_CLIENT_ID", defaults.client_id.as_str()),
        ("CXONE_CLIENT_SECRET", defaults.client_secret.as_str()),
        ("CXONE_AUDIT_LOG", log_path.as_str()),
        ("WORKFORCE_WEBHOOK_URL", b.url.as_str()),
        ("WORKFORCE_WEBHOOK_RECEIVER_CHANGE", "dead-letter"),
    ];
    let settings = Settings::from_lookup(|name| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap();
    let manager = AgentStateManager::start(settings.into_config().unwrap())
        .await
        .unwrap();
    let restored = manager.restored();
    assert_eq!(
        (
            restored.webhooks,
            restored.webhooks_dead_lettered_receiver_changed,
            restored.dead_letters
        ),
        (0, 1, 1)
    );
    let dead = manager.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].entry.event_id, event);
    assert!(
        dead[0]
            .dead
            .reason
            .contains("the configured receiver changed"),
        "{}",
        dead[0].dead.reason
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.deliveries(), tries_of_a, "nothing more went to A");
    assert_eq!(b.deliveries(), 0, "nor to B");
    manager.shutdown(Duration::from_millis(100)).await;
}

/// Log lines written while a test runs (tracing, captured on this thread: the tests' runtime is
/// single-threaded, so the manager's driver runs here too).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        let out = self.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || out.clone())
            .finish()
    }
}

/// Makes one change whose webhook to `url` fails until it is set aside as a dead letter (at the first failure
/// 150 ms after it was accepted). Returns the dead letter and the log lines written meanwhile.
async fn fail_until_dead_letter(url: &str) -> (DeadLetter, String) {
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(captured.subscriber());
    let tenant = tenant().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&tenant, &dir.path().join("audit.jsonl"), url);
    if let Some(w) = &mut config.engine.webhook {
        w.dead_letter_after_ms = 150;
    }
    let manager = AgentStateManager::start(config).await.unwrap();
    manager.transition_state("alice", "READY").await.unwrap();
    assert!(eventually(|| captured.text().contains("set aside as a dead letter")).await);
    let dead = manager.dead_letters().await;
    assert_eq!(dead.len(), 1, "set aside");
    manager.shutdown(Duration::from_millis(100)).await;
    (dead[0].dead.clone(), captured.text())
}

#[tokio::test]
async fn a_delivery_to_a_closed_port_warns_connection_refused_and_the_dead_letter_says_why() {
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{closed}/hook?token=sekrit");
    let (dead, text) = fail_until_dead_letter(&url).await;
    assert!(
        dead.reason
            .ends_with("(last attempt: no connection could be made)"),
        "{}",
        dead.reason
    );
    assert_eq!(dead.last_status, None);
    assert!(
        text.contains("webhook delivery failed: connection refused; next attempt in"),
        "{text}"
    );
    assert!(
        text.contains("set aside as a dead letter")
            && text.contains("last failure: connection refused"),
        "{text}"
    );
    assert!(
        text.contains(&format!("http://127.0.0.1:{closed}/hook?[redacted]")),
        "{text}"
    );
    assert!(!text.contains("sekrit"), "{text}");
}

#[tokio::test]
async fn a_receiver_answering_503_is_named_in_the_warning_and_in_the_dead_letter() {
    let a = Receiver::start("/hook", 503).await;
    let (dead, text) = fail_until_dead_letter(&a.url).await;
    assert_eq!(dead.last_status, Some(503));
    assert!(
        dead.reason
            .ends_with("(last attempt: the receiver answered 503)"),
        "{}",
        dead.reason
    );
    assert!(
        text.contains("webhook delivery failed: the receiver answered 503; next attempt in"),
        "{text}"
    );
}
