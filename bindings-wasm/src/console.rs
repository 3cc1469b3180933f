//! The console module's exports: the engine, the webhook outbox and small helpers.

use cxone_agent_state_core::{
    AgentState, Engine, EngineConfig, ErrorCode, HttpResponse, Outbox, OutboxConfig, OutboxEntry,
    ReasonCodeTable, RequestId, Secret, TransportErrorKind,
};
use wasm_bindgen::prelude::*;

use crate::{coded, config_error, from_js, time, to_js};
use cxone_agent_state_core::TransitionError;

fn transition_error(e: &TransitionError) -> JsValue {
    coded(e.code.as_str(), &e.message)
}

/// Header pairs flattened as `[name, value, name, value, …]` (cheap to pass from `fetch`'s `Headers`).
fn header_pairs(flat: Vec<String>) -> Vec<(String, String)> {
    let mut it = flat.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

/// The sans-IO engine. Hand inputs in with the current time, then `drain()` outputs until the timeout.
///
/// ```js
/// const engine = new Engine({ baseUrl: "https://acme.api.nice.incontact.com",
///   credentials: { clientId: "id", clientSecret: "secret" } });
/// engine.transition(Date.now(), "agent-7", "READY");
/// for (const out of engine.drain()) handle(out); // transmit, event, then timeout
/// ```
#[wasm_bindgen(js_name = Engine)]
pub struct WasmEngine {
    inner: Engine,
}

#[wasm_bindgen(js_class = Engine)]
impl WasmEngine {
    /// Builds an engine; throws `INVALID_CONFIG` (with the field named) on a bad configuration.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "EngineConfig")] config: JsValue,
    ) -> Result<WasmEngine, JsValue> {
        let config: EngineConfig = from_js("engine config", &config)?;
        let inner = Engine::new(config).map_err(|e| config_error(&e))?;
        Ok(Self { inner })
    }

    /// Starts a state change; returns its transition id.
    pub fn transition(&mut self, now_ms: f64, user_id: &str, state: &str) -> f64 {
        self.inner.transition(time(now_ms), user_id, state).0 as f64
    }

    /// Starts a policy check; returns its transition id.
    pub fn validate(&mut self, now_ms: f64, user_id: &str, state: &str) -> f64 {
        self.inner.validate(time(now_ms), user_id, state).0 as f64
    }

    /// Hands in an HTTP answer: the request id, the status, the headers flattened as `[name, value, …]`,
    /// and the body text.
    #[wasm_bindgen(js_name = handleResponse)]
    pub fn handle_response(
        &mut self,
        now_ms: f64,
        id: f64,
        status: u16,
        headers: Vec<String>,
        body: String,
    ) {
        self.inner.handle_response(
            time(now_ms),
            HttpResponse {
                id: RequestId(id as u64),
                status,
                headers: header_pairs(headers),
                body,
            },
        );
    }

    /// Hands in a request that got no answer.
    #[wasm_bindgen(js_name = handleTransportError)]
    pub fn handle_transport_error(
        &mut self,
        now_ms: f64,
        id: f64,
        #[wasm_bindgen(unchecked_param_type = "TransportErrorKind")] kind: &str,
    ) {
        let kind = match kind {
            "connect" => TransportErrorKind::Connect,
            "reset" => TransportErrorKind::Reset,
            "timeout" => TransportErrorKind::Timeout,
            _ => TransportErrorKind::Other,
        };
        self.inner
            .handle_transport_error(time(now_ms), RequestId(id as u64), kind);
    }

    /// Hands in the token source's answer to a `tokenRequested` event.
    #[wasm_bindgen(js_name = handleAccessToken)]
    pub fn handle_access_token(
        &mut self,
        now_ms: f64,
        request_id: f64,
        access_token: &str,
        expires_in_ms: f64,
    ) {
        self.inner.handle_access_token(
            time(now_ms),
            RequestId(request_id as u64),
            Ok((Secret::new(access_token), time(expires_in_ms))),
        );
    }

    /// Tells the engine the token source failed.
    #[wasm_bindgen(js_name = handleAccessTokenError)]
    pub fn handle_access_token_error(&mut self, now_ms: f64, request_id: f64, message: &str) {
        self.inner.handle_access_token(
            time(now_ms),
            RequestId(request_id as u64),
            Err(message.to_owned()),
        );
    }

    /// Advances timers (early calls are harmless).
    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(&mut self, now_ms: f64) {
        self.inner.handle_timeout(time(now_ms));
    }

    /// Every output up to and including the `timeout` one.
    #[wasm_bindgen(unchecked_return_type = "EngineOutput[]")]
    pub fn drain(&mut self) -> JsValue {
        to_js(&self.inner.drain_outputs())
    }

    /// The reference's `calculateIdleTime`.
    #[wasm_bindgen(js_name = idleTime)]
    pub fn idle_time(&self, user_id: &str, now_ms: f64) -> f64 {
        self.inner.idle_time(user_id, time(now_ms)) as f64
    }

    /// The compliance report at `now_ms`.
    #[wasm_bindgen(js_name = complianceReport, unchecked_return_type = "ComplianceReport")]
    pub fn compliance_report(&self, now_ms: f64) -> JsValue {
        to_js(&self.inner.compliance_report(time(now_ms)))
    }

    /// The compliance report at `now_ms` as `section,key,value` CSV (the CLI's `report --csv` layout).
    #[wasm_bindgen(js_name = complianceReportCsv)]
    pub fn compliance_report_csv(&self, now_ms: f64) -> String {
        self.inner.compliance_report(time(now_ms)).to_csv()
    }

    /// Idle time, time per state and utilization of one agent (`null` if unknown).
    #[wasm_bindgen(js_name = agentMetrics, unchecked_return_type = "AgentMetrics | null")]
    pub fn agent_metrics(&self, user_id: &str, now_ms: f64) -> JsValue {
        to_js(&self.inner.history().agent_metrics(user_id, time(now_ms)))
    }

    /// The reason code a state is sent with; throws `INVALID_STATE` for a malformed name.
    #[wasm_bindgen(js_name = reasonCodeFor)]
    pub fn reason_code_for(&self, state: &str) -> Result<String, JsValue> {
        let state = AgentState::parse(state).map_err(|e| transition_error(&e))?;
        Ok(self
            .inner
            .config()
            .reason_codes
            .reason_for(&state)
            .to_owned())
    }
}

