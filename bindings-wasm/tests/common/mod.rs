//! Shared between the Node and the browser test binaries.

use cxone_agent_state_tests::{replay_file, ALL};
use wasm_bindgen::{JsCast, JsValue};

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
    let err: &js_sys::Error = e.dyn_ref().expect("an Error object");
    let code = js_sys::Reflect::get(err, &JsValue::from_str("code")).unwrap();
    assert_eq!(code.as_string().as_deref(), Some("INVALID_STATE"));
    assert_eq!(
        cxone_agent_state_wasm::reason_code_for_state("PAUSED").unwrap(),
        "ADHOC"
    );
    let e = cxone_agent_state_wasm::validate_webhook_url("http://example.com/hook").unwrap_err();
    let code = js_sys::Reflect::get(&e, &JsValue::from_str("code")).unwrap();
    assert_eq!(code.as_string().as_deref(), Some("INVALID_WEBHOOK_URL"));
}
