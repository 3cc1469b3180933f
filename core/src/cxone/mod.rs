//! The `cxone` profile's wire formats: how the real NICE CXone APIs are asked, and how their answers read.
//!
//! Everything here is pure: a function builds an [`HttpRequest`](crate::HttpRequest) or reads an
//! [`HttpResponse`] into a typed answer or a coded [`TransitionError`](crate::TransitionError).
//! The engine decides what to ask and when; these modules know only how it looks on the wire. Facts and their
//! sources are in the project's `cxone-api-facts.md`; a behaviour that rests on an inferred fact is
//! configurable, and its documentation says so.
//!
//! - [`auth`]: discovery (`/.well-known/openid-configuration`, the id_token's `tenantId`,
//!   `/.well-known/cxone-configuration`) and the password and refresh grants.
//! - [`acd`]: the agent directory, teams' unavailable codes, and the Admin API's `SetAgentState`.
//! - [`wfm`]: the WFM schedule export and what it says about "scheduled now" and "mandatory break now".

pub mod acd;
pub mod auth;
pub mod wfm;

use serde_json::{Map, Value};

use crate::config::Secret;
use crate::http::HttpResponse;

/// The `Authorization: Bearer …` header.
pub(crate) fn bearer(token: &Secret) -> (String, String) {
    (
        "Authorization".to_owned(),
        format!("Bearer {}", token.expose()),
    )
}

/// The member `name` of a JSON object, exact first, else ignoring ASCII case: the spec, the SDK and older
/// versions spell the same fields differently (`outstateName`, `outStateName`, `OutStateId`) **\[C\]**.
pub(crate) fn member_of<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The longest tenant text kept in a message (characters).
const MAX_TENANT_WORDS: usize = 200;

/// The tenant's own words about a refusal: the `icStatusDescription` header **\[C: QA, TAP\]**, then the
/// body's `error_description` and `error` **\[C: SPEC-G\]**, each once, cut to a bounded length.
pub(crate) fn tenant_words(response: &HttpResponse) -> Option<String> {
    let body = serde_json::from_str::<Value>(&response.body).ok();
    let body = body.as_ref().and_then(Value::as_object);
    let from_body = |name| {
        body.and_then(|b| member_of(b, name))
            .and_then(Value::as_str)
    };
    let mut words: Vec<&str> = Vec::new();
    for text in [
        response.header("icStatusDescription"),
        from_body("error_description"),
        from_body("error"),
    ]
    .into_iter()
    .flatten()
    .map(str::trim)
    {
        if !text.is_empty() && !words.contains(&text) {
            words.push(text);
        }
    }
    (!words.is_empty()).then(|| words.join("; ").chars().take(MAX_TENANT_WORDS).collect())
}

/// A name reduced for comparison: trimmed, lower case, and `_`, `-` and spaces (runs of them) alike, so
/// `SYSTEM_IDLE`, `system-idle` and `System Idle` compare equal (unavailable codes, activity titles).
pub fn normalize_name(name: &str) -> String {
    name.split(['_', '-', ' '])
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}
