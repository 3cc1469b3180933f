//! Replays every JSON vector in wasm in headless Chromium; the results must equal the native ones.
#![cfg(target_arch = "wasm32")]

mod common;

use wasm_bindgen_test::{wasm_bindgen_test as test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

#[test]
fn vectors_replay_in_chromium() {
    common::replay_every_vector();
}

#[test]
fn errors_are_js_errors_with_codes() {
    common::errors_carry_codes();
}

#[test]
fn engine_commands_throw_coded_errors() {
    common::engine_commands_throw_coded_errors();
}

#[test]
fn cxone_token_source_with_bases_skips_discovery() {
    common::cxone_token_source_with_bases_skips_discovery();
}
