//! A bare `wasm32-unknown-unknown` module around the core, with no bindings at all.
//!
//! `make test` builds it, checks that the module imports nothing from `env` (no hidden clock, RNG or I/O),
//! then runs [`probe_simulated_day`] in Node and compares the answer with the same call made natively.
// `#[no_mangle]` counts as unsafe code; exporting a plain function is all this crate does.
#![allow(unsafe_code)]

use cxone_agent_state_core::sim::{Harness, Workday, WorkdayConfig};
use cxone_agent_state_core::Engine;

/// Runs a simulated day of `agents` agents with `seed` and returns a digest: the low 32 bits of the audit
/// chain's last hash, xor the number of audit records, plus `1 << 31` if the tenant ever accepted READY during
/// a mandatory break (which must never happen).
pub fn simulated_day_digest(agents: u32, seed: u32) -> u32 {
    let day = Workday::generate(&WorkdayConfig {
        agents: agents as usize,
        seed: u64::from(seed),
        ..WorkdayConfig::default()
    });
    let engine = Engine::new(Harness::engine_config_for(&day, u64::from(seed)))
        .expect("the generated configuration is valid");
    let mut h = Harness::for_workday(&day, engine);
    h.drive().expect("a generated day reaches quiescence");
    let head = h.engine.chain_head();
    let hash_low = u32::from_str_radix(&head.last_hash[56..], 16).unwrap_or(0);
    let violated = h.tenant.ground_truth().ready_accepted_during_break > 0;
    (hash_low ^ head.next_seq as u32) & 0x7fff_ffff | (u32::from(violated) << 31)
}

/// The exported entry point of the wasm module.
#[no_mangle]
pub extern "C" fn probe_simulated_day(agents: u32, seed: u32) -> u32 {
    simulated_day_digest(agents, seed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn print_native_digest() {
        // `make wasm-check` compares this line with the wasm module's answer.
        let d = super::simulated_day_digest(20, 7);
        assert_eq!(d >> 31, 0, "READY accepted during a break");
        println!("native-digest={d}");
    }
}
