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

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{check_url, Secret};
use crate::error::ConfigError;
use crate::http::HttpResponse;
use crate::pacer::RateLimit;

/// Everything the `cxone` profile needs beyond the engine's common settings. The client app's id and secret
/// are the engine's [`Credentials`](crate::Credentials); the rate limit of the ACD host is the engine's
/// `rate_limit`. Every inferred fact (**\[I\]**) the profile rests on has a field here.
///
/// `Debug` and serialization never show the access key secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct CxoneConfig {
    /// The access key id (`CXONE_ACCESS_KEY_ID`): the password grant's `username`.
    pub access_key_id: String,
    /// The access key secret (`CXONE_ACCESS_KEY_SECRET`): the password grant's `password`.
    pub access_key_secret: Secret,
    /// Where discovery starts (`CXONE_AUTH_BASE`, default [`auth::AUTH_BASE_DEFAULT`]): its
    /// `/.well-known/openid-configuration` names the token endpoint. The engine's `token_url`, when set,
    /// skips that step.
    pub auth_base: String,
    /// The ACD/Admin API base (`CXONE_API_BASE_URL`). With `wfm_base` set too, the CXone configuration is
    /// not fetched (and no id_token is needed).
    pub api_base: Option<String>,
    /// The WFM base (`CXONE_WFM_BASE_URL`) **\[I\]**: by default `https://{area}.{uhDomain}` from the CXone
    /// configuration.
    pub wfm_base: Option<String>,
    /// The API version of each ACD endpoint (`CXONE_API_VERSION` sets all three) **\[I\]**.
    pub versions: acd::ApiVersions,
    /// How the client app authenticates at the token endpoint (`CXONE_CLIENT_AUTH`) **\[I\]**.
    pub client_auth: auth::ClientAuth,
    /// How `SetAgentState` carries its parameters (`CXONE_SET_STATE_ENCODING`) **\[I\]**.
    pub set_state_encoding: acd::SetStateEncoding,
    /// Which unavailable code each state is set with (`CXONE_REASON_CODES`) **\[I\]**.
    pub reason_codes: acd::CxoneReasonTable,
    /// Which schedule activities are mandatory breaks (`CXONE_BREAK_ACTIVITIES`) **\[I\]**.
    pub break_activities: wfm::BreakRule,
    /// The WFM host's own request budget (`CXONE_WFM_RATE_LIMIT_PER_MIN`); a 429 there pauses only it.
    pub wfm_rate_limit: RateLimit,
    /// How long an agent's schedule export is used before it is read again (60 min). Never per transition.
    pub schedule_ttl_ms: u64,
    /// How many days (1 to 7) one export covers, from the day before the current UTC day: three, so a
    /// shift that began yesterday or runs past midnight is covered whatever time zone the tenant reads the
    /// dates in.
    pub schedule_days: u8,
    /// The directory is read again for an agent id it lacks at most this often (one minute).
    pub directory_refetch_ms: u64,
    /// A team's unavailable codes are read again for a name they lack at most this often (one minute).
    pub codes_refetch_ms: u64,
    /// Agents per directory page.
    pub agents_page_size: u64,
    /// Prefetch: the share (0 to 100 %) of the WFM budget that reading again, in the background, the
    /// schedule exports of agents whose export was used is allowed to take. An export is read again in
    /// the last tenth of its TTL, so a change never waits for it. 0 (the default) turns prefetching off.
    pub schedule_prefetch_percent: u8,
}

impl Default for CxoneConfig {
    fn default() -> Self {
        Self {
            access_key_id: String::new(),
            access_key_secret: Secret::new(""),
            auth_base: auth::AUTH_BASE_DEFAULT.to_owned(),
            api_base: None,
            wfm_base: None,
            versions: acd::ApiVersions::default(),
            client_auth: auth::ClientAuth::default(),
            set_state_encoding: acd::SetStateEncoding::default(),
            reason_codes: acd::CxoneReasonTable::default(),
            break_activities: wfm::BreakRule::default(),
            wfm_rate_limit: RateLimit::default(),
            schedule_ttl_ms: wfm::DEFAULT_SCHEDULE_TTL_MS,
            schedule_days: 3,
            directory_refetch_ms: 60_000,
            codes_refetch_ms: 60_000,
            agents_page_size: acd::DEFAULT_AGENTS_PAGE_SIZE,
            schedule_prefetch_percent: 0,
        }
    }
}

impl CxoneConfig {
    /// Checks every setting; `needs_credentials` is false with an external token source (the page's token
    /// source hands in tokens, so no access key is held).
    pub fn validate(&self, needs_credentials: bool) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if needs_credentials {
            if self.access_key_id.is_empty() {
                return invalid("CXONE_ACCESS_KEY_ID", "is empty");
            }
            if self.access_key_secret.is_empty() {
                return invalid("CXONE_ACCESS_KEY_SECRET", "is empty");
            }
            check_url(&self.auth_base).or_else(|r| invalid("CXONE_AUTH_BASE", &r))?;
        }
        if let Some(b) = &self.api_base {
            check_url(b).or_else(|r| invalid("CXONE_API_BASE_URL", &r))?;
        }
        if let Some(b) = &self.wfm_base {
            check_url(b).or_else(|r| invalid("CXONE_WFM_BASE_URL", &r))?;
        }
        let v = self.versions;
        if [v.agents, v.unavailable_codes, v.set_state].contains(&0) {
            return invalid("CXONE_API_VERSION", "must be at least 1");
        }
        if self.wfm_rate_limit.per_minute == 0 {
            return invalid("CXONE_WFM_RATE_LIMIT_PER_MIN", "must be at least 1");
        }
        if !(1..=wfm::MAX_EXPORT_DAYS).contains(&self.schedule_days) {
            return invalid("cxone.schedule_days", "must be 1 to 7");
        }
        for (field, v) in [
            ("cxone.schedule_ttl_ms", self.schedule_ttl_ms),
            ("cxone.directory_refetch_ms", self.directory_refetch_ms),
            ("cxone.codes_refetch_ms", self.codes_refetch_ms),
            ("cxone.agents_page_size", self.agents_page_size),
        ] {
            if v == 0 {
                return invalid(field, "must be at least 1");
            }
        }
        if self.schedule_prefetch_percent > 100 {
            return invalid("cxone.schedule_prefetch_percent", "must be 0 to 100");
        }
        if self.break_activities.titles.is_empty() && !self.break_activities.non_work_is_break {
            return invalid(wfm::BREAK_ACTIVITIES_SETTING, "names no activity title");
        }
        Ok(())
    }

    /// The credentials the grants send, with the client app's.
    pub(crate) fn credentials(&self, client: &crate::Credentials) -> auth::CxoneCredentials {
        auth::CxoneCredentials {
            access_key_id: self.access_key_id.clone(),
            access_key_secret: self.access_key_secret.clone(),
            client_id: client.client_id.clone(),
            client_secret: client.client_secret.clone(),
        }
    }
}

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
