//! Shared between the Node and the browser test binaries.

use cxone_agent_state_tests::{replay_file, ALL};
use cxone_agent_state_wasm::WasmEngine;
use wasm_bindgen::{JsCast, JsValue};

fn code_of(e: &JsValue) -> Option<String> {
    let err: &js_sys::Error = e.dyn_ref().expect("an Error object");
    js_sys::Reflect::get(err, &JsValue::from_str("code"))
        .ok()?
        .as_string()
}

/// Every vector file replays; each failure names its vector id.
pub fn replay_every_vector() {
    let mut total = 0;
    for (name, text) in ALL {
        match replay_file(name, text) {
            Ok(n) => {
                assert!(n > 0, "{name} holds no vectors");
                total += n;
            }
            Err(f) => panic!("{name}: {f}"),
        }
    }
    assert!(total >= 30, "only {total} vectors");
}

/// The binding throws real `Error`s with a stable `code`.
pub fn errors_carry_codes() {
    let e = cxone_agent_state_wasm::reason_code_for_state("ready").unwrap_err();
    assert_eq!(code_of(&e).as_deref(), Some("INVALID_STATE"));
    assert_eq!(
        cxone_agent_state_wasm::reason_code_for_state("PAUSED").unwrap(),
        "ADHOC"
    );
    let e = cxone_agent_state_wasm::validate_webhook_url("http://example.com/hook").unwrap_err();
    assert_eq!(code_of(&e).as_deref(), Some("INVALID_WEBHOOK_URL"));
}

/// The binding's engine: commands throw `BUSY`, `INVALID_REFERENCE` and `CLOSED` as coded `Error`s;
/// `close()` ends what is open, audited (with the caller's reference), and `drain()` hands it out ending
/// with the timeout.
pub fn engine_commands_throw_coded_errors() {
    let config = js_sys::JSON::parse(
        r#"{"baseUrl": "https://t.example", "credentials": {"clientId": "i", "clientSecret": "s"}, "maxOpenChanges": 1}"#,
    )
    .unwrap();
    let mut engine = WasmEngine::new(config).expect("a valid configuration");
    let t0 = 1_767_600_000_000.0;
    let options = |json: &str| js_sys::JSON::parse(json).unwrap();
    assert_eq!(
        engine
            .transition(
                1.0,
                t0,
                "a1",
                "READY",
                options(r#"{"reference": "ticket-1"}"#)
            )
            .unwrap(),
        1.0
    );
    let e = engine
        .transition(2.0, t0 + 1.0, "a2", "READY", JsValue::UNDEFINED)
        .unwrap_err();
    assert_eq!(code_of(&e).as_deref(), Some("BUSY"));
    // Options are checked before anything else, the queue's bound included.
    for (json, code) in [
        (r#"{"reference": "row\n2"}"#, "INVALID_REFERENCE"),
        (
            r#"{"override": {"actor": "", "reason": "r"}}"#,
            "INVALID_OVERRIDE",
        ),
    ] {
        let e = engine
            .transition(2.0, t0 + 1.0, "a2", "READY", options(json))
            .unwrap_err();
        assert_eq!(code_of(&e).as_deref(), Some(code), "{json}");
    }
    engine.close(3.0, t0 + 2.0);
    let outputs = js_sys::JSON::stringify(&engine.drain()).unwrap();
    let outputs: String = outputs.into();
    assert!(outputs.contains(r#""errorCode":"CLOSED""#), "{outputs}");
    // The closed change's audit record and its failure event carry the caller's reference.
    assert_eq!(
        outputs.matches(r#""reference":"ticket-1""#).count(),
        2,
        "{outputs}"
    );
    assert!(
        outputs.ends_with(r#"{"type":"timeout","value":null}]"#),
        "{outputs}"
    );
    let e = engine.validate(4.0, t0 + 3.0, "a1", "IDLE").unwrap_err();
    assert_eq!(code_of(&e).as_deref(), Some("CLOSED"));
}

/// The `cxone` profile through the binding: the reason-code text parses (and a bad one throws
/// `INVALID_CONFIG`); an external token source that hands in the API and WFM bases skips discovery, so the
/// first request after the token is the agent directory on the API base the source named.
pub fn cxone_token_source_with_bases_skips_discovery() {
    let table = cxone_agent_state_wasm::cxone_reason_codes("NOT_READY=Lunch, *=Meeting").unwrap();
    let table: String = js_sys::JSON::stringify(&table).unwrap().into();
    assert!(table.contains(r#""NOT_READY":"Lunch""#), "{table}");
    assert!(table.contains(r#""fallback":"Meeting""#), "{table}");
    let e = cxone_agent_state_wasm::cxone_reason_codes("READY=Break").unwrap_err();
    assert_eq!(code_of(&e).as_deref(), Some("INVALID_CONFIG"));

    let config =
        js_sys::JSON::parse(r#"{"baseUrl": "", "profile": "cxone", "tokenSource": "external"}"#)
            .unwrap();
    let mut engine = WasmEngine::new(config).expect("a valid configuration");
    let t0 = 1_767_600_000_000.0;
    let id = engine
        .transition(
            1.0,
            t0,
            "1001",
            "NOT_READY",
            js_sys::JSON::parse(r#"{"reason": "Lunch"}"#).unwrap(),
        )
        .unwrap();
    assert_eq!(id, 1.0);
    let outputs: String = js_sys::JSON::stringify(&engine.drain()).unwrap().into();
    assert!(outputs.contains(r#""type":"tokenRequested""#), "{outputs}");
    assert!(!outputs.contains("well-known"), "{outputs}");
    let request_id = outputs
        .split(r#""requestId":"#)
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|n| n.parse::<f64>().ok())
        .expect("a token request id");
    engine.handle_access_token(
        2.0,
        t0 + 1.0,
        request_id,
        Some("page-token".into()),
        3_600_000.0,
        None,
        Some("https://api-c1.example".into()),
        Some("https://wfm.example".into()),
    );
    let outputs: String = js_sys::JSON::stringify(&engine.drain()).unwrap().into();
    assert!(
        outputs.contains(r#""url":"https://api-c1.example/inContactAPI/services/v34.0/agents?"#),
        "{outputs}"
    );
    assert!(!outputs.contains("well-known"), "{outputs}");
}
