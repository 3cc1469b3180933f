//! Replays every JSON vector natively, and checks the generated ones are current.
//!
//! `UPDATE_VECTORS=1 cargo test -p cxone-agent-state-tests --test vectors` rewrites the generated files
//! (retry delays, audit chain, transcripts) after an intended change; review the diff before committing.

use std::path::Path;

use cxone_agent_state_tests::{generated_files, replay_file, ALL};

#[test]
fn every_vector_replays() {
    for (name, text) in ALL {
        let n = replay_file(name, text).unwrap_or_else(|f| panic!("{name}: {f}"));
        assert!(n > 0, "{name} holds no vectors");
    }
}

#[test]
fn generated_vectors_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors");
    let update = std::env::var_os("UPDATE_VECTORS").is_some();
    for (name, fresh) in generated_files() {
        let path = dir.join(name);
        if update {
            std::fs::write(&path, &fresh).unwrap();
            continue;
        }
        let stored = std::fs::read_to_string(&path).unwrap();
        assert!(
            stored == fresh,
            "{name} is out of date with the implementation; if the change is intended, run \
             UPDATE_VECTORS=1 cargo test -p cxone-agent-state-tests --test vectors and review the diff"
        );
    }
}

#[test]
fn a_changed_output_fails_the_replay_and_names_the_vector() {
    let mut transcripts = cxone_agent_state_tests::generate_transcripts();
    let t = &mut transcripts[0];
    // Corrupt one recorded output: the replay must notice and say which vector.
    let step = t
        .steps
        .iter_mut()
        .find(|s| s.outputs.len() > 1)
        .expect("a step with outputs");
    step.outputs.remove(0);
    let err = cxone_agent_state_tests::replay_transcript(t).unwrap_err();
    assert_eq!(err.id, "transcript-happy-ready");
    assert!(err.message.contains("outputs differ"));
}

#[test]
fn no_vector_file_holds_a_secret() {
    use cxone_agent_state_core::sim::SimConfig;
    let sim = SimConfig::default();
    for (name, text) in ALL {
        assert!(
            !text.contains(&sim.client_secret),
            "{name} holds the client secret"
        );
        assert!(!text.contains("simtok-"), "{name} holds an access token");
        assert!(
            !text.contains("sim-access-secret"),
            "{name} holds the access key secret"
        );
        assert!(!text.contains("simrt-"), "{name} holds a refresh token");
        // Every Authorization header and every secret-bearing field is redacted.
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        let mut stack = vec![&value];
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::Array(items) => {
                    if let [serde_json::Value::String(k), serde_json::Value::String(v)] =
                        items.as_slice()
                    {
                        if k.eq_ignore_ascii_case("authorization") {
                            // Bearer and other schemes show `[redacted]`; Basic keeps the client id and
                            // carries `[redacted]` (percent-encoded) for the secret, as a replay builds it.
                            let basic = v.strip_prefix("Basic ").and_then(|b| {
                                use base64::Engine as _;
                                base64::engine::general_purpose::STANDARD.decode(b).ok()
                            });
                            match basic {
                                Some(b) => assert!(
                                    String::from_utf8(b).unwrap().ends_with(":%5Bredacted%5D"),
                                    "{name}: {v}"
                                ),
                                None => assert!(v.ends_with("[redacted]"), "{name}: {v}"),
                            }
                        }
                    }
                    stack.extend(items);
                }
                serde_json::Value::Object(map) => {
                    for (k, v) in map {
                        if ["clientSecret", "accessToken", "secret"].contains(&k.as_str()) {
                            assert!(v.is_null() || v == "[redacted]", "{name}: {k} = {v}");
                        }
                    }
                    stack.extend(map.values());
                }
                serde_json::Value::String(s) if s.contains("client_secret=") => {
                    assert!(s.contains("client_secret=%5Bredacted%5D"), "{name}: {s}");
                }
                serde_json::Value::String(s) if s.contains("grant_type=password") => {
                    assert!(s.contains("password=%5Bredacted%5D"), "{name}: {s}");
                }
                _ => {}
            }
        }
    }
}

#[test]
fn a_changed_adherence_figure_fails_the_replay_and_names_the_vector() {
    let mut file: serde_json::Value =
        serde_json::from_str(cxone_agent_state_tests::ADHERENCE).unwrap();
    file["cases"][0]["expect"]["outMs"] = serde_json::json!(900_001);
    let err = cxone_agent_state_tests::replay_adherence(&file.to_string()).unwrap_err();
    assert_eq!(err.id, "adherence-day-by-hand");
    assert!(err.message.contains("outMs"), "{}", err.message);
    // A ratio off by more than the tolerance is caught too; within it, it is not.
    let mut file: serde_json::Value =
        serde_json::from_str(cxone_agent_state_tests::ADHERENCE).unwrap();
    file["cases"][0]["expect"]["adherence"] = serde_json::json!(0.875 + 1e-12);
    assert!(cxone_agent_state_tests::replay_adherence(&file.to_string()).is_ok());
    file["cases"][0]["expect"]["adherence"] = serde_json::json!(0.876);
    assert!(cxone_agent_state_tests::replay_adherence(&file.to_string()).is_err());
}