/// The reference module's `getReasonCodeForState` with the default table; throws `INVALID_STATE`.
#[wasm_bindgen(js_name = reasonCodeForState)]
pub fn reason_code_for_state(state: &str) -> Result<String, JsValue> {
    let state = AgentState::parse(state).map_err(|e| transition_error(&e))?;
    Ok(ReasonCodeTable::default().reason_for(&state).to_owned())
}

/// Every stable error code.
#[wasm_bindgen(js_name = errorCodes, unchecked_return_type = "ErrorCode[]")]
pub fn error_codes() -> JsValue {
    to_js(&ErrorCode::ALL.map(ErrorCode::as_str))
}

/// Checks a webhook URL (https, or http on loopback); throws `INVALID_WEBHOOK_URL`.
#[wasm_bindgen(js_name = validateWebhookUrl)]
pub fn validate_webhook_url(url: &str) -> Result<(), JsValue> {
    cxone_agent_state_core::validate_webhook_url(url).map_err(|e| config_error(&e))
}

/// The API base URL of a tenant domain (`https://{domain}.api.nice.incontact.com`); throws `INVALID_CONFIG`
/// for a domain that is not letters, digits and `-`.
#[wasm_bindgen(js_name = tenantBaseUrl)]
pub fn tenant_base_url(domain: &str) -> Result<String, JsValue> {
    cxone_agent_state_core::tenant_base_url(domain).map_err(|e| config_error(&e))
}

