//! The console module's exports: the engine and small helpers.

use cxone_agent_state_core::adherence::{AdherenceInput, RuleTable, ScheduledShift};
use cxone_agent_state_core::cxone::acd::CxoneReasonTable;
use cxone_agent_state_core::{
    AgentState, CommandError, Engine, EngineConfig, ErrorCode, HttpResponse, Input, LogState,
    ReasonCodeTable, Record, RequestId, Secret, TransitionError, TransitionId, TransitionOptions,
    TransportErrorKind,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::{coded, config_error, from_js, now, to_js};

fn transition_error(e: &TransitionError) -> JsValue {
    coded(e.code.as_str(), &e.message)
}

/// A command's transition id, or its refusal (`BUSY`, `CLOSED`) as a coded `Error`.
fn command_result(result: Result<TransitionId, CommandError>) -> Result<f64, JsValue> {
    result
        .map(|id| id.0 as f64)
        .map_err(|e| transition_error(&e.into()))
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

fn request_id(id: f64) -> RequestId {
    RequestId(crate::time(id))
}

/// The sans-IO engine. Every call that changes something takes the time as two numbers: `monoMs` from a
/// monotonic clock (`performance.now()`: every deadline is measured on it) and `unixMs` from the wall clock
/// (`Date.now()`: only records carry it).
///
/// The drive loop: hand in a command or an answer, then `drain()` and act on every output in order —
/// **persist each `persist` record before performing any later `transmit` or reporting any later `event`** —
/// and call `handleTimeout` when the monotonic clock reaches the last output's deadline.
///
/// ```js
/// const engine = new Engine({ baseUrl: "https://acme.api.nice.incontact.com",
///   credentials: { clientId: "id", clientSecret: "secret" } });
/// const id = engine.transition(performance.now(), Date.now(), "agent-7", "READY"); // throws BUSY, CLOSED
/// for (const out of engine.drain()) await act(out); // transmit, persist, event, … then timeout
/// ```
#[wasm_bindgen(js_name = Engine)]
pub struct WasmEngine {
    inner: Engine,
}

#[wasm_bindgen(js_class = Engine)]
impl WasmEngine {
    /// Builds an engine; throws `INVALID_CONFIG` (with the field named) or `INVALID_WEBHOOK_URL` on a bad
    /// configuration.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "EngineConfig")] config: JsValue,
    ) -> Result<WasmEngine, JsValue> {
        let config: EngineConfig = from_js("engine config", &config)?;
        let inner = Engine::new(config).map_err(|e| config_error(&e))?;
        Ok(Self { inner })
    }

    // ---- commands ---------------------------------------------------------------------------------------

    /// Starts a state change; returns its transition id (its outcome is a `stateChanged` or
    /// `transitionFailed` event with that id). Throws `BUSY` when too many changes are open, `CLOSED` after
    /// `close()` or `stopAccepting()`.
    ///
    /// `options` (optional, `TransitionOptions`):
    /// - `reference`: the caller's reference of the change — 1 to 128 printable ASCII characters, e.g. a
    ///   ticket number — kept in its intent, every audit record of it and its outcome event, never sent to
    ///   the tenant; any other string throws `INVALID_REFERENCE`;
    /// - `reason`: the reason code to set the state with instead of the table's: on `cxone`, one of the
    ///   agent's team's unavailable codes (`"Lunch"`); a name no code has fails the change with
    ///   `UNKNOWN_REASON_CODE` before anything is sent;
    /// - `actor`: who asks (`{role: "agent" | "supervisor" | "system", id?}`; `INVALID_ACTOR` if malformed);
    /// - `override`: a supervisor's override of the policy, `{actor, reason}` (`INVALID_OVERRIDE` if either
    ///   is missing);
    /// - `defer`: hold a READY a due break refuses until the break ends (a `deferred` event), rather than
    ///   fail it.
    pub fn transition(
        &mut self,
        mono_ms: f64,
        unix_ms: f64,
        user_id: &str,
        state: &str,
        #[wasm_bindgen(unchecked_param_type = "TransitionOptions | undefined")] options: JsValue,
    ) -> Result<f64, JsValue> {
        let options: TransitionOptions = if options.is_undefined() || options.is_null() {
            TransitionOptions::default()
        } else {
            from_js("transition options", &options)?
        };
        command_result(
            self.inner
                .transition_with(now(mono_ms, unix_ms), user_id, state, &options),
        )
    }

    /// Starts a policy check; returns its transition id (its outcome is a `validationCompleted` event).
    /// Throws `BUSY` or `CLOSED` like `transition`.
    pub fn validate(
        &mut self,
        mono_ms: f64,
        unix_ms: f64,
        user_id: &str,
        state: &str,
    ) -> Result<f64, JsValue> {
        command_result(self.inner.validate(now(mono_ms, unix_ms), user_id, state))
    }

    /// Puts dead letters back in line for delivery: the one with `eventId`, or all. Returns how many.
    #[wasm_bindgen(js_name = replayDeadLetters)]
    pub fn replay_dead_letters(
        &mut self,
        mono_ms: f64,
        unix_ms: f64,
        event_id: Option<String>,
    ) -> f64 {
        self.inner
            .replay_dead_letters(now(mono_ms, unix_ms), event_id.as_deref()) as f64
    }

    /// Cancels the agent's deferred change, if it has one (it ends `DEFERRAL_CANCELLED`, audited, with a
    /// `deferredCancelled` event). Returns whether there was one.
    #[wasm_bindgen(js_name = cancelDeferred)]
    pub fn cancel_deferred(&mut self, mono_ms: f64, unix_ms: f64, user_id: &str) -> bool {
        self.inner.cancel_deferred(now(mono_ms, unix_ms), user_id)
    }

    /// Stops taking commands (they throw `CLOSED`); changes already taken run to their end.
    #[wasm_bindgen(js_name = stopAccepting)]
    pub fn stop_accepting(&mut self) {
        self.inner.stop_accepting();
    }

    /// Closes the engine for good: every open change ends now (`OUTCOME_UNKNOWN` if it may have reached the
    /// tenant, `CLOSED` otherwise), each audited — `drain()` afterwards to persist and report them. Later
    /// commands throw `CLOSED`; later inputs are ignored.
    pub fn close(&mut self, mono_ms: f64, unix_ms: f64) {
        self.inner.close(now(mono_ms, unix_ms));
    }

    /// Continues from the records a previous run persisted (in order): open changes are finished,
    /// undelivered webhooks sent. Call it once, before any command. Throws `AUDIT_LOG_CORRUPT` (naming the
    /// record) if a record does not follow from the ones before it.
    #[wasm_bindgen(unchecked_return_type = "Restored")]
    pub fn restore(
        &mut self,
        mono_ms: f64,
        unix_ms: f64,
        #[wasm_bindgen(unchecked_param_type = "LogRecord[]")] records: JsValue,
    ) -> Result<JsValue, JsValue> {
        let corrupt = |e: String| coded(ErrorCode::AuditLogCorrupt.as_str(), &e);
        let records: js_sys::Array = records
            .dyn_into()
            .map_err(|_| corrupt("the records are not a list".into()))?;
        let mut state = LogState::default();
        // One record at a time, parsed as its line would be (the smallest code path for the module).
        for (i, r) in records.iter().enumerate() {
            let line: String = js_sys::JSON::stringify(&r)
                .map_err(|_| corrupt(format!("record {i} is not JSON")))?
                .into();
            let record = Record::parse_json(&line)
                .map_err(|e| corrupt(format!("record {i} is not a log record: {e}")))?;
            state
                .apply(&record)
                .map_err(|e| corrupt(format!("record {i}: {e}")))?;
        }
        Ok(to_js(&self.inner.restore(now(mono_ms, unix_ms), state)))
    }

    // ---- observation (`cxone`) ---------------------------------------------------------------------------

    /// Starts observing agent states changed elsewhere (`cxone` only): the engine polls the tenant's
    /// `agents/states` on a timer of its own (`EngineConfig.observe`) and reports `stateObserved`,
    /// `observationHeartbeat` and `outcomeSettled` events; `drain()` afterwards. Starting twice is harmless.
    /// Throws `OBSERVE_UNSUPPORTED` on `seed` (it has no endpoint to read states from), `CLOSED` once closed.
    ///
    /// ```js
    /// engine.startObserving(performance.now(), Date.now());
    /// for (const out of engine.drain()) await act(out); // the first poll is a `transmit`
    /// ```
    #[wasm_bindgen(js_name = startObserving)]
    pub fn start_observing(&mut self, mono_ms: f64, unix_ms: f64) -> Result<(), JsValue> {
        self.inner
            .start_observing(now(mono_ms, unix_ms))
            .map_err(|e| transition_error(&e.into()))
    }

    /// Stops polling (a page in flight is ignored when it comes back); unknown outcomes stay as they are.
    #[wasm_bindgen(js_name = stopObserving)]
    pub fn stop_observing(&mut self) {
        self.inner.stop_observing();
    }

    /// Whether the observer is running.
    #[wasm_bindgen(js_name = isObserving)]
    pub fn is_observing(&self) -> bool {
        self.inner.is_observing()
    }

    /// Every known agent's current state, where it is known from (`change`, `ours`, `external`), how old it
    /// is, and whether the observed states are stale.
    #[wasm_bindgen(unchecked_return_type = "AgentSnapshot[]")]
    pub fn agents(&self, mono_ms: f64, unix_ms: f64) -> JsValue {
        to_js(&self.inner.agents(now(mono_ms, unix_ms)))
    }

    /// `OUTCOME_UNKNOWN` changes that observation may still settle.
    #[wasm_bindgen(js_name = unsettledOutcomes)]
    pub fn unsettled_outcomes(&self) -> f64 {
        self.inner.unsettled_outcomes() as f64
    }

    // ---- inputs -----------------------------------------------------------------------------------------

    /// Hands in an HTTP answer to request `id`: the status, the headers flattened as `[name, value, …]`,
    /// and the body text.
    #[wasm_bindgen(js_name = handleResponse)]
    pub fn handle_response(
        &mut self,
        mono_ms: f64,
        unix_ms: f64,
        id: f64,
        status: u16,
        headers: Vec<String>,
        body: String,
    ) {
        self.inner.handle_response(
            now(mono_ms, unix_ms),
            request_id(id),
            HttpResponse::new(status, header_pairs(headers), body),
        );
    }

    /// Hands in a request that got no answer. `connect` says it never left (so it cannot have been applied);
    /// when unsure, say `other`.
    #[wasm_bindgen(js_name = handleTransportError)]
    pub fn handle_transport_error(
        &mut self,
        mono_ms: f64,
        unix_ms: f64,
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
            .handle_transport_error(now(mono_ms, unix_ms), request_id(id), kind);
    }

    /// Hands in the token source's answer to a `tokenRequested` event: the token and its remaining life, or
    /// (with no token) why the source failed; on `cxone`, the API and WFM bases when the source knows them.
    #[wasm_bindgen(js_name = handleAccessToken)]
    #[allow(clippy::too_many_arguments)]
    pub fn handle_access_token(
        &mut self,
        mono_ms: f64,
        unix_ms: f64,
        request_id: f64,
        access_token: Option<String>,
        expires_in_ms: f64,
        error: Option<String>,
        api_base: Option<String>,
        wfm_base: Option<String>,
    ) {
        self.inner.handle_input(Input::AccessToken {
            now: now(mono_ms, unix_ms),
            id: self::request_id(request_id),
            access_token: access_token.map(Secret::new),
            expires_in_ms: crate::time(expires_in_ms),
            error,
            api_base,
            wfm_base,
        });
    }

    /// Advances timers (early calls are harmless).
    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(&mut self, mono_ms: f64, unix_ms: f64) {
        self.inner.handle_timeout(now(mono_ms, unix_ms));
    }

    // ---- outputs ----------------------------------------------------------------------------------------

    /// Every output up to and including the `timeout` one (a monotonic deadline, or `null`).
    #[wasm_bindgen(unchecked_return_type = "EngineOutput[]")]
    pub fn drain(&mut self) -> JsValue {
        to_js(&self.inner.drain_outputs())
    }

    // ---- getters ----------------------------------------------------------------------------------------

    /// The reference's `calculateIdleTime`.
    #[wasm_bindgen(js_name = idleTime)]
    pub fn idle_time(&self, user_id: &str, mono_ms: f64, unix_ms: f64) -> f64 {
        self.inner.idle_time(user_id, now(mono_ms, unix_ms)) as f64
    }

    /// The compliance report.
    #[wasm_bindgen(js_name = complianceReport, unchecked_return_type = "ComplianceReport")]
    pub fn compliance_report(&self, mono_ms: f64, unix_ms: f64) -> JsValue {
        to_js(&self.inner.compliance_report(now(mono_ms, unix_ms)))
    }

    /// Adherence and conformance so far, per agent and for the team: the agents' timelines as the engine
    /// knows them against `schedules` (`{ [userId]: ScheduledShift[] }`), or on `cxone` when none are given
    /// the schedule exports the engine holds; `rules` is the rule table (default when absent). Throws
    /// `INVALID_CONFIG` on a malformed schedule or table.
    #[wasm_bindgen(js_name = adherenceReport, unchecked_return_type = "AdherenceReport")]
    pub fn adherence_report(
        &self,
        mono_ms: f64,
        unix_ms: f64,
        #[wasm_bindgen(unchecked_param_type = "Record<string, ScheduledShift[]> | undefined")]
        schedules: JsValue,
        #[wasm_bindgen(unchecked_param_type = "RuleTable | undefined")] rules: JsValue,
    ) -> Result<JsValue, JsValue> {
        let schedules: Option<std::collections::BTreeMap<String, Vec<ScheduledShift>>> =
            match schedules.is_undefined() || schedules.is_null() {
                true => None,
                false => Some(from_js("schedules", &schedules)?),
            };
        let rules: RuleTable = match rules.is_undefined() || rules.is_null() {
            true => RuleTable::default(),
            false => from_js("rules", &rules)?,
        };
        Ok(to_js(&self.inner.adherence_report(
            now(mono_ms, unix_ms),
            schedules.as_ref(),
            &rules,
        )))
    }

    /// The compliance report as `section,key,value` CSV (the CLI's `report --csv` layout).
    #[wasm_bindgen(js_name = complianceReportCsv)]
    pub fn compliance_report_csv(&self, mono_ms: f64, unix_ms: f64) -> String {
        self.inner.compliance_report(now(mono_ms, unix_ms)).to_csv()
    }

    /// Idle time, time per state and utilization of one agent (`null` if unknown).
    #[wasm_bindgen(js_name = agentMetrics, unchecked_return_type = "AgentMetrics | null")]
    pub fn agent_metrics(&self, user_id: &str, mono_ms: f64, unix_ms: f64) -> JsValue {
        to_js(&self.inner.agent_metrics(user_id, now(mono_ms, unix_ms)))
    }

    /// The dead letters held, oldest first.
    #[wasm_bindgen(js_name = deadLetters, unchecked_return_type = "DeadLetterEntry[]")]
    pub fn dead_letters(&self) -> JsValue {
        let letters: Vec<_> = self.inner.log_state().dead_letters().collect();
        to_js(&letters)
    }

    /// Webhook payloads accepted and not yet delivered (dead letters excluded).
    #[wasm_bindgen(js_name = pendingWebhooks)]
    pub fn pending_webhooks(&self) -> f64 {
        self.inner.pending_webhooks() as f64
    }

    /// Commands not yet finished (resumed changes included).
    #[wasm_bindgen(js_name = openChanges)]
    pub fn open_changes(&self) -> f64 {
        self.inner.open_changes() as f64
    }

    /// API and token requests handed out and not yet answered.
    #[wasm_bindgen(js_name = inFlight)]
    pub fn in_flight(&self) -> f64 {
        self.inner.in_flight() as f64
    }

    /// Whether `close()` was called.
    #[wasm_bindgen(js_name = isClosed)]
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Where the audit chain stands.
    #[wasm_bindgen(js_name = chainHead, unchecked_return_type = "ChainHead")]
    pub fn chain_head(&self) -> JsValue {
        to_js(self.inner.chain_head())
    }

    /// The reason code a state is set with (on `cxone`, the unavailable code's name); throws
    /// `INVALID_STATE` for a malformed name.
    #[wasm_bindgen(js_name = reasonCodeFor)]
    pub fn reason_code_for(&self, state: &str) -> Result<String, JsValue> {
        let state = AgentState::parse(state).map_err(|e| transition_error(&e))?;
        Ok(self.inner.reason_code(&state))
    }
}

/// The reference module's `getReasonCodeForState` with the default table; throws `INVALID_STATE`.
#[wasm_bindgen(js_name = reasonCodeForState)]
pub fn reason_code_for_state(state: &str) -> Result<String, JsValue> {
    let state = AgentState::parse(state).map_err(|e| transition_error(&e))?;
    Ok(ReasonCodeTable::default().reason_for(&state).to_owned())
}

/// The `cxone` profile's reason-code table from the `CXONE_REASON_CODES` text (`"NOT_READY=Break,PAUSED=Meeting"`:
/// entries on top of the defaults, `*` the fallback), for `EngineConfig.cxone.reasonCodes`; throws
/// `INVALID_CONFIG` naming a bad entry.
#[wasm_bindgen(js_name = cxoneReasonCodes, unchecked_return_type = "{ codes: Record<string, string>; fallback: string }")]
pub fn cxone_reason_codes(spec: &str) -> Result<JsValue, JsValue> {
    let table = CxoneReasonTable::parse(spec).map_err(|e| config_error(&e))?;
    Ok(to_js(&table))
}

/// One agent's schedule adherence and conformance over a window, from its shifts and its actual state
/// changes (`core::adherence`); throws `INVALID_CONFIG` naming what is wrong with the input.
#[wasm_bindgen(js_name = computeAdherence, unchecked_return_type = "AdherenceFigures")]
pub fn compute_adherence(
    #[wasm_bindgen(unchecked_param_type = "AdherenceInput")] input: JsValue,
) -> Result<JsValue, JsValue> {
    let input: AdherenceInput = from_js("adherence input", &input)?;
    Ok(to_js(&input.compute()))
}

/// Every stable error code.
#[wasm_bindgen(js_name = errorCodes, unchecked_return_type = "ErrorCode[]")]
pub fn error_codes() -> JsValue {
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    to_js(&codes)
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
