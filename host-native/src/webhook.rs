//! Webhook delivery: the core's [`Outbox`] state machine driven by a tokio task with reqwest.
//!
//! Payloads reach this task only after they are durable in the outbox file; a delivery mark is appended
//! when the receiver answers 2xx. What is not marked at exit is delivered again after the next start.

use std::time::Instant;

use cxone_agent_state_core::{ConfigError, Outbox, OutboxConfig, OutboxEntry, OutboxEvent};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::http;
use crate::manager::now_ms;
use crate::store::{Batch, Writer};

/// The running delivery task.
#[derive(Debug)]
pub struct WebhookDelivery {
    tx: mpsc::UnboundedSender<OutboxEntry>,
    pending: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl WebhookDelivery {
    /// Starts delivering to `config.url`, beginning with `undelivered` from an earlier run.
    pub fn start(
        config: OutboxConfig,
        writer: Option<Writer>,
        client: reqwest::Client,
        undelivered: Vec<OutboxEntry>,
    ) -> Result<Self, ConfigError> {
        let mut outbox = Outbox::new(config)?;
        let now = now_ms();
        for e in undelivered {
            let _ = outbox.enqueue(now, e);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (pending_tx, pending) = watch::channel(outbox.pending());
        let task = tokio::spawn(deliver(outbox, rx, pending_tx, writer, client));
        Ok(Self { tx, pending, task })
    }

    /// A sender for new (already durable) entries.
    pub fn sender(&self) -> mpsc::UnboundedSender<OutboxEntry> {
        self.tx.clone()
    }

    /// Entries accepted and not yet delivered.
    pub fn pending(&self) -> usize {
        *self.pending.borrow()
    }

    /// Waits until everything is delivered or `deadline` passes, then stops; returns what is left.
    pub async fn drain(mut self, deadline: Instant) -> usize {
        let deadline = tokio::time::Instant::from_std(deadline);
        let _ = tokio::time::timeout_at(deadline, self.pending.wait_for(|&n| n == 0)).await;
        let left = *self.pending.borrow();
        self.task.abort();
        left
    }
}

async fn deliver(
    mut outbox: Outbox,
    mut rx: mpsc::UnboundedReceiver<OutboxEntry>,
    pending: watch::Sender<usize>,
    writer: Option<Writer>,
    client: reqwest::Client,
) {
    let (http_tx, mut http_rx) = mpsc::unbounded_channel::<http::Answer>();
    let mut open = true;
    loop {
        let now = now_ms();
        while let Some(request) = outbox.poll_transmit(now) {
            http::spawn_perform(&client, request, &http_tx);
        }
        let mut delivered = Vec::new();
        while let Some(event) = outbox.poll_event() {
            match event {
                OutboxEvent::Delivered { event_id, .. } => delivered.push(event_id),
                OutboxEvent::RetryScheduled {
                    event_id,
                    attempt,
                    delay_ms,
                    status,
                    ..
                } => tracing::warn!(
                    event_id,
                    attempt,
                    delay_ms,
                    ?status,
                    "webhook delivery failed; retrying"
                ),
                _ => {}
            }
        }
        if !delivered.is_empty() {
            if let Some(w) = &writer {
                w.write_detached(Batch {
                    delivered,
                    ..Batch::default()
                });
            }
        }
        let _ = pending.send(outbox.pending());
        tokio::select! {
            entry = rx.recv(), if open => match entry {
                Some(e) => {
                    outbox.enqueue(now_ms(), e);
                }
                None => open = false,
            },
            Some((id, result)) = http_rx.recv() => match result {
                Ok(r) => outbox.handle_response(now_ms(), &r),
                Err(kind) => outbox.handle_transport_error(now_ms(), id, kind),
            },
            () = http::sleep_until_deadline(outbox.next_deadline()) => {
                outbox.handle_timeout(now_ms());
            }
        }
    }
}