/// Whether an audit record's `hash` matches its content (the chain's canonical encoding and SHA-256); throws
/// `INVALID_CONFIG` if the value is not an audit record.
#[wasm_bindgen(js_name = verifyAuditRecord)]
pub fn verify_audit_record(
    #[wasm_bindgen(unchecked_param_type = "AuditRecord")] record: JsValue,
) -> Result<bool, JsValue> {
    let record: cxone_agent_state_core::AuditRecord = from_js("audit record", &record)?;
    Ok(record.compute_hash() == record.hash)
}

/// The webhook outbox: at-least-once delivery with backoff (in memory in the browser).
#[wasm_bindgen(js_name = Outbox)]
pub struct WasmOutbox {
    inner: Outbox,
}

#[wasm_bindgen(js_class = Outbox)]
impl WasmOutbox {
    /// `{url, secret?, timeoutMs?, baseBackoffMs?, maxBackoffMs?, jitterMs?, maxInFlight?, seed?}`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(
            unchecked_param_type = "{ url: string; secret?: string | null; timeoutMs?: number; baseBackoffMs?: number; maxBackoffMs?: number; jitterMs?: number; maxInFlight?: number; seed?: number }"
        )]
        config: JsValue,
    ) -> Result<WasmOutbox, JsValue> {
        let config: OutboxConfig = from_js("outbox config", &config)?;
        let inner = Outbox::new(config).map_err(|e| config_error(&e))?;
        Ok(Self { inner })
    }

    /// Queues a payload (JSON text) under its event id.
    pub fn enqueue(&mut self, now_ms: f64, event_id: &str, body: &str) {
        let _ = self.inner.enqueue(
            time(now_ms),
            OutboxEntry {
                event_id: event_id.to_owned(),
                body: body.to_owned(),
            },
        );
    }

    /// The next delivery to perform, if one is due.
    #[wasm_bindgen(js_name = pollTransmit, unchecked_return_type = "HttpRequest | null")]
    pub fn poll_transmit(&mut self, now_ms: f64) -> JsValue {
        to_js(&self.inner.poll_transmit(time(now_ms)))
    }

    /// Hands in a receiver's answer (headers flattened as `[name, value, …]`).
    #[wasm_bindgen(js_name = handleResponse)]
    pub fn handle_response(&mut self, now_ms: f64, id: f64, status: u16, headers: Vec<String>) {
        self.inner.handle_response(
            time(now_ms),
            &HttpResponse {
                id: RequestId(id as u64),
                status,
                headers: header_pairs(headers),
                body: String::new(),
            },
        );
    }

    /// Hands in a delivery that got no answer.
    #[wasm_bindgen(js_name = handleTransportError)]
    pub fn handle_transport_error(&mut self, now_ms: f64, id: f64) {
        self.inner.handle_transport_error(
            time(now_ms),
            RequestId(id as u64),
            TransportErrorKind::Other,
        );
    }

    /// Advances timers.
    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(&mut self, now_ms: f64) {
        self.inner.handle_timeout(time(now_ms));
    }

    /// The next outbox event (`{type: "delivered" | "retryScheduled", …}`), or `null`.
    #[wasm_bindgen(js_name = pollEvent, unchecked_return_type = "{ type: string; eventId: string } | null")]
    pub fn poll_event(&mut self) -> JsValue {
        to_js(&self.inner.poll_event())
    }

    /// When `handleTimeout` next has work (Unix ms), or `null`.
    #[wasm_bindgen(js_name = nextDeadline)]
    pub fn next_deadline(&self) -> Option<f64> {
        self.inner.next_deadline().map(|d| d as f64)
    }

    /// Payloads accepted and not yet delivered.
    pub fn pending(&self) -> f64 {
        self.inner.pending() as f64
    }
}
